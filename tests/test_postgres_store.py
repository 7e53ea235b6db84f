"""What the PostgreSQL store adds to the contract: real concurrency between handles
(each a pool of its own, like replicas), advisory-lock leadership, migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from alerts.model import Destination, Event, EventKind
from alerts.store import PollCommit, RoutedEvent
from alerts.store import migration_status as status
from alerts.store.migrations import bundled
from alerts.store.postgres import PostgresStore, open_postgres, redact

from .pg_support import fresh_database

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def db_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def replicas(db_url: str) -> AsyncIterator[list[PostgresStore]]:
    stores = [await open_postgres(db_url, max_connections=4) for _ in range(3)]
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


async def test_concurrent_claims_never_hand_one_source_to_two_replicas(
    replicas: list[PostgresStore],
) -> None:
    await replicas[0].sync_sources({f"s{i:03d}": at(0) for i in range(300)})
    taken: list[tuple[str, str]] = []

    async def worker(store: PostgresStore, owner: str) -> None:
        while rows := await store.claim_due_sources(at(1), owner=owner, lease_s=60, limit=7):
            taken.extend((r.source_id, owner) for r in rows)

    await asyncio.gather(*(worker(s, f"r{n}") for n, s in enumerate(replicas) for _ in range(3)))
    ids = [sid for sid, _ in taken]
    assert sorted(ids) == sorted(f"s{i:03d}" for i in range(300))
    assert len({owner for _, owner in taken}) == 3  # all three really took part


async def _seed_outbox(store: PostgresStore, destinations: list[str], events: int) -> None:
    for d in destinations:
        await store.upsert_destination(Destination(d, "console"))
    await store.sync_sources({"s": at(0)})
    [row] = await store.claim_due_sources(at(0), owner="seed", lease_s=60, limit=1)
    await store.commit_poll(
        PollCommit(
            source_id=row.source_id,
            now=at(0),
            next_due=at(999),
            events=[
                RoutedEvent(Event("s", EventKind.NEW, f"k{n}", f"t{n}"), tuple(destinations))
                for n in range(events)
            ],
        ),
        owner="seed",
    )


async def test_concurrent_dispatchers_keep_per_destination_order(
    replicas: list[PostgresStore], db_url: str
) -> None:
    rooms = [f"room-{n}" for n in range(4)]
    await _seed_outbox(replicas[0], rooms, 40)
    sent: dict[str, list[int]] = {r: [] for r in rooms}
    overlaps: list[asyncpg.Record] = []
    observer = await asyncpg.create_pool(db_url, min_size=1, max_size=3)

    async def worker(store: PostgresStore, owner: str) -> None:
        while True:
            batch = await store.claim_deliveries(at(10), owner=owner, lease_s=60, limit=5)
            if not batch:
                if sum(map(len, sent.values())) == len(rooms) * 40:
                    return
                await asyncio.sleep(0.005)
                continue
            overlaps.extend(
                await observer.fetch(
                    "SELECT destination_id, lease_owner FROM deliveries WHERE state = 'pending' "
                    "AND destination_id = ANY($1::text[]) AND lease_owner <> $2",
                    [d.destination.id for d in batch],
                    owner,
                )
            )
            for d in batch:
                sent[d.destination.id].append(d.id)
                await asyncio.sleep(0)
                await store.mark_sent(d.id, remote_id=None, now=at(11))

    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker(s, f"w{n}") for n, s in enumerate(replicas))), 60
        )
    finally:
        await observer.close()
    assert overlaps == []  # while one replica holds a room, no other holds any of it
    for room, ids in sent.items():
        assert len(ids) == 40 and ids == sorted(ids), room
    assert (await replicas[0].outbox_stats()).pending == 0


async def test_a_dead_leaders_lock_is_taken_over_before_its_lease_runs_out(
    replicas: list[PostgresStore], db_url: str
) -> None:
    a, b, _ = replicas
    assert await a.try_lead("chat", owner="r1", lease_s=30, now=at(0))
    assert not await b.try_lead("chat", owner="r2", lease_s=30, now=at(5))
    # r1's process dies: the server ends its session and releases the advisory lock.
    admin = await asyncpg.connect(db_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    finally:
        await admin.close()
    assert killed == 1
    await asyncio.sleep(0.2)
    assert await b.try_lead("chat", owner="r2", lease_s=30, now=at(6))  # r1's lease: until 30
    assert not await a.try_lead("chat", owner="r1", lease_s=30, now=at(7))  # r1 steps down


async def test_a_silent_leader_hands_the_lock_to_its_successor(
    replicas: list[PostgresStore],
) -> None:
    a, b, c = replicas
    assert await a.try_lead("chat", owner="r1", lease_s=30, now=at(0))
    assert await b.try_lead("chat", owner="r2", lease_s=30, now=at(31))  # a went silent
    assert not await a.try_lead("chat", owner="r1", lease_s=30, now=at(32))  # gives lock back
    assert not await c.try_lead("chat", owner="r3", lease_s=30, now=at(33))  # no steal
    assert await b.try_lead("chat", owner="r2", lease_s=30, now=at(40))  # takes the lock
    assert not await c.try_lead("chat", owner="r3", lease_s=30, now=at(65))  # renewed


async def test_migrations_are_recorded_and_replicas_starting_together_migrate_once(
    db_url: str,
) -> None:
    before = await status(db_url)
    assert before.applied == () and [m.version for m in before.pending] == [
        m.version for m in bundled("postgres")
    ]
    stores = await asyncio.gather(*(open_postgres(db_url, max_connections=2) for _ in range(4)))
    try:
        assert len({s.install_id for s in stores}) == 1
        after = await status(db_url)
        assert after.pending == [] and after.current == bundled("postgres")[-1].version
        assert await stores[0].schema_version() == after.current
    finally:
        for s in stores:
            await s.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param(
            "postgresql://alerts:s3cret@db:5432/alerts",
            "postgresql://alerts:***@db:5432/alerts",
            id="password",
        ),
        pytest.param("postgresql://db/alerts", "postgresql://db/alerts", id="no-password"),
    ],
)
def test_redact_hides_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown
