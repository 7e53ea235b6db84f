"""Fan one event out to 500 Discord channels and measure it.

Runs the real pipeline tail — SQLite outbox, dispatcher, the Discord sink over
discord.py — against the project's fake Discord with Discord's real limits (50
requests per second globally, 5 messages per 5 s per channel), and reports:

* sustained rate against the 50/s global limit (floor: 90 %),
* loss: channels without their message (must be 0), duplicates (must be 0),
* invalid requests: 4xx answers beyond the first 429 of each bucket (must be 0).

Usage: ``python -m bench.discord_fanout [--channels 500]``. Exits 1 when a floor
is missed. Writes nothing into the repository (the store lives in a temp dir).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "discord")]  # this checkout's code

from discord_helpers import make_event  # noqa: E402
from discord_openapi import load, locate_spec  # noqa: E402
from fake_discord import FakeDiscord, Limits  # noqa: E402

from alerts.dispatch import Dispatcher  # noqa: E402
from alerts.model import Destination, utcnow  # noqa: E402
from alerts.platforms.discord import DiscordSettings, DiscordSink  # noqa: E402
from alerts.sinks import SinkContext  # noqa: E402
from alerts.store import PollCommit, RoutedEvent  # noqa: E402
from alerts.store.sqlite import SqliteStore  # noqa: E402

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord.http

RATE_FLOOR = 0.90


def _serve(conn: Connection, channels: int, validate: bool) -> None:
    """The fake Discord in its own process, as the real one would be."""
    asyncio.run(_serve_async(conn, channels, validate))


async def _serve_async(conn: Connection, channels: int, validate: bool) -> None:
    spec = locate_spec() if validate else None
    limits = Limits()
    fake = FakeDiscord(api=load(spec) if spec else None, limits=limits)
    base = await fake.start()
    guild = fake.add_guild()
    channel_ids = [fake.add_channel(guild, f"c{i}") for i in range(channels)]
    conn.send((base, channel_ids, fake.token, limits.global_per_s, spec is not None))
    await asyncio.to_thread(conn.recv)
    await fake.close()
    sends = sorted(h.at for h in fake.hits if h.path.endswith("/messages") and h.status == 200)
    delivered = {m.channel_id for m in fake.messages}
    conn.send(
        {
            "sends": sends,
            "lost": len(set(channel_ids) - delivered),
            "duplicates": len(fake.messages) - len(delivered),
            "invalid_4xx": fake.invalid_beyond_first_429(),
            "status_429": sum(1 for h in fake.hits if h.status == 429),
            "spec_violations": len(fake.violations),
        }
    )


async def fan_out(channels: int, *, validate: bool) -> dict[str, float]:
    """Start the fake in a child process, fan one event out to ``channels`` channels."""
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, channels, validate), daemon=True
    )
    server.start()
    try:
        base, channel_ids, token, global_per_s, validated = await asyncio.to_thread(ours.recv)
        elapsed, deliveries, round_trips = await _dispatch(base, token, channel_ids)
        ours.send("stop")
        result = await asyncio.to_thread(ours.recv)
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.kill()
    sends = result.pop("sends")
    window = sends[-1] - sends[0] if len(sends) > 1 else float("inf")
    return {
        "deliveries": deliveries,
        "elapsed_s": elapsed,
        "rate_per_s": (len(sends) - 1) / window,
        "global_limit_per_s": global_per_s,
        "validated": float(validated),
        "rtt_median_ms": 1000 * round_trips[len(round_trips) // 2],
        "rtt_p95_ms": 1000 * round_trips[int(len(round_trips) * 0.95)],
        **result,
    }


async def _dispatch(
    base: str, token: str, channel_ids: list[int]
) -> tuple[float, int, list[float]]:
    original_base, discord.http.Route.BASE = discord.http.Route.BASE, base + "/api/v10"
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as tmp:
        store = await SqliteStore.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        sink = DiscordSink(
            context=SinkContext(settings=None, store=store, data_dir=tmp),  # type: ignore[arg-type]
            settings=DiscordSettings(token=token),
        )
        try:
            await sink.start()
            ids = await _commit_one_event(store, channel_ids)
            dispatcher = Dispatcher(store=store, sinks={"discord": sink}, owner="bench")
            started = time.time()
            await dispatcher.drain(timeout_s=len(channel_ids) / 50 * 3 + 30)
            round_trips = sorted(sink.session.limiter.round_trips_s)
            return time.time() - started, len(ids), round_trips
        finally:
            await sink.close()
            await store.close()
            discord.http.Route.BASE = original_base


async def _commit_one_event(store: SqliteStore, channel_ids: list[int]) -> tuple[str, ...]:
    destinations = tuple(f"discord:{c}" for c in channel_ids)
    for channel_id, destination_id in zip(channel_ids, destinations, strict=True):
        await store.upsert_destination(Destination(destination_id, "discord", str(channel_id)))
    now = utcnow()
    await store.sync_sources({"bench": now})
    await store.claim_due_sources(now, owner="bench", lease_s=60, limit=1)
    event = make_event(source_id="bench", id=None, topics=("contracts",))
    await store.commit_poll(
        PollCommit(
            source_id="bench",
            now=now,
            next_due=now + timedelta(hours=1),
            events=[RoutedEvent(event, destinations)],
        ),
        owner="bench",
    )
    return destinations


def report(figures: dict[str, float]) -> bool:
    share = figures["rate_per_s"] / figures["global_limit_per_s"]
    checks = {
        f"sustained rate >= {RATE_FLOOR:.0%} of the global limit": share >= RATE_FLOOR,
        "no loss": figures["lost"] == 0,
        "no duplicates": figures["duplicates"] == 0,
        "no 4xx beyond the first 429 of each bucket": figures["invalid_4xx"] == 0,
        "every request and response on Discord's OpenAPI spec": figures["spec_violations"] == 0,
    }
    print(f"deliveries            {figures['deliveries']:.0f}")
    print(f"elapsed               {figures['elapsed_s']:.2f} s")
    print(
        f"sustained rate        {figures['rate_per_s']:.1f}/s "
        f"= {share:.1%} of {figures['global_limit_per_s']:.0f}/s"
    )
    print(
        f"round trip            median {figures['rtt_median_ms']:.0f} ms, "
        f"p95 {figures['rtt_p95_ms']:.0f} ms (the limiter holds a slot 1 s past each response)"
    )
    print(f"lost / duplicates     {figures['lost']:.0f} / {figures['duplicates']:.0f}")
    print(f"429 answers           {figures['status_429']:.0f}")
    print(f"invalid 4xx           {figures['invalid_4xx']:.0f} (beyond the first 429 per bucket)")
    validated = "yes" if figures["validated"] else "no (spec not found)"
    print(f"OpenAPI-validated     {validated}, violations {figures['spec_violations']:.0f}")
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return all(checks.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--channels", type=int, default=500)
    parser.add_argument("--no-validate", action="store_true", help="skip OpenAPI validation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    figures = asyncio.run(fan_out(args.channels, validate=not args.no_validate))
    return 0 if report(figures) else 1


if __name__ == "__main__":
    sys.exit(main())
