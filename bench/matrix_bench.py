"""Matrix delivery bench against a real, local Synapse (``python -m bench.matrix_bench``).

1. Latency: an event is committed to the outbox (``commit_poll``, as the scheduler
   does), the real dispatcher sends it through the Matrix sink, and a second user's
   long-polling sync sees it. p50/p99 over ``--alerts`` alerts (default 1,000), one at
   a time, no rate limit. Floor: p99 < 250 ms.
2. Fan-out: one event routed to ``--rooms`` rooms (default 200) while the bot is held
   to ``--rate`` messages per second with a burst of ``--burst`` by Synapse
   (``override_ratelimit``). Sustained rate = (messages - burst) / (last - first
   arrival), what a token bucket allows beyond its burst; floor: at least 90 % of the
   limit, and every room gets exactly one message. Times are the homeserver's
   ``origin_server_ts`` (the reader's syncs batch arrivals).

Needs ``scripts/setup-synapse``. Everything lives in a temporary directory; the
figures are printed, nothing is written into the repository. Exits 1 if a floor
is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nio
from tests.matrix.helpers import Peer
from tests.matrix.pipeline import Pipeline
from tests.matrix.synapse_server import SynapseServer, synapse_python

from alerts.config import Settings
from alerts.model import Destination, Event, EventKind, Subscription
from alerts.platforms.matrix import MatrixSettings, MatrixSink
from alerts.sinks import SinkContext
from alerts.store.sqlite import SqliteStore

TOPICS = {"news": "bench"}


class Reader:
    """A second user whose sync loop timestamps every bot message as it arrives."""

    def __init__(self, peer: Peer, bot: str) -> None:
        self.peer = peer
        self.bot = bot
        self.arrivals: dict[tuple[str, str], float] = {}
        self.server_s: dict[tuple[str, str], float] = {}
        self.counts: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Reader:
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        client = self.peer.client
        while True:
            resp = await client.sync(timeout=30_000)
            now = time.perf_counter()
            if not isinstance(resp, nio.SyncResponse):
                continue
            for room_id, info in resp.rooms.join.items():
                for event in info.timeline.events:
                    if isinstance(event, nio.RoomMessageNotice) and event.sender == self.bot:
                        title = event.body.splitlines()[0]
                        self.arrivals.setdefault((room_id, title), now)
                        self.server_s.setdefault((room_id, title), event.server_timestamp / 1000)
                        self.counts[room_id] = self.counts.get(room_id, 0) + 1
            self._changed.set()

    async def wait(self, check: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.perf_counter() + timeout_s
        while not check():
            self._changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("the reader did not see the expected messages in time")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue


def event(title: str) -> Event:
    return Event(source_id="press", kind=EventKind.NEW, key=title, title=title, topics=("news",))


async def subscribe(pipeline: Pipeline, room_id: str) -> None:
    destination = Destination(Destination.chat_id("matrix", room_id), "matrix", room_id)
    await pipeline.store.upsert_destination(destination)
    await pipeline.store.add_subscription(Subscription(destination.id, topic="news"))


async def make_rooms(alice: Peer, sink: MatrixSink, count: int) -> list[str]:
    bot = str(sink.session.client.user_id)

    async def one() -> str:
        resp = await alice.client.room_create(invite=[bot])
        assert isinstance(resp, nio.RoomCreateResponse), resp
        joined = await sink.session.client.join(resp.room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        return str(resp.room_id)

    rooms: list[str] = []
    while len(rooms) < count:
        rooms += await asyncio.gather(*(one() for _ in range(min(10, count - len(rooms)))))
    while not set(rooms) <= set(sink.session.client.rooms):
        await sink.session.wait_for_sync(5)
    return rooms


async def bench_latency(pipeline: Pipeline, reader: Reader, room_id: str, n: int) -> list[float]:
    await subscribe(pipeline, room_id)
    await pipeline.reload()
    latencies = []
    for i in range(n):
        title = f"latency {i}"
        start = time.perf_counter()
        await pipeline.commit([event(title)])
        await reader.wait(lambda t=title: (room_id, t) in reader.arrivals, 30)  # type: ignore[misc]
        latencies.append((reader.arrivals[(room_id, title)] - start) * 1000)
    await pipeline.store.remove_subscriptions(Destination.chat_id("matrix", room_id))
    return latencies


async def bench_fanout(
    pipeline: Pipeline,
    reader: Reader,
    rooms: list[str],
    server: SynapseServer,
    bot: str,
    *,
    rate: int,
    burst: int,
) -> dict[str, Any]:
    for room_id in rooms:
        await subscribe(pipeline, room_id)
    await pipeline.reload()
    server.override_ratelimit(bot, per_second=rate, burst_count=burst)
    title = "fan-out"
    start = time.perf_counter()
    await pipeline.commit([event(title)])
    await reader.wait(lambda: all((r, title) in reader.arrivals for r in rooms), 120)
    # Spacing from the homeserver's own timestamps: the reader's syncs batch arrivals.
    times = sorted(reader.server_s[(r, title)] for r in rooms)
    span = times[-1] - times[0]
    return {
        "rooms": len(rooms),
        "duplicates": sum(max(0, reader.counts.get(r, 0) - 1) for r in rooms),
        "missing": sum(1 for r in rooms if (r, title) not in reader.arrivals),
        "total_s": max(reader.arrivals[(r, title)] for r in rooms) - start,
        # A token bucket allows burst + rate * span messages: what exceeds the burst
        # over the span is the sustained rate.
        "rate": (len(times) - burst) / span if span > 0 else float("inf"),
    }


async def run(args: argparse.Namespace) -> int:
    python = synapse_python()
    if python is None:
        print("Synapse is not installed: run scripts/setup-synapse", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="matrix-bench-") as tmp:
        server = SynapseServer(Path(tmp) / "synapse", python=python)
        server.start()
        store = await SqliteStore.open(f"sqlite:///{Path(tmp) / 'alerts.db'}")
        bot_account, alice_account = server.register("bot"), server.register("alice")
        sink = MatrixSink(
            context=SinkContext(settings=Settings(), store=store, data_dir=str(Path(tmp) / "d")),
            settings=MatrixSettings(
                homeserver=server.url, user=bot_account.user_id, password=bot_account.password
            ),  # type: ignore[arg-type]
        )
        alice = Peer(server, alice_account)
        try:
            await sink.start()
            pipeline = Pipeline(store, {"matrix": sink}, TOPICS, concurrency=50)
            (latency_room,) = await make_rooms(alice, sink, 1)
            await alice.sync()
            async with pipeline.running():
                async with Reader(alice, bot_account.user_id) as reader:
                    latencies = await bench_latency(pipeline, reader, latency_room, args.alerts)
                print(f"creating {args.rooms} rooms…", flush=True)
                rooms = await make_rooms(alice, sink, args.rooms)
                await alice.sync()
                async with Reader(alice, bot_account.user_id) as reader:
                    fanout = await bench_fanout(
                        pipeline, reader, rooms, server, bot_account.user_id,
                        rate=args.rate, burst=args.burst,
                    )  # fmt: skip
        finally:
            await sink.close()
            await alice.close()
            await store.close()
            server.stop()
    return report(latencies, fanout, args.rate, args.burst)


def report(latencies: list[float], fanout: dict[str, Any], rate: int, burst: int) -> int:
    cuts = statistics.quantiles(latencies, n=100)
    p50, p99 = cuts[49], cuts[98]
    latency_ok = p99 < 250
    share = fanout["rate"] / rate
    fanout_ok = share >= 0.9 and fanout["missing"] == 0 and fanout["duplicates"] == 0
    print(f"latency commit→visible over {len(latencies)} alerts (dispatcher + sink + Synapse):")
    print(f"  p50 {p50:.1f} ms  p99 {p99:.1f} ms  max {max(latencies):.1f} ms  "
          f"[floor p99 < 250 ms: {'ok' if latency_ok else 'MISSED'}]")  # fmt: skip
    print(f"fan-out of one event to {fanout['rooms']} rooms, limit {rate} msg/s (burst {burst}):")
    print(f"  sustained {fanout['rate']:.1f} msg/s = {share:.0%} of the limit, "
          f"done in {fanout['total_s']:.1f} s, missing {fanout['missing']}, "
          f"duplicates {fanout['duplicates']}  "
          f"[floor ≥ 90 %, zero loss: {'ok' if fanout_ok else 'MISSED'}]")  # fmt: skip
    return 0 if latency_ok and fanout_ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--rate", type=int, default=10, help="messages/s Synapse allows the bot")
    parser.add_argument("--burst", type=int, default=10, help="the limit's burst (Synapse: 10)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
