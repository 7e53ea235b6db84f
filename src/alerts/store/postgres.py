"""PostgreSQL store (asyncpg): any number of replicas share one database.

Why replicas never step on each other:

* **Due sources** are leased with ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
  LOCKED)``. A concurrent claimer skips rows another transaction is taking, and READ
  COMMITTED re-checks a row it does lock, so a lease committed a moment earlier
  excludes it. A lease is a time (``lease_until``): a replica that dies mid-poll
  stops mattering when it runs out.
* **commit_poll** locks the source row and checks the lease owner before writing
  anything; a lost lease raises ``LeaseLostError`` and the transaction is dropped, so
  detector state, items, events and deliveries are written together or not at all.
* **Deliveries** keep per-destination order. A claim first locks the destinations
  whose oldest pending delivery is free (``FOR NO KEY UPDATE SKIP LOCKED``: inserts
  of new deliveries, which take ``FOR KEY SHARE`` through the foreign key, are not
  blocked), then, in a second statement — whose snapshot sees every claim committed
  before the lock was granted — leases deliveries of those destinations only, under
  the rule SQLite uses: none while an earlier delivery of the same destination is
  leased. Two replicas can therefore never hold deliveries of one destination at once.
* **Leadership** (chat listeners): ``pg_try_advisory_lock`` on a dedicated connection
  held while leading, plus a lease row. When the leader's process dies, the server
  drops its connection and lock; the next replica to try gets the lock and takes over
  at once. A leader that is alive but silent (its lease ran out) is replaced without
  the lock and hands the lock over on its next try.

Several handles (pools) on one database behave like several replicas.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from alerts.errors import StoreError, StoreUnavailable
from alerts.model import Delivery, Event, View
from alerts.records import NotModified, PollCommit
from alerts.store.codec import (
    delivery_from_row,
    dumps,
    hold_columns,
    template_column,
    view_columns,
)
from alerts.store.common import SqlStore
from alerts.store.database import Body, Row, Tx
from alerts.store.dialect import POSTGRES
from alerts.store.faults import postgres_fault, translated
from alerts.store.migrations import Migration

T = TypeVar("T")

MIGRATION_LOCK = 0x616C6572_7473  # "alerts": serialises migrations of replicas starting together
LEADER_LOCK_CLASS = 0x616C6572  # first key of the two-key advisory lock of leadership


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _count(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 3`` (0 for DDL)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresTx:
    """``Tx`` on one pooled connection inside its transaction."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        return _count(await self._conn.execute(sql, *args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if batch:
            await self._conn.executemany(sql, batch)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self._conn.fetchrow(sql, *args)
        return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._conn.fetchval(sql, *args)


class PostgresDatabase:
    """``Database`` on an asyncpg pool. A statement outside a transaction runs on
    its own (autocommit); a connection lost with the server is replaced by the pool
    on its next use, and on any fault that may have left other pooled connections
    behind (a restart, a failover to read-only) every connection is renewed."""

    dialect = POSTGRES

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self.where = where
        self._pool = pool
        self._fault = partial(postgres_fault, server=where)

    @classmethod
    async def open(cls, url: str, *, max_connections: int) -> PostgresDatabase:
        """Connect a pool to ``url``; a refused or failed connection is reported
        (``StoreUnavailable`` when it may pass, ``StoreError`` otherwise) without
        the URL's password."""
        where = redact(url)
        try:
            with translated(partial(postgres_fault, server=where)):
                pool = await asyncpg.create_pool(
                    url,
                    min_size=1,
                    max_size=max_connections,
                    command_timeout=60,
                    reset=_keep_session,
                    # claims depend on the data (due rows, heads of queues): a generic
                    # plan cached after a few runs can turn an index probe into a scan
                    server_settings={"plan_cache_mode": "force_custom_plan"},
                )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            # a wrong password, an unknown database, a malformed URL: not transient
            raise StoreError(f"cannot connect to PostgreSQL at {where}: {exc}") from exc
        return cls(pool, where)

    @asynccontextmanager
    async def _guarded(self) -> AsyncIterator[None]:
        try:
            with translated(self._fault):
                yield
        except StoreUnavailable:
            await self._pool.expire_connections()
            raise

    async def transaction(self, body: Callable[[Tx], Body[T]]) -> T:
        async with self._guarded(), self._pool.acquire() as conn, conn.transaction():
            return await body(PostgresTx(conn))

    async def execute(self, sql: str, *args: Any) -> int:
        async with self._guarded():
            return _count(await self._pool.execute(sql, *args))

    async def execute_returning(self, sql: str, *args: Any) -> list[Row]:
        return await self.fetch(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._guarded():
            return list(await self._pool.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self._guarded():
            row: Row | None = await self._pool.fetchrow(sql, *args)
            return row

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._guarded():
            return await self._pool.fetchval(sql, *args)

    async def close(self) -> None:
        await self._pool.close()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pooled connections keep no session state (advisory locks live on their own
    connection, transaction locks end with the transaction): skip asyncpg's reset
    round trip on every release."""


async def open_postgres(url: str, *, max_connections: int = 10) -> PostgresStore:
    """Connect, migrate and return a store on the database named by ``url``."""
    db = await PostgresDatabase.open(url, max_connections=max_connections)
    try:
        install_id = await PostgresStore.migrate(db)
    except BaseException:
        await db.close()
        raise
    return PostgresStore(db, install_id, url)


async def applied_versions(url: str) -> tuple[int, ...]:
    """Versions recorded in ``schema_migrations``, without migrating."""
    db = await PostgresDatabase.open(url, max_connections=1)
    try:
        return await PostgresStore.applied(db)
    finally:
        await db.close()


def _after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


class PostgresStore(SqlStore):
    """``Store`` on PostgreSQL; see the module docstring for the concurrency argument."""

    def __init__(self, db: PostgresDatabase, install_id: str, url: str) -> None:
        super().__init__(db, install_id)
        self._url = url
        self._leader_conn: asyncpg.Connection | None = None
        self._held: set[str] = set()

    async def close(self) -> None:
        if self._leader_conn is not None and not self._leader_conn.is_closed():
            await self._leader_conn.close()
        self._leader_conn = None
        self._held.clear()
        await super().close()

    # --- batched writes: arrays sent once, unnested by the server --------------------

    async def commit_not_modified(self, polls: Sequence[NotModified]) -> int:
        if not polls:
            return 0
        return await self._db.execute(
            "UPDATE sources s SET etag = v.etag, last_modified = v.last_modified, failures = 0, "
            "last_error = NULL, last_attempt_at = v.now, last_success_at = v.now, "
            "next_due = v.next_due, lease_owner = NULL, lease_until = NULL "
            "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], "
            "$6::timestamptz[]) AS v(id, owner, etag, last_modified, now, next_due) "
            "WHERE s.id = v.id AND s.lease_owner = v.owner",
            [p.source_id for p in polls],
            [p.owner for p in polls],
            [p.validators.etag for p in polls],
            [p.validators.last_modified for p in polls],
            [p.now for p in polls],
            [p.next_due for p in polls],
        )

    async def _upsert_items(self, tx: Tx, commit: PollCommit) -> None:
        keys = list(commit.items)
        await tx.execute(
            "INSERT INTO items (source_id, key, fingerprint, snapshot, first_seen, last_changed, "
            "digest) SELECT $1, u.key, u.fp, u.snap::json, $5, $5, u.digest "
            "FROM unnest($2::text[], $3::text[], $4::text[], $6::text[]) "
            "AS u(key, fp, snap, digest) "
            "ON CONFLICT (source_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "snapshot = excluded.snapshot, last_changed = excluded.last_changed, "
            "digest = excluded.digest",
            commit.source_id,
            keys,
            [commit.items[k].fingerprint for k in keys],
            [dumps(dict(commit.items[k].snapshot)) for k in keys],
            commit.now,
            [commit.items[k].digest for k in keys],
        )

    async def _insert_events(self, tx: Tx, commit: PollCommit) -> list[Event]:
        """Events and their deliveries, ids allocated up front so both keep event order."""
        event_ids = await _next_ids(tx, "events", len(commit.events))
        stored = [r.event.with_id(i) for r, i in zip(commit.events, event_ids, strict=True)]
        await tx.execute(
            "INSERT INTO events (id, source_id, kind, key, payload, created_at) "
            "SELECT u.id, u.source_id, u.kind, u.key, u.payload::json, $6 FROM unnest("
            "$1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) "
            "AS u(id, source_id, kind, key, payload)",
            event_ids,
            [e.source_id for e in stored],
            [e.kind.value for e in stored],
            [e.key for e in stored],
            [dumps(r.event.to_json()) for r in commit.events],
            commit.now,
        )
        rows = [
            (
                event_id,
                dest,
                *view_columns(routed.views.get(dest, View())),
                *hold_columns(routed.holds.get(dest), self._d),
                template_column(routed.views.get(dest, View())),
            )
            for routed, event_id in zip(commit.events, event_ids, strict=True)
            for dest in dict.fromkeys(routed.destination_ids)
        ]
        if rows:
            await tx.execute(
                "INSERT INTO deliveries (id, event_id, destination_id, created_at, updates, "
                "merge_window_s, state, hold_until, digest_key, template) SELECT u.id, "
                "u.event_id, u.dest, $4, u.updates, u.mw, u.state, u.hold, u.dkey, u.tpl "
                "FROM unnest($1::bigint[], $2::bigint[], $3::text[], $5::text[], "
                "$6::float8[], $7::text[], $8::timestamptz[], $9::text[], $10::text[]) "
                "AS u(id, event_id, dest, updates, mw, state, hold, dkey, tpl)",
                await _next_ids(tx, "deliveries", len(rows)),
                [r[0] for r in rows],
                [r[1] for r in rows],
                commit.now,
                [r[2] for r in rows],
                [r[3] for r in rows],
                [r[4] for r in rows],
                [r[5] for r in rows],
                [r[6] for r in rows],
                [r[7] for r in rows],
            )
        return stored

    # --- the outbox: destinations locked so replicas keep per-destination order -------

    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        sinks: Collection[str] | None = None,
    ) -> list[Delivery]:
        async def claim(tx: Tx) -> list[Row]:
            only = None if sinks is None else list(sinks)
            destinations = [r[0] for r in await tx.fetch(_LOCK_FREE_DESTINATIONS, now, limit, only)]
            if not destinations:
                return []
            until = _after(now, lease_s)
            return await tx.fetch(_CLAIM_DELIVERIES, owner, until, destinations, now, limit)

        rows = await self._db.transaction(claim)
        return [delivery_from_row(r, self.install_id, self._d, now) for r in rows]

    # --- leadership: an advisory lock on a connection of its own, plus the lease row ---

    async def try_lead(self, name: str, *, owner: str, lease_s: float, now: datetime) -> bool:
        """Lead while holding the advisory lock, or when the last leader's lease ran out.

        The row records whether its leader held the lock. Getting the lock while the
        row names another leader that held it means that leader's connection is gone
        (the server released the lock): take over without waiting for its lease.
        """
        locked = await self._hold_lock(name)

        async def decide(tx: Tx) -> bool:
            row = await tx.fetchrow(
                "SELECT owner, lease_until, locked FROM leaders WHERE name = $1 FOR UPDATE", name
            )
            mine = (
                row is None
                or row["owner"] == owner
                or row["lease_until"] < now
                or (locked and row["locked"])
            )
            if mine:
                await tx.execute(
                    "INSERT INTO leaders (name, owner, lease_until, locked) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET "
                    "owner = excluded.owner, lease_until = excluded.lease_until, "
                    "locked = excluded.locked",
                    name,
                    owner,
                    _after(now, lease_s),
                    locked,
                )
            return bool(mine)

        mine = await self._db.transaction(decide)
        if not mine and locked:
            await self._drop_lock(name)  # a live leader without the lock takes it next
        return mine

    async def resign(self, name: str, *, owner: str) -> None:
        await super().resign(name, owner=owner)
        if name in self._held:
            await self._drop_lock(name)

    async def _hold_lock(self, name: str) -> bool:
        """True if this handle holds the advisory lock for ``name`` (taking it if free)."""
        conn = self._leader_conn
        if conn is None or conn.is_closed():
            self._held.clear()
            try:
                conn = self._leader_conn = await asyncpg.connect(self._url)
            except (OSError, asyncpg.PostgresError):
                self._leader_conn = None
                return False
        if name in self._held:
            return True
        try:
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", LEADER_LOCK_CLASS, name
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        if got:
            self._held.add(name)
        return bool(got)

    async def _drop_lock(self, name: str) -> None:
        self._held.discard(name)
        conn = self._leader_conn
        if conn is not None and not conn.is_closed():
            await conn.fetchval(
                "SELECT pg_advisory_unlock($1, hashtext($2))", LEADER_LOCK_CLASS, name
            )

    # --- migration bookkeeping: schema_migrations, under an advisory lock -------------

    @staticmethod
    async def _lock_schema(tx: Tx) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )

    @staticmethod
    async def _applied(tx: Tx) -> tuple[int, ...]:
        if await tx.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return ()
        rows = await tx.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return tuple(int(r[0]) for r in rows)

    @staticmethod
    async def _record(tx: Tx, migration: Migration) -> None:
        await tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )


async def _next_ids(tx: Tx, table: str, n: int) -> list[int]:
    rows = await tx.fetch(
        f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, $1)",
        n,
    )
    return sorted(int(r[0]) for r in rows)


# Destinations whose oldest pending delivery is free, oldest first, locked for this claim.
_LOCK_FREE_DESTINATIONS = (
    "SELECT t.id FROM destinations t CROSS JOIN LATERAL ("
    " SELECT d.id, d.lease_until FROM deliveries d"
    " WHERE d.destination_id = t.id AND d.state = 'pending' ORDER BY d.id LIMIT 1) h"
    " WHERE t.parked_at IS NULL AND (t.blocked_until IS NULL OR t.blocked_until <= $1)"
    " AND ($3::text[] IS NULL OR t.sink = ANY($3::text[]))"
    " AND (h.lease_until IS NULL OR h.lease_until < $1)"
    " ORDER BY h.id LIMIT $2 FOR NO KEY UPDATE OF t SKIP LOCKED"
)

# Within the locked destinations: pending, free deliveries in id order, each queue cut
# at its first delivery someone still holds (SQLite's rule, without a per-row anti-join).
_CLAIM_DELIVERIES = (
    "WITH heads AS ("
    " SELECT q.dest, (SELECT min(e.id) FROM deliveries e WHERE e.destination_id = q.dest"
    "  AND e.state = 'pending' AND e.lease_until >= $4) AS stop"
    " FROM unnest($3::text[]) AS q(dest)),"
    " picked AS ("
    " SELECT c.id FROM heads h CROSS JOIN LATERAL ("
    "  SELECT d.id FROM deliveries d WHERE d.destination_id = h.dest AND d.state = 'pending'"
    "  AND (h.stop IS NULL OR d.id < h.stop) AND (d.lease_until IS NULL OR d.lease_until < $4)"
    "  ORDER BY d.id LIMIT $5) c"
    " ORDER BY c.id LIMIT $5),"
    " claimed AS ("
    " UPDATE deliveries SET lease_owner = $1, lease_until = $2, tried_at = COALESCE(tried_at, $4)"
    " WHERE id IN (SELECT id FROM picked) AND state = 'pending'"
    " AND (lease_until IS NULL OR lease_until < $4)"
    " RETURNING id, event_id, destination_id, attempts, tried_at, updates, merge_window_s,"
    " template)"
    " SELECT c.id, c.attempts, c.tried_at, c.updates, c.merge_window_s, c.template, e.payload,"
    " t.id AS dest_id,"
    " t.sink, t.target, t.options"
    " FROM claimed c JOIN events e ON e.id = c.event_id"
    " JOIN destinations t ON t.id = c.destination_id ORDER BY c.id"
)
