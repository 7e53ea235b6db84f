"""The SQLite store owns its connection's thread: a transaction, however many
statements it holds, is one trip to that thread, and it runs there whole."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.model import Destination, Event, EventKind
from alerts.store import ItemState, NotModified, PollCommit, RoutedEvent
from alerts.store.database import Tx
from alerts.store.sqlite import SqliteDatabase, SqliteStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions handed to the SQLite thread, one per trip."""
    handed: list[str] = []
    real = SqliteDatabase._call

    async def counting(self: SqliteDatabase, fn: Callable[..., Any], *args: Any) -> Any:
        handed.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args)

    monkeypatch.setattr(SqliteDatabase, "_call", counting)
    return handed


async def test_hot_transactions_are_one_trip_each(store: SqliteStore, trips: list[str]) -> None:
    for room in ("room-a", "room-b"):
        await store.upsert_destination(Destination(room, "console"))
    await store.sync_sources({f"s{n}": T0 for n in range(3)})
    later = T0 + timedelta(hours=1)
    commit = PollCommit(
        source_id="s0",
        now=T0,
        next_due=later,
        items={"k": ItemState("fp")},
        events=[
            RoutedEvent(Event("s0", EventKind.NEW, f"k{n}", "t"), ("room-a", "room-b"))
            for n in range(3)
        ],
    )
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("claim_due_sources", lambda: store.claim_due_sources(T0, owner="w", lease_s=60, limit=9)),
        ("commit_poll", lambda: store.commit_poll(commit, owner="w")),
        (
            "commit_not_modified",
            lambda: store.commit_not_modified(
                [NotModified(f"s{n}", "w", T0, later) for n in (1, 2)]
            ),
        ),
        ("claim_deliveries", lambda: store.claim_deliveries(T0, owner="w", lease_s=60, limit=9)),
        ("mark_sent", lambda: store.mark_sent(1, remote_id="m1", now=T0)),
    ]
    for name, step in steps:
        trips.clear()
        assert await step() is not False
        assert len(trips) == 1, (name, trips)
    assert (await store.outbox_stats()).pending == 5


async def test_a_transaction_that_awaits_anything_else_is_refused_and_rolled_back(
    tmp_path: Path,
) -> None:
    db = await SqliteDatabase.open(str(tmp_path / "plain.db"))
    try:
        await db.execute("CREATE TABLE t (v TEXT)")

        async def wanders_off(tx: Tx) -> None:
            await tx.execute("INSERT INTO t (v) VALUES ($1)", "half")
            await asyncio.sleep(0)  # would run on the SQLite thread, outside the loop

        with pytest.raises(RuntimeError, match="awaited something other than its database"):
            await db.transaction(wanders_off)
        assert await db.fetch("SELECT v FROM t") == []
        assert await db.execute("INSERT INTO t (v) VALUES ($1), ($1)", "again") == 2
    finally:
        await db.close()


async def test_a_parameter_used_twice_is_bound_once(tmp_path: Path) -> None:
    """``$n`` is rendered as SQLite's numbered ``?n``, not as a position."""
    db = await SqliteDatabase.open(str(tmp_path / "plain.db"))
    try:
        assert await db.fetchval("SELECT $2 || $1 || $2", "b", "a") == "aba"
        with pytest.raises(sqlite3.ProgrammingError, match="bindings"):  # a bug: not translated
            await db.fetchval("SELECT $1 || $2", "only one")
    finally:
        await db.close()


async def test_hot_statements_search_indexes_instead_of_scanning(store: SqliteStore) -> None:
    """``EXPLAIN QUERY PLAN`` of every query and update the hot paths run (traced with
    their values): none reads a whole table of sources, items, events or deliveries.
    (An ``INSERT INTO events`` plan shows the foreign-key probe of ``deliveries``,
    which SQLite skips at run time unless a deferred violation is pending.)"""
    await store.upsert_destination(Destination("room", "console"))
    await store.sync_sources({f"s{n}": T0 for n in range(50)})
    seen: list[str] = []
    conn = store._sqlite._conn  # the store's own connection, used on its own thread
    await store._sqlite._call(conn.set_trace_callback, seen.append)
    later = T0 + timedelta(hours=1)
    await store.claim_due_sources(T0, owner="w", lease_s=60, limit=2, only=["s0", "s1"])
    await store.load_items("s0", ["a", "b"])
    routed = [RoutedEvent(Event("s0", EventKind.NEW, "a", "t"), ("room",))]
    items = {"a": ItemState("fp")}
    await store.commit_poll(PollCommit("s0", T0, later, items=items, events=routed), owner="w")
    await store.commit_not_modified([NotModified("s1", "w", T0, later)])
    await store.claim_due_sources(T0, owner="w", lease_s=60, limit=10)
    [delivery] = await store.claim_deliveries(T0, owner="w", lease_s=60, limit=10)
    await store.mark_sent(delivery.id, remote_id=None, now=T0)
    await store._sqlite._call(conn.set_trace_callback, None)
    statements = [s for s in seen if s.split()[0] in ("SELECT", "UPDATE")]
    assert len(statements) >= 8
    for statement in statements:
        plan = await store._sqlite.fetch("EXPLAIN QUERY PLAN " + statement)
        steps = [str(row[3]) for row in plan]
        scans = [s for s in steps if s.startswith("SCAN") and "json_each" not in s]
        assert not scans, (statement, steps)


def test_a_call_abandoned_by_a_closed_loop_leaves_the_thread_serving(tmp_path: Path) -> None:
    async def abandon() -> SqliteDatabase:
        db = await SqliteDatabase.open(str(tmp_path / "plain.db"))
        await db.fetchval("SELECT 1")
        create = db._conn.create_function  # the connection is used on its own thread
        await db._call(create, "pause", 0, lambda: time.sleep(0.3))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(db.fetchval("SELECT pause()"), 0.05)
        return db

    db = asyncio.run(abandon())  # its loop is closed while pause() still runs

    async def later() -> Any:
        value = await asyncio.wait_for(db.fetchval("SELECT 41 + 1"), 10)  # a dead thread: never
        await db.close()
        return value

    assert asyncio.run(later()) == 42
