"""Outbox throughput on SQLite and PostgreSQL: deliveries committed per second
(``commit_poll`` writing events routed to several rooms, the scheduler's hot path)
and deliveries claimed and marked sent per second (the dispatcher's), with one
worker and, on PostgreSQL, with three workers on separate handles (like replicas).
SQLite has one writer at a time; several handles in tight loops only starve each
other on its lock, so it is measured with one.

Run: ``python -m bench.outbox`` (PostgreSQL on 127.0.0.1:5432 with trust auth).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.model import Destination, Event, EventKind
from alerts.store import PollCommit, RoutedEvent, Store, open_store
from bench.pg import scratch_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
Opener = Callable[[], Awaitable[Store]]


@asynccontextmanager
async def backend(name: str) -> AsyncIterator[Opener]:
    opened: list[Store] = []

    async def make(url: str) -> Store:
        store = await open_store(url)
        opened.append(store)
        return store

    try:
        if name == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
                yield lambda: make(url)
                for store in opened:
                    await store.close()
        else:
            async with scratch_database() as url:
                yield lambda: make(url)
                for store in opened:
                    await store.close()
    finally:
        opened.clear()


async def commit_rate(store: Store, *, polls: int, events: int, rooms: list[str]) -> float:
    await store.sync_sources({f"s{n}": T0 for n in range(polls)})
    started = time.perf_counter()
    for n in range(polls):
        sid = f"s{n}"
        await store.claim_due_sources(T0, owner="bench", lease_s=60, limit=1, only=[sid])
        await store.commit_poll(
            PollCommit(
                source_id=sid,
                now=T0,
                next_due=T0 + timedelta(hours=1),
                events=[
                    RoutedEvent(Event(sid, EventKind.NEW, f"k{e}", f"title {e}"), tuple(rooms))
                    for e in range(events)
                ],
            ),
            owner="bench",
        )
    return polls * events * len(rooms) / (time.perf_counter() - started)


async def send_in_order(store: Store, ids: list[int], now: datetime) -> None:
    """Like the dispatcher: destinations in parallel, each one's deliveries in order."""
    for delivery_id in ids:
        await store.mark_sent(delivery_id, remote_id=None, now=now)


async def claim_rate(stores: list[Store], total: int, batch: int) -> float:
    done = 0

    async def worker(store: Store, owner: str) -> None:
        nonlocal done
        now = T0 + timedelta(minutes=1)
        while done < total:
            claimed = await store.claim_deliveries(now, owner=owner, lease_s=60, limit=batch)
            if not claimed:
                await asyncio.sleep(0.001)
                continue
            groups: dict[str, list[int]] = {}
            for d in claimed:
                groups.setdefault(d.destination.id, []).append(d.id)
            await asyncio.gather(*(send_in_order(store, ids, now) for ids in groups.values()))
            done += len(claimed)

    started = time.perf_counter()
    await asyncio.gather(*(worker(s, f"w{n}") for n, s in enumerate(stores)))
    return total / (time.perf_counter() - started)


async def run(name: str, *, polls: int, events: int, rooms: int, workers: int) -> str:
    names = [f"room-{n}" for n in range(rooms)]
    async with backend(name) as open_handle:
        first = await open_handle()
        for room in names:
            await first.upsert_destination(Destination(room, "console"))
        committed = await commit_rate(first, polls=polls, events=events, rooms=names)
        total = polls * events * rooms
        if name == "sqlite":  # one writer at a time: more handles only queue on the lock
            one = await claim_rate([first], total, batch=50)
            return f"{name:8s} committed {committed:7.0f} deliveries/s   claimed+sent {one:6.0f}/s"
        one = await claim_rate([first], total // 2, batch=50)
        handles = [first] + [await open_handle() for _ in range(workers - 1)]
        many = await claim_rate(handles, total - total // 2, batch=50)
    return (
        f"{name:8s} committed {committed:7.0f} deliveries/s   claimed+sent "
        f"{one:6.0f}/s (1 worker)  {many:6.0f}/s ({workers} workers)"
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Outbox throughput per store backend")
    parser.add_argument("--polls", type=int, default=100)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args(argv)
    print(
        f"{args.polls} polls x {args.events} events x {args.rooms} rooms = "
        f"{args.polls * args.events * args.rooms} deliveries per backend"
    )
    for name in ("sqlite", "postgres"):
        print(
            await run(
                name, polls=args.polls, events=args.events, rooms=args.rooms, workers=args.workers
            )
        )


if __name__ == "__main__":
    asyncio.run(main())
