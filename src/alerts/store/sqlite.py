"""SQLite store (aiosqlite, WAL): the embedded default.

One connection per process; every transaction runs under an asyncio lock so that
coroutines never interleave statements inside each other's transactions, and starts
with ``BEGIN IMMEDIATE`` so that several processes sharing the file serialise on the
write lock instead of failing half-way. Leases are plain columns compared with the
caller's clock, which is what lets the same contract hold on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from alerts.errors import LeaseLostError
from alerts.model import Delivery, DeliveryState, Destination, Event, Subscription
from alerts.store import (
    DeliveryRow,
    DestinationRow,
    ItemState,
    NotModified,
    OutboxStats,
    PollCommit,
    SourceRow,
)
from alerts.store.codec import (
    delivery_from_row,
    delivery_row_from_row,
    destination_from_row,
    dt,
    dumps,
    loads,
    source_from_row,
    subscription_from_row,
    subscription_row,
    ts,
)
from alerts.store.migrations import bundled, statements

_CHUNK = 500
T = TypeVar("T")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled SQLite migration, in order."""
    return [(m.version, m.name, m.sql) for m in bundled("sqlite")]


async def applied_versions(url: str) -> tuple[int, ...]:
    """Versions recorded in the database (``PRAGMA user_version``), without migrating."""
    path = path_from_url(url)
    if path != ":memory:" and not await asyncio.to_thread(os.path.exists, path):
        return ()
    async with aiosqlite.connect(path) as conn, conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    current = int(row[0]) if row else 0
    return tuple(m.version for m in bundled("sqlite") if m.version <= current)


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``."""
    rest = url.removeprefix("sqlite:")
    if rest.startswith("///"):
        return rest[3:]
    if rest.startswith("//"):
        return rest[2:]
    return rest


class SqliteStore:
    """``Store`` on one SQLite file."""

    def __init__(self, conn: aiosqlite.Connection, install_id: str) -> None:
        self._db = conn
        self._lock = asyncio.Lock()
        self.install_id = install_id

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        path = path_from_url(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=10000")
            await conn.execute("PRAGMA foreign_keys=ON")
            install_id = await cls._migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, install_id)

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> str:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for version, _name, sql in migrations():
                if version > current:
                    for statement in statements(sql):
                        await conn.execute(statement)
                    await conn.execute(f"PRAGMA user_version={int(version)}")
            async with conn.execute("SELECT value FROM meta WHERE key='install_id'") as cur:
                found = await cur.fetchone()
            if found is None:
                install_id = secrets.token_hex(4)
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('install_id', ?)", (install_id,)
                )
            else:
                install_id = str(found[0])
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        return install_id

    async def schema_version(self) -> int:
        async with self._lock, self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        await self._db.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            else:
                await self._db.execute("COMMIT")

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one transaction, in a single trip to the connection's thread.

        aiosqlite runs each statement, fetch and cursor close on the connection's own
        thread, one trip each, and a trip costs more CPU than a small statement. The
        hot paths (claims, poll commits, deliveries sent) hand their whole transaction
        over as one function instead: 1 trip instead of 5 to 15. This uses aiosqlite's
        own (private, long-standing) ``_execute`` and ``_conn``; the store contract
        suite runs every path that goes through here.
        """

        def transaction(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        run: Callable[..., Awaitable[T]] = self._db._execute
        async with self._lock:
            return await run(transaction, self._db._conn)

    async def _all(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def _one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    # --- sources ---------------------------------------------------------------------

    async def sync_sources(self, due: Mapping[str, datetime]) -> None:
        async with self._tx() as db:
            await db.execute("UPDATE sources SET active = 0")
            await db.executemany(
                "INSERT INTO sources (id, next_due, active) VALUES (?, ?, 1) "
                "ON CONFLICT (id) DO UPDATE SET active = 1",
                [(sid, ts(when)) for sid, when in due.items()],
            )

    async def claim_due_sources(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        only: Collection[str] | None = None,
    ) -> list[SourceRow]:
        t = ts(now)
        assert t is not None
        where = "active = 1 AND next_due <= ? AND (lease_until IS NULL OR lease_until < ?)"
        params: list[Any] = [t, t]
        if only is not None:
            ids = list(only)
            if not ids:
                return []
            where += f" AND id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        sql = (
            f"UPDATE sources SET lease_owner = ?, lease_until = ? WHERE id IN "
            f"(SELECT id FROM sources WHERE {where} ORDER BY next_due LIMIT ?) "
            "RETURNING *, 0 AS item_count"
        )
        args = [owner, t + lease_s, *params, limit]
        rows = await self._write(lambda db: db.execute(sql, args).fetchall())
        return sorted((source_from_row(r, dt) for r in rows), key=lambda r: r.next_due)

    async def claim_source(
        self, source_id: str, now: datetime, *, owner: str, lease_s: float
    ) -> SourceRow | None:
        t = ts(now)
        assert t is not None

        def claim(db: sqlite3.Connection) -> sqlite3.Row | None:
            db.execute(
                "INSERT INTO sources (id, next_due, active) VALUES (?, ?, 0) "
                "ON CONFLICT (id) DO NOTHING",
                (source_id, t),
            )
            row: sqlite3.Row | None = db.execute(
                "UPDATE sources SET lease_owner = ?, lease_until = ? WHERE id = ? "
                "AND (lease_until IS NULL OR lease_until < ?) RETURNING *, 0 AS item_count",
                (owner, t + lease_s, source_id, t),
            ).fetchone()
            return row

        row = await self._write(claim)
        return source_from_row(row, dt) if row is not None else None

    async def release_source(self, source_id: str, *, owner: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE sources SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (source_id, owner),
            )

    async def get_source(self, source_id: str) -> SourceRow | None:
        row = await self._one(_SOURCE_SELECT + " WHERE s.id = ?", (source_id,))
        return source_from_row(row, dt) if row else None

    async def list_sources(self) -> list[SourceRow]:
        rows = await self._all(_SOURCE_SELECT + " WHERE s.active = 1 ORDER BY s.id")
        return [source_from_row(r, dt) for r in rows]

    async def set_next_due(self, source_id: str, next_due: datetime) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE sources SET next_due = ? WHERE id = ?", (ts(next_due), source_id)
            )

    async def load_items(
        self, source_id: str, keys: Collection[str] | None = None
    ) -> dict[str, ItemState]:
        out: dict[str, ItemState] = {}
        if keys is None:
            rows = await self._all(
                "SELECT key, fingerprint, snapshot FROM items WHERE source_id = ?", (source_id,)
            )
            return {r["key"]: ItemState(r["fingerprint"], loads(r["snapshot"])) for r in rows}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            rows = await self._all(
                "SELECT key, fingerprint, snapshot FROM items WHERE source_id = ? "
                f"AND key IN ({','.join('?' * len(chunk))})",
                (source_id, *chunk),
            )
            out.update({r["key"]: ItemState(r["fingerprint"], loads(r["snapshot"])) for r in rows})
        return out

    async def commit_poll(self, commit: PollCommit, *, owner: str) -> list[Event]:
        return await self._write(lambda db: _commit_poll(db, commit, owner))

    async def commit_not_modified(self, polls: Sequence[NotModified]) -> int:
        if not polls:
            return 0
        rows = [
            (
                p.validators.etag,
                p.validators.last_modified,
                ts(p.now),
                ts(p.now),
                ts(p.next_due),
                p.source_id,
                p.owner,
            )
            for p in polls
        ]

        def update(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "UPDATE sources SET etag = ?, last_modified = ?, failures = 0, last_error = NULL, "
                "last_attempt_at = ?, last_success_at = ?, next_due = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE id = ? AND lease_owner = ?",
                rows,
            )
            return db.total_changes - before

        return await self._write(update)

    # --- destinations and subscriptions ---------------------------------------------

    async def upsert_destination(self, destination: Destination) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO destinations (id, sink, target, options) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET sink = excluded.sink, target = excluded.target, "
                "options = excluded.options",
                (
                    destination.id,
                    destination.sink,
                    destination.target,
                    dumps(dict(destination.options)),
                ),
            )

    async def get_destination(self, destination_id: str) -> DestinationRow | None:
        row = await self._one("SELECT * FROM destinations WHERE id = ?", (destination_id,))
        return destination_from_row(row, dt) if row else None

    async def list_destinations(self) -> list[DestinationRow]:
        return [
            destination_from_row(r, dt)
            for r in await self._all("SELECT * FROM destinations ORDER BY id")
        ]

    async def park_destination(self, destination_id: str, *, reason: str, now: datetime) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE destinations SET parked_reason = ?, parked_at = ? WHERE id = ?",
                (reason, ts(now), destination_id),
            )

    async def unpark_destination(self, destination_id: str) -> bool:
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE destinations SET parked_reason = NULL, parked_at = NULL, "
                "blocked_until = NULL WHERE id = ? AND parked_at IS NOT NULL",
                (destination_id,),
            )
            return cur.rowcount > 0

    async def remove_destination(self, destination_id: str, *, reason: str) -> int:
        async with self._tx() as db:
            cur = await db.execute(
                "DELETE FROM subscriptions WHERE destination_id = ?", (destination_id,)
            )
            removed = cur.rowcount
            await db.execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?, lease_owner = NULL, "
                "lease_until = NULL WHERE destination_id = ? AND state = 'pending'",
                (reason, destination_id),
            )
            await self._bump_subscriptions(db)
        return removed

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        row = {**subscription_row(subscription), "created_at": time.time()}
        async with self._tx() as db:
            async with db.execute(
                "INSERT INTO subscriptions (destination_id, topic, source, kinds, include, "
                "exclude, min_amount, min_change, created_by, created_at) VALUES (:destination_id, "
                ":topic, :source, :kinds, :include, :exclude, :min_amount, :min_change, "
                ":created_by, :created_at) ON CONFLICT (destination_id, topic, source) DO UPDATE "
                "SET kinds = excluded.kinds, include = excluded.include, "
                "exclude = excluded.exclude, min_amount = excluded.min_amount, "
                "min_change = excluded.min_change, created_by = excluded.created_by RETURNING *",
                row,
            ) as cur:
                stored = await cur.fetchone()
            await self._bump_subscriptions(db)
        assert stored is not None
        return subscription_from_row(stored)

    async def remove_subscriptions(
        self, destination_id: str, *, topic: str | None = None, source: str | None = None
    ) -> int:
        sql, params = "DELETE FROM subscriptions WHERE destination_id = ?", [destination_id]
        if topic is not None:
            sql, params = sql + " AND topic = ?", [*params, topic]
        if source is not None:
            sql, params = sql + " AND source = ?", [*params, source]
        async with self._tx() as db:
            cur = await db.execute(sql, params)
            await self._bump_subscriptions(db)
            return cur.rowcount

    async def list_subscriptions(self, destination_id: str | None = None) -> list[Subscription]:
        if destination_id is None:
            rows = await self._all("SELECT * FROM subscriptions ORDER BY id")
        else:
            rows = await self._all(
                "SELECT * FROM subscriptions WHERE destination_id = ? ORDER BY id",
                (destination_id,),
            )
        return [subscription_from_row(r) for r in rows]

    async def subscriptions_version(self) -> int:
        row = await self._one("SELECT value FROM meta WHERE key = 'subscriptions_version'")
        return int(row[0]) if row else 0

    @staticmethod
    async def _bump_subscriptions(db: aiosqlite.Connection) -> None:
        await db.execute(
            "INSERT INTO meta (key, value) VALUES ('subscriptions_version', '1') "
            "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    # --- the outbox ------------------------------------------------------------------

    async def claim_deliveries(
        self, now: datetime, *, owner: str, lease_s: float, limit: int
    ) -> list[Delivery]:
        t = ts(now)
        assert t is not None

        def claim(db: sqlite3.Connection) -> list[sqlite3.Row]:
            ids = [
                int(r[0])
                for r in db.execute(
                    "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id IN ("
                    " SELECT d.id FROM deliveries d JOIN destinations t ON t.id = d.destination_id"
                    " WHERE d.state = 'pending' AND t.parked_at IS NULL"
                    " AND (t.blocked_until IS NULL OR t.blocked_until <= ?)"
                    " AND (d.lease_until IS NULL OR d.lease_until < ?)"
                    " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination_id ="
                    "  d.destination_id AND e.state = 'pending' AND e.id < d.id AND e.lease_until >= ?)"
                    " ORDER BY d.id LIMIT ?) RETURNING id",
                    (owner, t + lease_s, t, t, t, limit),
                ).fetchall()
            ]
            if not ids:
                return []
            return db.execute(
                "SELECT d.id, d.attempts, e.payload, t.id AS dest_id, t.sink, t.target, t.options "
                "FROM deliveries d JOIN events e ON e.id = d.event_id "
                "JOIN destinations t ON t.id = d.destination_id "
                f"WHERE d.id IN ({','.join('?' * len(ids))}) ORDER BY d.id",
                ids,
            ).fetchall()

        rows = await self._write(claim)
        return [delivery_from_row(r, self.install_id) for r in rows]

    async def mark_sent(self, delivery_id: int, *, remote_id: str | None, now: datetime) -> None:
        params = (ts(now), remote_id, delivery_id)
        await self._write(
            lambda db: db.execute(
                "UPDATE deliveries SET state = 'sent', sent_at = ?, remote_id = ?, "
                "lease_owner = NULL, lease_until = NULL, attempts = attempts + 1 WHERE id = ?",
                params,
            )
        )

    async def mark_retry(
        self, delivery_id: int, *, error: str, retry_at: datetime, count_attempt: bool
    ) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE deliveries SET last_error = ?, attempts = attempts + ?, "
                "lease_owner = NULL, lease_until = NULL WHERE id = ? AND state = 'pending'",
                (error, int(count_attempt), delivery_id),
            )
            await db.execute(
                "UPDATE destinations SET blocked_until = MAX(COALESCE(blocked_until, 0), ?) "
                "WHERE id = (SELECT destination_id FROM deliveries WHERE id = ?)",
                (ts(retry_at), delivery_id),
            )

    async def mark_dead(self, delivery_id: int, *, error: str, now: datetime) -> None:
        async with self._tx() as db:
            await db.execute(
                "UPDATE deliveries SET state = 'dead', last_error = ?, attempts = attempts + 1, "
                "lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (error, delivery_id),
            )

    async def release_deliveries(self, delivery_ids: Collection[int]) -> None:
        ids = list(delivery_ids)
        if not ids:
            return
        async with self._tx() as db:
            await db.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                f"WHERE id IN ({','.join('?' * len(ids))}) AND state = 'pending'",
                ids,
            )

    async def list_deliveries(
        self, *, state: DeliveryState | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        sql = "SELECT d.*, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id"
        params: list[Any] = []
        if state is not None:
            sql += " WHERE d.state = ?"
            params.append(state.value)
        rows = await self._all(sql + " ORDER BY d.id DESC LIMIT ?", [*params, limit])
        return [delivery_row_from_row(r, dt) for r in rows]

    async def requeue_dead(self, delivery_ids: Collection[int] | None = None) -> int:
        sql = "UPDATE deliveries SET state = 'pending', attempts = 0 WHERE state = 'dead'"
        params: list[Any] = []
        if delivery_ids is not None:
            ids = list(delivery_ids)
            if not ids:
                return 0
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            params = ids
        async with self._tx() as db:
            cur = await db.execute(sql, params)
            return cur.rowcount

    async def outbox_stats(self) -> OutboxStats:
        row = await self._one(
            "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'pending') AS pending, "
            "(SELECT COUNT(*) FROM deliveries WHERE state = 'dead') AS dead, "
            "(SELECT MIN(created_at) FROM deliveries WHERE state = 'pending') AS oldest, "
            "(SELECT COUNT(*) FROM destinations WHERE parked_at IS NOT NULL) AS parked"
        )
        assert row is not None
        return OutboxStats(row["pending"], row["dead"], dt(row["oldest"]), row["parked"])

    # --- kv and leadership -------------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> str | None:
        row = await self._one(
            "SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)
        )
        return None if row is None else str(row[0])

    async def kv_set(self, namespace: str, key: str, value: str) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                (namespace, key, value),
            )

    async def lease_owners(self) -> set[str]:
        rows = await self._all(
            "SELECT lease_owner FROM sources WHERE lease_owner IS NOT NULL UNION "
            "SELECT lease_owner FROM deliveries WHERE lease_owner IS NOT NULL "
            "AND state = 'pending' UNION SELECT owner FROM leaders"
        )
        return {str(r[0]) for r in rows}

    async def release_owner(self, owner: str) -> int:
        async with self._tx() as db:
            a = await db.execute(
                "UPDATE sources SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                (owner,),
            )
            b = await db.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner = ? AND state = 'pending'",
                (owner,),
            )
            c = await db.execute("DELETE FROM leaders WHERE owner = ?", (owner,))
            return a.rowcount + b.rowcount + c.rowcount

    async def try_lead(self, name: str, *, owner: str, lease_s: float, now: datetime) -> bool:
        t = ts(now)
        assert t is not None
        async with (
            self._tx() as db,
            db.execute(
                "INSERT INTO leaders (name, owner, lease_until) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "lease_until = excluded.lease_until "
                "WHERE leaders.owner = excluded.owner OR leaders.lease_until < ? RETURNING owner",
                (name, owner, t + lease_s, t),
            ) as cur,
        ):
            row = await cur.fetchone()
        return row is not None

    async def resign(self, name: str, *, owner: str) -> None:
        async with self._tx() as db:
            await db.execute("DELETE FROM leaders WHERE name = ? AND owner = ?", (name, owner))


_SOURCE_SELECT = (
    "SELECT s.*, (SELECT COUNT(*) FROM items i WHERE i.source_id = s.id) AS item_count "
    "FROM sources s"
)


def _commit_poll(db: sqlite3.Connection, commit: PollCommit, owner: str) -> list[Event]:
    """``SqliteStore.commit_poll``'s transaction, run on the connection's thread."""
    now = ts(commit.now)
    row = db.execute("SELECT lease_owner FROM sources WHERE id = ?", (commit.source_id,)).fetchone()
    if row is None or row[0] != owner:
        raise LeaseLostError(f"source {commit.source_id!r} is no longer leased by {owner}")
    if commit.error is not None:
        db.execute(
            "UPDATE sources SET failures = failures + 1, last_error = ?, "
            "last_attempt_at = ?, next_due = ?, lease_owner = NULL, lease_until = NULL "
            "WHERE id = ?",
            (commit.error, now, ts(commit.next_due), commit.source_id),
        )
        return []
    db.execute(
        "UPDATE sources SET etag = ?, last_modified = ?, "
        "cursor = COALESCE(?, cursor), detector = COALESCE(?, detector), "
        "baselined = ?, failures = 0, last_error = NULL, last_attempt_at = ?, "
        "last_success_at = ?, last_new_at = CASE WHEN ? THEN ? ELSE last_new_at END, "
        "next_due = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
        (
            commit.validators.etag,
            commit.validators.last_modified,
            None if commit.cursor is None else dumps(dict(commit.cursor)),
            None if commit.detector is None else dumps(dict(commit.detector)),
            int(commit.baselined),
            now,
            now,
            int(commit.saw_new),
            now,
            ts(commit.next_due),
            commit.source_id,
        ),
    )
    if commit.items:
        db.executemany(
            "INSERT INTO items (source_id, key, fingerprint, snapshot, first_seen, "
            "last_changed) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (source_id, key) DO "
            "UPDATE SET fingerprint = excluded.fingerprint, snapshot = excluded.snapshot, "
            "last_changed = excluded.last_changed",
            [
                (commit.source_id, key, st.fingerprint, dumps(dict(st.snapshot)), now, now)
                for key, st in commit.items.items()
            ],
        )
    stored: list[Event] = []
    for routed in commit.events:
        event = routed.event
        id_row = db.execute(
            "INSERT INTO events (source_id, kind, key, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (event.source_id, event.kind.value, event.key, dumps(event.to_json()), now),
        ).fetchone()
        assert id_row is not None
        event_id = int(id_row[0])
        stored.append(event.with_id(event_id))
        db.executemany(
            "INSERT INTO deliveries (event_id, destination_id, created_at) VALUES (?, ?, ?)",
            [(event_id, dest, now) for dest in dict.fromkeys(routed.destination_ids)],
        )
    return stored
