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

import secrets
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from alerts.errors import LeaseLostError, StoreError
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
    dumps,
    loads,
    same,
    source_from_row,
    subscription_from_row,
    subscription_row,
)
from alerts.store.migrations import bundled, statements

MIGRATION_LOCK = 0x616C6572_7473  # "alerts": serialises migrations of replicas starting together
LEADER_LOCK_CLASS = 0x616C6572  # first key of the two-key advisory lock of leadership

_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
    "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
)


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


async def open_postgres(url: str, *, max_connections: int = 10) -> PostgresStore:
    """Connect, migrate and return a store on the database named by ``url``."""
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=max_connections,
            command_timeout=60,
            reset=_keep_session,
            # claims depend on the data (due rows, heads of queues): a generic plan
            # cached after a few runs can turn an index probe into a scan per row
            server_settings={"plan_cache_mode": "force_custom_plan"},
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot connect to {redact(url)}: {exc}") from exc
    try:
        async with pool.acquire() as conn:
            install_id = await _migrate(conn)
    except BaseException:
        await pool.close()
        raise
    return PostgresStore(pool, install_id, url)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pooled connections keep no session state (advisory locks live on their own
    connection, transaction locks end with the transaction): skip asyncpg's reset
    round trip on every release."""


async def _migrate(conn: asyncpg.Connection) -> str:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_MIGRATIONS_TABLE)
        applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in bundled("postgres"):
            if migration.version in applied:
                continue
            for statement in statements(migration.sql):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
        await conn.execute(
            "INSERT INTO meta (key, value) VALUES ('install_id', $1) ON CONFLICT DO NOTHING",
            secrets.token_hex(4),
        )
        install_id = await conn.fetchval("SELECT value FROM meta WHERE key = 'install_id'")
    return str(install_id)


async def applied_versions(url: str) -> tuple[int, ...]:
    """Versions recorded in ``schema_migrations``, without migrating."""
    try:
        conn = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot connect to {redact(url)}: {exc}") from exc
    try:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return ()
        rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return tuple(int(r[0]) for r in rows)
    finally:
        await conn.close()


def _after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def _count(status: str) -> int:
    """Rows affected, from a command status such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStore:
    """``Store`` on PostgreSQL; see the module docstring for the concurrency argument."""

    def __init__(self, pool: asyncpg.Pool, install_id: str, url: str) -> None:
        self._pool = pool
        self._url = url
        self.install_id = install_id
        self._leader_conn: asyncpg.Connection | None = None
        self._held: set[str] = set()

    async def close(self) -> None:
        if self._leader_conn is not None and not self._leader_conn.is_closed():
            await self._leader_conn.close()
        self._leader_conn = None
        self._held.clear()
        await self._pool.close()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    async def schema_version(self) -> int:
        value = await self._pool.fetchval("SELECT max(version) FROM schema_migrations")
        return int(value or 0)

    # --- sources ---------------------------------------------------------------------

    async def sync_sources(self, due: Mapping[str, datetime]) -> None:
        ids, times = list(due), list(due.values())
        async with self._tx() as conn:
            await conn.execute(
                "UPDATE sources SET active = false WHERE active AND NOT (id = ANY($1::text[]))",
                ids,
            )
            await conn.execute(
                "INSERT INTO sources (id, next_due, active) "
                "SELECT u.id, u.due, true FROM unnest($1::text[], $2::timestamptz[]) AS u(id, due) "
                "ON CONFLICT (id) DO UPDATE SET active = true",
                ids,
                times,
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
        where = "active AND next_due <= $3 AND (lease_until IS NULL OR lease_until < $3)"
        params: list[Any] = [owner, _after(now, lease_s), now, limit]
        if only is not None:
            ids = list(only)
            if not ids:
                return []
            where += " AND id = ANY($5::text[])"
            params.append(ids)
        rows = await self._pool.fetch(
            "UPDATE sources s SET lease_owner = $1, lease_until = $2 FROM ("
            f" SELECT id FROM sources WHERE {where} ORDER BY next_due LIMIT $4"
            " FOR UPDATE SKIP LOCKED) c WHERE s.id = c.id RETURNING s.*, 0 AS item_count",
            *params,
        )
        return sorted((source_from_row(r, same) for r in rows), key=lambda r: r.next_due)

    async def claim_source(
        self, source_id: str, now: datetime, *, owner: str, lease_s: float
    ) -> SourceRow | None:
        async with self._tx() as conn:
            await conn.execute(
                "INSERT INTO sources (id, next_due, active) VALUES ($1, $2, false) "
                "ON CONFLICT (id) DO NOTHING",
                source_id,
                now,
            )
            row = await conn.fetchrow(
                "UPDATE sources SET lease_owner = $2, lease_until = $3 WHERE id = $1 "
                "AND (lease_until IS NULL OR lease_until < $4) RETURNING *, 0 AS item_count",
                source_id,
                owner,
                _after(now, lease_s),
                now,
            )
        return source_from_row(row, same) if row is not None else None

    async def release_source(self, source_id: str, *, owner: str) -> None:
        await self._pool.execute(
            "UPDATE sources SET lease_owner = NULL, lease_until = NULL "
            "WHERE id = $1 AND lease_owner = $2",
            source_id,
            owner,
        )

    async def get_source(self, source_id: str) -> SourceRow | None:
        row = await self._pool.fetchrow(_SOURCE_SELECT + " WHERE s.id = $1", source_id)
        return source_from_row(row, same) if row else None

    async def list_sources(self) -> list[SourceRow]:
        rows = await self._pool.fetch(_SOURCE_SELECT + " WHERE s.active ORDER BY s.id")
        return [source_from_row(r, same) for r in rows]

    async def set_next_due(self, source_id: str, next_due: datetime) -> None:
        await self._pool.execute(
            "UPDATE sources SET next_due = $2 WHERE id = $1", source_id, next_due
        )

    async def load_items(
        self, source_id: str, keys: Collection[str] | None = None
    ) -> dict[str, ItemState]:
        if keys is None:
            rows = await self._pool.fetch(
                "SELECT key, fingerprint, snapshot FROM items WHERE source_id = $1", source_id
            )
        else:
            rows = await self._pool.fetch(
                "SELECT key, fingerprint, snapshot FROM items "
                "WHERE source_id = $1 AND key = ANY($2::text[])",
                source_id,
                list(dict.fromkeys(keys)),
            )
        return {r["key"]: ItemState(r["fingerprint"], loads(r["snapshot"])) for r in rows}

    async def commit_poll(self, commit: PollCommit, *, owner: str) -> list[Event]:
        async with self._tx() as conn:
            holder = await conn.fetchval(
                "SELECT lease_owner FROM sources WHERE id = $1 FOR UPDATE", commit.source_id
            )
            if holder != owner:
                raise LeaseLostError(f"source {commit.source_id!r} is no longer leased by {owner}")
            if commit.error is not None:
                await conn.execute(
                    "UPDATE sources SET failures = failures + 1, last_error = $2, "
                    "last_attempt_at = $3, next_due = $4, lease_owner = NULL, lease_until = NULL "
                    "WHERE id = $1",
                    commit.source_id,
                    commit.error,
                    commit.now,
                    commit.next_due,
                )
                return []
            await self._write_success(conn, commit)
            if commit.items:
                await _upsert_items(conn, commit)
            return await _insert_events(conn, commit)

    async def commit_not_modified(self, polls: Sequence[NotModified]) -> int:
        if not polls:
            return 0
        status = await self._pool.execute(
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
        return int(status.split()[-1])

    @staticmethod
    async def _write_success(conn: asyncpg.Connection, commit: PollCommit) -> None:
        await conn.execute(
            "UPDATE sources SET etag = $2, last_modified = $3, "
            "cursor = COALESCE($4::json, cursor), detector = COALESCE($5::json, detector), "
            "baselined = $6, failures = 0, last_error = NULL, last_attempt_at = $7, "
            "last_success_at = $7, last_new_at = CASE WHEN $8 THEN $7 ELSE last_new_at END, "
            "next_due = $9, lease_owner = NULL, lease_until = NULL WHERE id = $1",
            commit.source_id,
            commit.validators.etag,
            commit.validators.last_modified,
            None if commit.cursor is None else dumps(dict(commit.cursor)),
            None if commit.detector is None else dumps(dict(commit.detector)),
            commit.baselined,
            commit.now,
            commit.saw_new,
            commit.next_due,
        )

    # --- destinations and subscriptions ---------------------------------------------

    async def upsert_destination(self, destination: Destination) -> None:
        await self._pool.execute(
            "INSERT INTO destinations (id, sink, target, options) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (id) DO UPDATE SET sink = excluded.sink, target = excluded.target, "
            "options = excluded.options",
            destination.id,
            destination.sink,
            destination.target,
            dumps(dict(destination.options)),
        )

    async def get_destination(self, destination_id: str) -> DestinationRow | None:
        row = await self._pool.fetchrow("SELECT * FROM destinations WHERE id = $1", destination_id)
        return destination_from_row(row, same) if row else None

    async def list_destinations(self) -> list[DestinationRow]:
        rows = await self._pool.fetch("SELECT * FROM destinations ORDER BY id")
        return [destination_from_row(r, same) for r in rows]

    async def park_destination(self, destination_id: str, *, reason: str, now: datetime) -> None:
        await self._pool.execute(
            "UPDATE destinations SET parked_reason = $2, parked_at = $3 WHERE id = $1",
            destination_id,
            reason,
            now,
        )

    async def unpark_destination(self, destination_id: str) -> bool:
        status = await self._pool.execute(
            "UPDATE destinations SET parked_reason = NULL, parked_at = NULL, "
            "blocked_until = NULL WHERE id = $1 AND parked_at IS NOT NULL",
            destination_id,
        )
        return _count(status) > 0

    async def remove_destination(self, destination_id: str, *, reason: str) -> int:
        async with self._tx() as conn:
            removed = _count(
                await conn.execute(
                    "DELETE FROM subscriptions WHERE destination_id = $1", destination_id
                )
            )
            await conn.execute(
                "UPDATE deliveries SET state = 'dead', last_error = $2, lease_owner = NULL, "
                "lease_until = NULL WHERE destination_id = $1 AND state = 'pending'",
                destination_id,
                reason,
            )
            await _bump_subscriptions(conn)
        return removed

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        row = subscription_row(subscription)
        async with self._tx() as conn:
            stored = await conn.fetchrow(
                "INSERT INTO subscriptions (destination_id, topic, source, kinds, include, "
                "exclude, min_amount, min_change, created_by, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "ON CONFLICT (destination_id, topic, source) DO UPDATE SET "
                "kinds = excluded.kinds, include = excluded.include, exclude = excluded.exclude, "
                "min_amount = excluded.min_amount, min_change = excluded.min_change, "
                "created_by = excluded.created_by RETURNING *",
                row["destination_id"],
                row["topic"],
                row["source"],
                row["kinds"],
                row["include"],
                row["exclude"],
                row["min_amount"],
                row["min_change"],
                row["created_by"],
                datetime.now(UTC),
            )
            await _bump_subscriptions(conn)
        return subscription_from_row(stored)

    async def remove_subscriptions(
        self, destination_id: str, *, topic: str | None = None, source: str | None = None
    ) -> int:
        sql, params = "DELETE FROM subscriptions WHERE destination_id = $1", [destination_id]
        if topic is not None:
            params.append(topic)
            sql += f" AND topic = ${len(params)}"
        if source is not None:
            params.append(source)
            sql += f" AND source = ${len(params)}"
        async with self._tx() as conn:
            removed = _count(await conn.execute(sql, *params))
            await _bump_subscriptions(conn)
        return removed

    async def list_subscriptions(self, destination_id: str | None = None) -> list[Subscription]:
        if destination_id is None:
            rows = await self._pool.fetch("SELECT * FROM subscriptions ORDER BY id")
        else:
            rows = await self._pool.fetch(
                "SELECT * FROM subscriptions WHERE destination_id = $1 ORDER BY id",
                destination_id,
            )
        return [subscription_from_row(r) for r in rows]

    async def subscriptions_version(self) -> int:
        value = await self._pool.fetchval(
            "SELECT value FROM meta WHERE key = 'subscriptions_version'"
        )
        return int(value or 0)

    # --- the outbox ------------------------------------------------------------------

    async def claim_deliveries(
        self, now: datetime, *, owner: str, lease_s: float, limit: int
    ) -> list[Delivery]:
        async with self._tx() as conn:
            destinations = [r[0] for r in await conn.fetch(_LOCK_FREE_DESTINATIONS, now, limit)]
            if not destinations:
                return []
            rows = await conn.fetch(
                _CLAIM_DELIVERIES, owner, _after(now, lease_s), destinations, now, limit
            )
        return [delivery_from_row(r, self.install_id) for r in rows]

    async def mark_sent(self, delivery_id: int, *, remote_id: str | None, now: datetime) -> None:
        await self._pool.execute(
            "UPDATE deliveries SET state = 'sent', sent_at = $2, remote_id = $3, "
            "lease_owner = NULL, lease_until = NULL, attempts = attempts + 1 WHERE id = $1",
            delivery_id,
            now,
            remote_id,
        )

    async def mark_retry(
        self, delivery_id: int, *, error: str, retry_at: datetime, count_attempt: bool
    ) -> None:
        async with self._tx() as conn:
            dest = await conn.fetchval(
                "UPDATE deliveries SET last_error = $2, attempts = attempts + $3, "
                "lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending' "
                "RETURNING destination_id",
                delivery_id,
                error,
                int(count_attempt),
            )
            if dest is None:
                dest = await conn.fetchval(
                    "SELECT destination_id FROM deliveries WHERE id = $1", delivery_id
                )
            await conn.execute(
                "UPDATE destinations SET blocked_until = GREATEST(blocked_until, $2) WHERE id = $1",
                dest,
                retry_at,
            )

    async def mark_dead(self, delivery_id: int, *, error: str, now: datetime) -> None:
        await self._pool.execute(
            "UPDATE deliveries SET state = 'dead', last_error = $2, attempts = attempts + 1, "
            "lease_owner = NULL, lease_until = NULL WHERE id = $1",
            delivery_id,
            error,
        )

    async def release_deliveries(self, delivery_ids: Collection[int]) -> None:
        ids = list(delivery_ids)
        if ids:
            await self._pool.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ANY($1::bigint[]) AND state = 'pending'",
                ids,
            )

    async def list_deliveries(
        self, *, state: DeliveryState | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        sql = "SELECT d.*, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id"
        params: list[Any] = []
        if state is not None:
            params.append(state.value)
            sql += " WHERE d.state = $1"
        params.append(limit)
        rows = await self._pool.fetch(sql + f" ORDER BY d.id DESC LIMIT ${len(params)}", *params)
        return [delivery_row_from_row(r, same) for r in rows]

    async def requeue_dead(self, delivery_ids: Collection[int] | None = None) -> int:
        sql = "UPDATE deliveries SET state = 'pending', attempts = 0 WHERE state = 'dead'"
        if delivery_ids is None:
            return _count(await self._pool.execute(sql))
        ids = list(delivery_ids)
        if not ids:
            return 0
        return _count(await self._pool.execute(sql + " AND id = ANY($1::bigint[])", ids))

    async def outbox_stats(self) -> OutboxStats:
        row = await self._pool.fetchrow(
            "SELECT (SELECT count(*) FROM deliveries WHERE state = 'pending') AS pending, "
            "(SELECT count(*) FROM deliveries WHERE state = 'dead') AS dead, "
            "(SELECT min(created_at) FROM deliveries WHERE state = 'pending') AS oldest, "
            "(SELECT count(*) FROM destinations WHERE parked_at IS NOT NULL) AS parked"
        )
        return OutboxStats(row["pending"], row["dead"], row["oldest"], row["parked"])

    # --- kv ----------------------------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> str | None:
        value = await self._pool.fetchval(
            "SELECT value FROM kv WHERE namespace = $1 AND key = $2", namespace, key
        )
        return None if value is None else str(value)

    async def kv_set(self, namespace: str, key: str, value: str) -> None:
        await self._pool.execute(
            "INSERT INTO kv (namespace, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            namespace,
            key,
            value,
        )

    # --- claims of workers that died ----------------------------------------------------

    async def lease_owners(self) -> set[str]:
        rows = await self._pool.fetch(
            "SELECT lease_owner FROM sources WHERE lease_owner IS NOT NULL UNION "
            "SELECT lease_owner FROM deliveries WHERE lease_owner IS NOT NULL "
            "AND state = 'pending' UNION SELECT owner FROM leaders"
        )
        return {str(r[0]) for r in rows}

    async def release_owner(self, owner: str) -> int:
        async with self._tx() as conn:
            a = await conn.execute(
                "UPDATE sources SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
                owner,
            )
            b = await conn.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner = $1 AND state = 'pending'",
                owner,
            )
            c = await conn.execute("DELETE FROM leaders WHERE owner = $1", owner)
        return _count(a) + _count(b) + _count(c)

    # --- leadership ----------------------------------------------------------------------

    async def try_lead(self, name: str, *, owner: str, lease_s: float, now: datetime) -> bool:
        """Lead while holding the advisory lock, or when the last leader's lease ran out.

        The row records whether its leader held the lock. Getting the lock while the
        row names another leader that held it means that leader's connection is gone
        (the server released the lock): take over without waiting for its lease.
        """
        locked = await self._hold_lock(name)
        async with self._tx() as conn:
            row = await conn.fetchrow(
                "SELECT owner, lease_until, locked FROM leaders WHERE name = $1 FOR UPDATE", name
            )
            mine = (
                row is None
                or row["owner"] == owner
                or row["lease_until"] < now
                or (locked and row["locked"])
            )
            if mine:
                await conn.execute(
                    "INSERT INTO leaders (name, owner, lease_until, locked) "
                    "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET "
                    "owner = excluded.owner, lease_until = excluded.lease_until, "
                    "locked = excluded.locked",
                    name,
                    owner,
                    _after(now, lease_s),
                    locked,
                )
        if not mine and locked:
            await self._drop_lock(name)  # a live leader without the lock takes it next
        return mine

    async def resign(self, name: str, *, owner: str) -> None:
        await self._pool.execute("DELETE FROM leaders WHERE name = $1 AND owner = $2", name, owner)
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


_SOURCE_SELECT = (
    "SELECT s.*, (SELECT count(*) FROM items i WHERE i.source_id = s.id) AS item_count "
    "FROM sources s"
)

# Destinations whose oldest pending delivery is free, oldest first, locked for this claim.
_LOCK_FREE_DESTINATIONS = (
    "SELECT t.id FROM destinations t CROSS JOIN LATERAL ("
    " SELECT d.id, d.lease_until FROM deliveries d"
    " WHERE d.destination_id = t.id AND d.state = 'pending' ORDER BY d.id LIMIT 1) h"
    " WHERE t.parked_at IS NULL AND (t.blocked_until IS NULL OR t.blocked_until <= $1)"
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
    " UPDATE deliveries SET lease_owner = $1, lease_until = $2"
    " WHERE id IN (SELECT id FROM picked) AND state = 'pending'"
    " AND (lease_until IS NULL OR lease_until < $4)"
    " RETURNING id, event_id, destination_id, attempts)"
    " SELECT c.id, c.attempts, e.payload, t.id AS dest_id, t.sink, t.target, t.options"
    " FROM claimed c JOIN events e ON e.id = c.event_id"
    " JOIN destinations t ON t.id = c.destination_id ORDER BY c.id"
)


async def _bump_subscriptions(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO meta (key, value) VALUES ('subscriptions_version', '1') "
        "ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text"
    )


async def _upsert_items(conn: asyncpg.Connection, commit: PollCommit) -> None:
    keys = list(commit.items)
    await conn.execute(
        "INSERT INTO items (source_id, key, fingerprint, snapshot, first_seen, last_changed) "
        "SELECT $1, u.key, u.fp, u.snap::json, $5, $5 "
        "FROM unnest($2::text[], $3::text[], $4::text[]) AS u(key, fp, snap) "
        "ON CONFLICT (source_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, "
        "snapshot = excluded.snapshot, last_changed = excluded.last_changed",
        commit.source_id,
        keys,
        [commit.items[k].fingerprint for k in keys],
        [dumps(dict(commit.items[k].snapshot)) for k in keys],
        commit.now,
    )


async def _next_ids(conn: asyncpg.Connection, table: str, n: int) -> list[int]:
    rows = await conn.fetch(
        f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, $1)",
        n,
    )
    return sorted(int(r[0]) for r in rows)


async def _insert_events(conn: asyncpg.Connection, commit: PollCommit) -> list[Event]:
    """Events and their deliveries, ids allocated up front so both keep event order."""
    if not commit.events:
        return []
    event_ids = await _next_ids(conn, "events", len(commit.events))
    stored = [r.event.with_id(i) for r, i in zip(commit.events, event_ids, strict=True)]
    await conn.execute(
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
    pairs = [
        (event_id, dest)
        for routed, event_id in zip(commit.events, event_ids, strict=True)
        for dest in dict.fromkeys(routed.destination_ids)
    ]
    if pairs:
        delivery_ids = await _next_ids(conn, "deliveries", len(pairs))
        await conn.execute(
            "INSERT INTO deliveries (id, event_id, destination_id, created_at) "
            "SELECT u.id, u.event_id, u.dest, $4 "
            "FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(id, event_id, dest)",
            delivery_ids,
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            commit.now,
        )
    return stored
