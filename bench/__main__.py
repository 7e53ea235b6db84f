"""``python -m bench``: run the farm, the baseline clients and the service; print a table.

See docs/benchmarks.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import queue
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baseline import parse_speed, run_client
from bench.farm import FarmProcess, FarmSpec
from bench.service import run_service

RESULTS = Path(__file__).parent / "results"
CLIENT_ORDER = ("bare", "feedparser", "adapter", "service")
FLOOR_CPU_PERCENT = 25.0
FLOOR_RSS_MB = 200.0
FLOOR_UNCHANGED_RATIO = 2.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--sizes",
        default="2000,10000",
        help="comma-separated numbers of feeds (default: 2000,10000)",
    )
    parser.add_argument("--quick", action="store_true", help="N=300, 30 s interval, 35 s steady")
    parser.add_argument(
        "--clients",
        default=",".join(CLIENT_ORDER),
        help=f"which to run, comma-separated (default: {','.join(CLIENT_ORDER)})",
    )
    parser.add_argument("--concurrency", type=int, default=100, help="requests in flight")
    parser.add_argument("--interval", type=int, default=60, help="service poll interval, s")
    parser.add_argument(
        "--steady", type=float, default=150.0, help="seconds of steady-state service run"
    )
    parser.add_argument("--parse-seconds", type=float, default=2.0, help="per parser")
    parser.add_argument("--out", type=Path, help="results JSON (default: bench/results/…)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a cProfile of each service round to DIR/service-<round>.pstats",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.interval, args.steady = "300", 30, 35.0
    args.size_list = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    args.client_list = [c for c in CLIENT_ORDER if c in str(args.clients).split(",")]
    return args


def run_in_process(target: Any, args: tuple[Any, ...], timeout_s: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out), daemon=True)
    proc.start()
    try:
        result: dict[str, Any] = out.get(timeout=timeout_s)
    except queue.Empty:
        result = {"error": f"no result within {timeout_s:.0f} s"}
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return result


def measure_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    spec = FarmSpec(n_feeds=n)
    results: dict[str, Any] = {}
    with FarmProcess(spec) as farm:
        for client in args.client_list:
            print(f"  N={n:,}: {client} …", file=sys.stderr, flush=True)
            started = time.perf_counter()
            if client == "service":
                budget = 600 + n * 0.2 + args.steady + 4 * args.interval
                results[client] = run_in_process(
                    run_service,
                    (
                        farm.state,
                        farm.base_url,
                        args.concurrency,
                        args.interval,
                        args.steady,
                        args.profile,
                    ),
                    budget,
                )
            else:
                results[client] = run_in_process(
                    run_client,
                    (client, farm.state, farm.base_url, args.concurrency),
                    300 + n * 0.1,
                )
            results[client]["elapsed_s"] = time.perf_counter() - started
            if "error" in results[client]:
                print(f"    failed: {results[client]['error']}", file=sys.stderr)
    return {"n_feeds": n, "fractions": list(spec.fractions), "clients": results}


def _round(result: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The round of ``kind`` with the median CPU per poll (the farm repeats unchanged
    rounds: one short round is at the mercy of the machine's other work)."""
    rounds = sorted(
        (r for r in result.get("rounds", ()) if r["kind"] == kind),
        key=lambda r: float(r["cpu_ms_per_poll"]),
    )
    return dict(rounds[(len(rounds) - 1) // 2]) if rounds else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_size(block: dict[str, Any], concurrency: int) -> str:
    n, clients = block["n_feeds"], block["clients"]
    lines = [
        f"N = {n:,} feeds (~60 KB, 50 items each), {concurrency} requests in flight",
        "",
        f"{'client':<11}{'round':<10}{'polls/s':>9}{'CPU ms/poll':>13}{'xbare':>8}"
        f"{'xfeedparser':>13}{'events/s':>10}{'missed':>8}{'dup':>5}{'peak RSS MB':>13}",
    ]
    for kind in ("baseline", "unchanged", "no-etag", "changed", "mixed"):
        bare = _round(clients.get("bare", {}), kind)
        fp = _round(clients.get("feedparser", {}), kind)
        for name in CLIENT_ORDER:
            result = clients.get(name)
            if not result or "error" in result:
                continue
            r = _round(result, kind)
            if r is None:
                continue
            cpu = r["cpu_ms_per_poll"]
            checked = r.get("checked") or name == "service"
            lines.append(
                f"{name:<11}{kind:<10}{r['polls_per_s']:>9.0f}{cpu:>13.3f}"
                f"{_ratio(cpu, bare and bare['cpu_ms_per_poll']):>8}"
                f"{_ratio(cpu, fp and fp['cpu_ms_per_poll']):>13}"
                f"{(r['events_per_s'] if r['events'] else 0):>10.0f}"
                f"{(r['missed'] if checked and name != 'service' else '-')!s:>8}"
                f"{(r['duplicates'] if checked and name != 'service' else '-')!s:>5}"
                f"{result['peak_rss_mb']:>13.0f}"
            )
        lines.append("")
    for name, result in clients.items():
        if "error" in result:
            lines.append(f"{name}: FAILED: {result['error']}")
    service = clients.get("service")
    if service and "error" not in service:
        lines += thread_lines(service)
        lines += service_lines(service, clients.get("bare"))
    return "\n".join(lines)


def thread_lines(service: dict[str, Any]) -> list[str]:
    """Where the service's CPU per poll went in each round (the round shown above):
    the event loop's thread, the SQLite connection's thread, and any other."""
    lines = ["service CPU ms/poll by thread (main = event loop, store = SQLite's thread):"]
    for kind in ("baseline", "unchanged", "no-etag", "changed", "mixed"):
        r = _round(service, kind)
        if r is None or not r.get("threads") or not r["polls"]:
            continue
        parts = "  ".join(
            f"{role} {1000.0 * r['threads'].get(role, 0.0) / r['polls']:.3f}"
            for role in ("main", "store", "other")
        )
        lines.append(f"  {kind:<10}{parts}")
    return [*lines, ""]


def service_lines(service: dict[str, Any], bare: dict[str, Any] | None) -> list[str]:
    steady, truth = service["steady"], service["truth"]
    unchanged = _round(service, "unchanged")
    bare_unchanged = _round(bare or {}, "unchanged")
    ratio = (
        unchanged["cpu_ms_per_poll"] / bare_unchanged["cpu_ms_per_poll"]
        if unchanged and bare_unchanged
        else None
    )
    cpu_ok = steady["cpu_percent_of_one_core"] < FLOOR_CPU_PERCENT
    rss_ok = service["peak_rss_mb"] < FLOOR_RSS_MB
    truth_ok = (
        truth["missed"] == 0
        and truth["duplicates"] == 0
        and truth["unexpected"] == 0
        and truth["delivery_duplicates"] == 0
        and truth["undelivered"] == 0
    )

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    return [
        f"service, steady state ({steady['seconds']:.0f} s at a {steady['interval_s']} s interval):"
        f" {steady['polls_per_s']:.1f} polls/s, {steady['cpu_percent_of_one_core']:.1f}% of one"
        f" core, RSS {steady['rss_mb_end']:.0f} MB now / {service['peak_rss_mb']:.0f} MB peak,"
        f" {steady['events']} events, {steady['errors']} failed polls",
        f"deliveries: {truth['delivered']} sent, {truth['delivery_duplicates']} for an event"
        f" already delivered, {truth['resends']} re-sends of one delivery (same idempotency key),"
        f" {truth['undelivered']} events undelivered",
        f"ground truth: {truth['expected']} new items published after the baseline;"
        f" {truth['missed']} missed, {truth['duplicates']} duplicated,"
        f" {truth['unexpected']} unexpected, {truth['other_kinds']} other events",
        "floor: "
        f"CPU < {FLOOR_CPU_PERCENT:.0f}% {mark(cpu_ok)}; "
        f"RSS < {FLOOR_RSS_MB:.0f} MB {mark(rss_ok)}; "
        f"unchanged poll <= {FLOOR_UNCHANGED_RATIO:.0f}x bare "
        f"({'-' if ratio is None else f'{ratio:.2f}x'}) "
        f"{mark(None if ratio is None else ratio <= FLOOR_UNCHANGED_RATIO)}; "
        f"zero missed/duplicate {mark(truth_ok)}",
        "",
    ]


def format_parse(rates: dict[str, float]) -> str:
    base = rates.get("feedparser")
    lines = [f"Parse speed, one {rates['feed_bytes'] / 1000:.0f} KB / 50-item feed, one core:"]
    for name, rate in rates.items():
        if name != "feed_bytes":
            lines.append(f"  {name:<20}{rate:>9.0f} feeds/s {_ratio(rate, base):>9} feedparser")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "started": started.isoformat(),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": mp.cpu_count(),
        "concurrency": args.concurrency,
    }
    print("parse speed …", file=sys.stderr, flush=True)
    report["parse"] = parse_speed(args.parse_seconds)
    print(format_parse(report["parse"]) + "\n")
    report["sizes"] = []
    for n in args.size_list:
        block = measure_size(n, args)
        report["sizes"].append(block)
        print(format_size(block, args.concurrency), flush=True)
    out = args.out or RESULTS / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
