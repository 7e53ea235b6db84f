"""The service itself polling the farm: scheduler + adapter + detector + outbox + SQLite.

It is the real ``Runtime`` (the one ``alerts run`` starts), built from a generated
config directory with one ``feed`` source per farm feed, a SQLite store and a
``jsonl`` destination (``fsync = false``) that every event is routed to. Two phases:

1. **Rounds, as fast as it goes.** The scheduler's clock is the wall clock plus an
   offset the harness moves two days ahead at each round, while the sources'
   interval is one day: every source falls due at once, is polled exactly once,
   and the round ends when N polls have been committed. This gives polls/s and CPU
   ms per poll for the same baseline / unchanged / changed / mixed rounds as the
   baseline clients, and events/s through detector + outbox.
2. **Steady state.** The sources get the configured interval back (60 s by default),
   their due times are spread over one interval, the farm moves to a new round
   (10 % of the feeds change) every interval, and the harness measures CPU % of
   one core and RSS over ``steady_s`` seconds.

Afterwards every event the store holds is compared with the farm's ground truth:
each feed must have produced exactly the keys published after its baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import random
import shutil
import sqlite3
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from bench.baseline import (
    RoundResult,
    cpu_by_role,
    current_rss_mb,
    peak_rss_mb,
    round_kind,
    thread_cpu,
)
from bench.farm import FarmSpec, FarmState

ROUND_STEP = timedelta(days=2)
SLOW_INTERVAL_S = 86_400.0
DRAIN_TIMEOUT_S = 300.0


class BenchClock:
    """The wall clock plus an offset the harness moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        from alerts.model import utcnow

        return utcnow() + self.offset


def write_config(
    root: Path, base_url: str, n_feeds: int, concurrency: int, interval_s: int
) -> Path:
    config = root / "config"
    (config / "sources.d").mkdir(parents=True)
    (config / "alerts.toml").write_text(
        f"""[service]
contact = "mailto:bench@example.org"
default_interval = "{interval_s}s"
max_events_per_poll = 100
poll_concurrency = {concurrency}
delivery_concurrency = 50

[http]
timeout = "60s"
per_host = {concurrency}
allow_private_network = true  # the farm is on loopback

[topics.bench]
description = "the benchmark farm"

[destinations.archive]
sink = "jsonl"
target = "{root / "events.jsonl"}"
fsync = false

[[routes]]
destination = "archive"
topics = ["bench"]
""",
        encoding="utf-8",
    )
    lines = []
    for i in range(n_feeds):
        lines.append(
            f'[[sources]]\nid = "farm-{i}"\nkind = "feed"\n'
            f'url = "{base_url}/feed/{i}.xml"\ntopics = ["bench"]\n'
        )
    (config / "sources.d" / "farm.toml").write_text("\n".join(lines), encoding="utf-8")
    return config


class Tally(NamedTuple):
    """One poll, as the harness counts it."""

    ok: bool
    not_modified: bool
    events: int


class ServiceBench:
    def __init__(
        self,
        state: FarmState,
        base_url: str,
        *,
        concurrency: int,
        interval_s: int,
        steady_s: float,
        profile_dir: Path | None = None,
    ) -> None:
        self.state = state
        self.profile_dir = profile_dir
        self.spec: FarmSpec = state.spec
        self.base_url = base_url
        self.concurrency = concurrency
        self.interval_s = interval_s
        self.steady_s = steady_s
        self.clock = BenchClock()
        self.reports: list[Tally] = []
        self.polled = asyncio.Event()
        self.expect_polls = 0
        self.runtime: Any = None
        self.root = Path()

    async def run(self) -> dict[str, Any]:
        from alerts.config import Settings, load_config
        from alerts.runtime import Runtime, tune_gc
        from alerts.scheduler import Timing

        self.root = root = Path(tempfile.mkdtemp(prefix="alerts-bench-"))
        try:
            config_dir = write_config(
                root, self.base_url, self.spec.n_feeds, self.concurrency, self.interval_s
            )
            settings = Settings(
                config_dir=config_dir,
                database_url=f"sqlite:///{root / 'alerts.db'}",
                data_dir=root,
                http_bind="",
                log_level="WARNING",
            )
            config = load_config(config_dir)
            runtime = await Runtime.open(
                settings,
                config,
                clock=self.clock,
                timing=Timing(first_spread_s=0.0),
            )
            tune_gc()  # as ``alerts run`` does after start-up
            try:
                return await self._measure(runtime)
            finally:
                await runtime.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _instrument(self, runtime: Any) -> None:
        scheduler = runtime.scheduler
        original = scheduler.poll

        async def counted(row: Any) -> Any:
            report = await original(row)
            # Keep what the tally needs, not the report: its events would otherwise stay
            # alive in the harness and count towards the service's memory.
            self.reports.append(Tally(report.ok, report.not_modified, len(report.events)))
            if len(self.reports) >= self.expect_polls:
                self.polled.set()
            return report

        scheduler.poll = counted

    async def _measure(self, runtime: Any) -> dict[str, Any]:
        self.runtime = runtime
        scheduler = runtime.scheduler
        configured = dict(scheduler.specs)
        slow = {sid: replace(spec, interval_s=SLOW_INTERVAL_S) for sid, spec in configured.items()}
        scheduler.update(slow, scheduler.adapters)
        self._instrument(runtime)
        task = asyncio.create_task(runtime.run(), name="bench-runtime")
        try:
            rounds = [await self._round(r) for r in range(len(self.spec.fractions))]
            steady = await self._steady(runtime, configured)
            steady["drain_s"] = await self._drain(runtime)
        finally:
            runtime.stop()
            await task
        truth = await self._check(runtime, steady["final_round"])
        return {
            "client": "service",
            "rounds": [r.as_dict() for r in rounds],
            "steady": steady,
            "truth": truth,
            "peak_rss_mb": peak_rss_mb(),
            "end_rss_mb": current_rss_mb(),
        }

    async def _round(self, round_: int) -> RoundResult:
        self.state.set_round(round_)
        gc.collect()
        self.reports.clear()
        self.polled.clear()
        self.expect_polls = self.spec.n_feeds
        profiler = cProfile.Profile() if self.profile_dir else None
        if profiler is not None:
            profiler.enable()
        threads0 = thread_cpu()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if round_ > 0:
            self.clock.offset += ROUND_STEP
            self._wake()
        await self.polled.wait()
        await self.runtime.scheduler.flush()  # unchanged polls are recorded in batches
        await self._drain(self.runtime)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        threads = cpu_by_role(threads0, thread_cpu())
        if profiler is not None and self.profile_dir is not None:
            profiler.disable()
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            kind = round_kind(self.spec, round_)
            profiler.dump_stats(self.profile_dir / f"service-{round_}-{kind}.pstats")
        reports = list(self.reports)
        return RoundResult(
            round=round_,
            kind=round_kind(self.spec, round_),
            polls=len(reports),
            status_200=sum(1 for r in reports if r.ok and not r.not_modified),
            status_304=sum(1 for r in reports if r.not_modified),
            errors=sum(1 for r in reports if not r.ok),
            wall_s=wall,
            cpu_s=cpu,
            events=sum(r.events for r in reports),
            threads=threads,
        )

    def _wake(self) -> None:
        wake = getattr(self.runtime.scheduler, "_wake", None)
        if wake is not None:
            wake.set()  # private: saves the idle loop's half second at each round start

    async def _drain(self, runtime: Any) -> float:
        """Seconds until the dispatcher has sent every pending delivery."""
        start = time.perf_counter()
        while (await runtime.store.outbox_stats()).pending:
            if time.perf_counter() - start > DRAIN_TIMEOUT_S:
                raise RuntimeError(f"deliveries still pending after {DRAIN_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.05)
        return time.perf_counter() - start

    async def _steady(self, runtime: Any, configured: dict[str, Any]) -> dict[str, Any]:
        scheduler, store = runtime.scheduler, runtime.store
        await scheduler.flush()
        scheduler.update(configured, scheduler.adapters)
        now = self.clock()
        for sid in configured:
            await store.set_next_due(
                sid, now + timedelta(seconds=random.uniform(0, self.interval_s))
            )
        self.expect_polls = 1 << 62
        self.reports.clear()
        first = len(self.spec.fractions)
        round_ = first - 1
        cpu0, wall0 = time.process_time(), time.perf_counter()
        rss_samples: list[float] = []
        while (elapsed := time.perf_counter() - wall0) < self.steady_s:
            due_round = first + int(elapsed // self.interval_s)
            if due_round != round_:
                round_ = due_round
                self.state.set_round(round_)
            rss_samples.append(current_rss_mb())
            await asyncio.sleep(1.0)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        polls = len(self.reports)
        events = sum(r.events for r in self.reports)
        settle0 = time.perf_counter()
        while not self.state.all_served(round_):  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)
        return {
            "seconds": wall,
            "interval_s": self.interval_s,
            "cpu_s": cpu,
            "cpu_percent_of_one_core": 100.0 * cpu / wall,
            "polls": polls,
            "polls_per_s": polls / wall,
            "errors": sum(1 for r in self.reports if not r.ok),
            "events": events,
            "rss_mb_max_sampled": max(rss_samples, default=0.0),
            "rss_mb_end": current_rss_mb(),
            "final_round": round_,
            "settle_s": time.perf_counter() - settle0,
        }

    async def _check(self, runtime: Any, final_round: int) -> dict[str, Any]:
        """Every stored event against the farm's ground truth."""
        path = runtime.settings.database_url.removeprefix("sqlite:///")
        got = await asyncio.to_thread(_stored_events, path)
        new = [(sid, key) for sid, kind, key in got if kind == "new"]
        expected = {
            (f"farm-{i}", key)
            for i in range(self.spec.n_feeds)
            for key in self.spec.new_keys(i, 0, final_round)
        }
        seen = set(new)
        sent: list[tuple[str, str]] = []
        sends: list[str] = []
        jsonl = self.root / "events.jsonl"
        with open(jsonl if jsonl.exists() else os.devnull, encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                sends.append(record["key"])
                sent.append((record["event"]["source_id"], record["event"]["key"]))
        return {
            "delivered": len(sent),
            "delivery_duplicates": len(sent) - len(set(sent)),
            "resends": len(sends) - len(set(sends)),
            "undelivered": len(seen - set(sent)),
            "final_round": final_round,
            "expected": len(expected),
            "events": len(got),
            "missed": len(expected - seen),
            "duplicates": len(new) - len(seen),
            "unexpected": len(seen - expected),
            "other_kinds": sum(1 for _s, kind, _k in got if kind != "new"),
        }


def run_service(
    state: FarmState,
    base_url: str,
    concurrency: int,
    interval_s: int,
    steady_s: float,
    profile_dir: Path | None,
    out: Any,
) -> None:
    """Process entry point: measure the service against the farm, send results to ``out``."""
    logging.basicConfig(level=logging.ERROR)
    bench = ServiceBench(
        state,
        base_url,
        concurrency=concurrency,
        interval_s=interval_s,
        steady_s=steady_s,
        profile_dir=profile_dir,
    )
    try:
        out.put(asyncio.run(bench.run()))
    except BaseException as exc:
        out.put({"client": "service", "error": f"{type(exc).__name__}: {exc}"})
        raise


def _stored_events(path: str) -> list[tuple[str, str, str]]:
    """(source_id, kind, key) of every event in the service's SQLite file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT source_id, kind, key FROM events").fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]
