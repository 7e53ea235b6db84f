"""SQLite store (WAL): the embedded default.

The connection lives on a thread of its own (a one-worker executor): every call,
and every transaction *as a whole*, is one trip to that thread, so calls never
interleave statements inside each other's transactions and a hot transaction
(a claim, ``commit_poll``, ``mark_sent``) costs a single hand-over. Writing
transactions start with ``BEGIN IMMEDIATE``, so several processes sharing the file
queue on the write lock (up to the busy timeout) instead of failing half-way.
Leases are plain columns compared with the caller's clock, which is what lets the
same contract hold on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

from alerts.errors import StoreUnavailable
from alerts.model import Delivery
from alerts.records import NotModified
from alerts.store.codec import delivery_from_row
from alerts.store.common import CLAIMED_DELIVERIES, NOT_MODIFIED, SqlStore
from alerts.store.database import Body, Row, Tx, run_now
from alerts.store.dialect import SQLITE
from alerts.store.faults import sqlite_fault, translated
from alerts.store.migrations import Migration, bundled

T = TypeVar("T")

STORE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",
    "busy_timeout=10000",
    "foreign_keys=ON",
    "temp_store=MEMORY",  # list parameters (json_each) make small temporary tables
)
"""Set on the store's connection."""
PLAIN_PRAGMAS = ("busy_timeout=10000",)
"""Set when a file is only read or copied (``alerts db status``, ``migrate-store``)."""

CLAIM_DELIVERIES = (
    "UPDATE deliveries SET lease_owner = $1, lease_until = $2, tried_at = COALESCE(tried_at, $3)"
    " WHERE id IN ("
    " SELECT d.id FROM deliveries d JOIN destinations t ON t.id = d.destination_id"
    " WHERE d.state = 'pending' AND t.parked_at IS NULL{sinks}"
    " AND (t.blocked_until IS NULL OR t.blocked_until <= $3)"
    " AND (d.lease_until IS NULL OR d.lease_until < $3)"
    " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination_id = d.destination_id"
    "  AND e.state = 'pending' AND e.id < d.id AND e.lease_until >= $3)"
    " ORDER BY d.id LIMIT $4) RETURNING id"
)


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``."""
    rest = url.removeprefix("sqlite:")
    if rest.startswith("///"):
        return rest[3:]
    if rest.startswith("//"):
        return rest[2:]
    return rest


class SqliteTx:
    """``Tx`` on the connection's own thread: each statement runs on the spot."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        return _changes(self._conn, sql, args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(SQLITE.render(sql), rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return _rows(self._conn, sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return _row(self._conn, sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return _value(self._conn, sql, args)


# One statement, run on the connection's thread.


def _changes(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> int:
    return max(conn.execute(SQLITE.render(sql), args).rowcount, 0)


def _rows(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> list[Row]:
    return conn.execute(SQLITE.render(sql), args).fetchall()


def _row(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> Row | None:
    row: Row | None = conn.execute(SQLITE.render(sql), args).fetchone()
    return row


def _value(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> Any:
    row = conn.execute(SQLITE.render(sql), args).fetchone()
    return None if row is None else row[0]


class Worker:
    """A one-worker executor: a thread that runs the functions handed to it one at a
    time, in order, and hands each result back to the awaiting event loop.

    ``concurrent.futures.ThreadPoolExecutor(max_workers=1)`` does the same with a
    concurrent future, its condition variable and a chained asyncio future per call;
    this does it with one asyncio future, which makes a trip about a third cheaper
    (a trip costs more than a small statement). A function whose caller was
    cancelled before it started is skipped.
    """

    def __init__(self, name: str) -> None:
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, fn, args))
        return future

    def stop(self) -> None:
        """Finish what was handed over, then end the thread."""
        self._jobs.put(None)

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if future.cancelled():
                continue
            try:
                outcome: tuple[Callable[..., None], Any] = (_succeed, fn(*args))
            except BaseException as exc:  # handed to the caller, whatever it is
                outcome = (_fail, exc)
            with contextlib.suppress(RuntimeError):  # the caller's loop has closed
                future.get_loop().call_soon_threadsafe(outcome[0], future, outcome[1])


_Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def _succeed(future: asyncio.Future[T], result: T) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class SqliteDatabase:
    """``Database`` on one SQLite file, whose connection only its worker thread uses."""

    dialect = SQLITE

    def __init__(self, path: str, conn: sqlite3.Connection, worker: Worker) -> None:
        self.where = path
        self._conn = conn
        self._tx = SqliteTx(conn)
        self._worker = worker
        self._fault = partial(sqlite_fault, path=path)
        self._closed = False

    @classmethod
    async def open(cls, path: str, *, pragmas: Sequence[str] = STORE_PRAGMAS) -> SqliteDatabase:
        """Open (creating it and its folder if need be) the file at ``path``."""
        worker = Worker(f"alerts-sqlite:{Path(path).name}")
        try:
            with translated(partial(sqlite_fault, path=path)):
                conn = await worker.submit(_connect, path, tuple(pragmas))
        except BaseException:
            worker.stop()
            raise
        return cls(path, conn, worker)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the connection's thread: one trip."""
        if self._closed:
            raise StoreUnavailable(f"SQLite database {self.where}: the store is closed")
        with translated(self._fault):
            return await self._worker.submit(fn, *args)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(connection)`` as one transaction on the connection's thread."""
        return await self._call(_atomically, self._conn, partial(work, self._conn))

    async def transaction(self, body: Callable[[Tx], Body[T]]) -> T:
        return await self._call(_atomically, self._conn, lambda: run_now(body(self._tx)))

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._call(_atomically, self._conn, partial(_changes, self._conn, sql, args))

    async def execute_returning(self, sql: str, *args: Any) -> list[Row]:
        return await self._call(_atomically, self._conn, partial(_rows, self._conn, sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._call(_rows, self._conn, sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self._call(_row, self._conn, sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._call(_value, self._conn, sql, args)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._worker.submit(self._conn.close)
        finally:
            self._worker.stop()


def _connect(path: str, pragmas: tuple[str, ...]) -> sqlite3.Connection:
    if path != ":memory:":
        with contextlib.suppress(OSError):  # if it cannot be made, connect says why
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
    except BaseException:
        conn.close()
        raise
    return conn


def _atomically(conn: sqlite3.Connection, work: Callable[[], T]) -> T:
    """``work()`` in a ``BEGIN IMMEDIATE`` transaction, committed or rolled back."""
    if conn.in_transaction:  # a ROLLBACK that failed (disk full, I/O) left one open
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the first error is the one to tell
                conn.execute("ROLLBACK")
        raise
    return result


class SqliteStore(SqlStore):
    """``Store`` on one SQLite file."""

    def __init__(self, db: SqliteDatabase, install_id: str) -> None:
        super().__init__(db, install_id)
        self._sqlite = db

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        """Open (creating and migrating it if need be) the database at ``url``."""
        db = await SqliteDatabase.open(path_from_url(url))
        try:
            install_id = await cls.migrate(db)
        except BaseException:
            await db.close()
            raise
        return cls(db, install_id)

    async def commit_not_modified(self, polls: Sequence[NotModified]) -> int:
        if not polls:
            return 0
        time = self._d.time
        rows = [
            (
                p.validators.etag,
                p.validators.last_modified,
                time(p.now),
                time(p.next_due),
                p.source_id,
                p.owner,
            )
            for p in polls
        ]
        sql = SQLITE.render(NOT_MODIFIED)

        def update(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany(sql, rows)
            return conn.total_changes - before

        return await self._sqlite.run(update)

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        sinks: Collection[str] | None = None,
    ) -> list[Delivery]:
        d = self._d
        until, at = d.time(now + timedelta(seconds=lease_s)), d.time(now)
        args: list[Any] = [owner, until, at, limit]
        only = ""
        if sinks is not None:
            only = f" AND {d.member('t.sink', 5, 'text')}"
            args.append(d.array(sinks))
        sql = CLAIM_DELIVERIES.format(sinks=only)

        async def claim(tx: Tx) -> list[Row]:
            ids = [r[0] for r in await tx.fetch(sql, *args)]
            if not ids:
                return []
            return await tx.fetch(
                f"{CLAIMED_DELIVERIES} WHERE {d.member('d.id', 1, 'bigint')} ORDER BY d.id",
                d.array(ids),
            )

        rows = await self._db.transaction(claim)
        return [delivery_from_row(r, self.install_id, d, now) for r in rows]

    # --- migration bookkeeping: a schema_migrations table, like PostgreSQL's ----------

    @staticmethod
    async def _lock_schema(tx: Tx) -> None:
        """``BEGIN IMMEDIATE`` already holds the write lock. Each applied migration is
        a row, so one numbered lower than the newest applied (a file that landed
        later) is still applied; a file from before the table has its rows made from
        ``PRAGMA user_version``, which then meant "every migration up to here"."""
        if await _has_table(tx):
            return
        await tx.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        current = int(await tx.fetchval("PRAGMA user_version") or 0)
        await tx.executemany(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            [
                (m.version, m.name, time.time())
                for m in bundled(SQLITE.name)
                if m.version <= current
            ],
        )

    @staticmethod
    async def _applied(tx: Tx) -> tuple[int, ...]:
        if await _has_table(tx):
            rows = await tx.fetch("SELECT version FROM schema_migrations ORDER BY version")
            return tuple(int(r[0]) for r in rows)
        current = int(await tx.fetchval("PRAGMA user_version") or 0)
        return tuple(m.version for m in bundled(SQLITE.name) if m.version <= current)

    @staticmethod
    async def _record(tx: Tx, migration: Migration) -> None:
        await tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            migration.version,
            migration.name,
            time.time(),
        )
        current = int(await tx.fetchval("PRAGMA user_version") or 0)  # the newest, for tools
        await tx.execute(f"PRAGMA user_version={max(current, int(migration.version))}")


async def _has_table(tx: Tx) -> bool:
    found = await tx.fetchval(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    )
    return found is not None


async def applied_versions(url: str) -> tuple[int, ...]:
    """Versions recorded in the database (``schema_migrations``), without migrating."""
    path = path_from_url(url)
    if path != ":memory:" and not await asyncio.to_thread(os.path.exists, path):
        return ()
    db = await SqliteDatabase.open(path, pragmas=PLAIN_PRAGMAS)
    try:
        return await SqliteStore.applied(db)
    finally:
        await db.close()
