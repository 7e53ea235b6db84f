"""Copy a whole installation from one store to another (``alerts migrate-store``).

Everything that makes the service *remember* is copied with its ids: sources with
their detector state (leases cleared, so the new store can claim them at once),
items, events, destinations, subscriptions, deliveries (so idempotency keys, made
of ``meta.install_id`` and the delivery id, stay the same and a delivery sent just
before the move is recognised by the platform), the ``meta`` rows (install id,
subscriptions version) and the sinks' ``kv`` state. Leaders are not copied.

Rows travel in a neutral form — SQLite's: times as UNIX seconds, booleans as 0/1,
JSON as text — and each side converts. The target must be empty (freshly migrated);
it is written in one transaction, so a failed copy leaves it empty.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import aiosqlite

from alerts.errors import StoreError
from alerts.store import open_store
from alerts.store.sqlite import path_from_url

TABLES: tuple[str, ...] = (
    "meta",
    "destinations",
    "sources",
    "items",
    "events",
    "subscriptions",
    "deliveries",
    "kv",
)
CONTENT = ("destinations", "sources", "items", "events", "subscriptions", "deliveries", "kv")
TIMES = frozenset(
    {
        "next_due",
        "lease_until",
        "last_attempt_at",
        "last_success_at",
        "last_new_at",
        "first_seen",
        "last_changed",
        "created_at",
        "parked_at",
        "blocked_until",
        "sent_at",
    }
)
BOOLS = frozenset({"active", "baselined"})
CLEARED = {"sources": ("lease_owner", "lease_until"), "deliveries": ("lease_owner", "lease_until")}
Row = dict[str, Any]


class Side(Protocol):
    async def read(self, table: str) -> list[Row]: ...
    async def count(self, table: str) -> int: ...
    async def write(self, tables: Sequence[tuple[str, list[Row]]]) -> None: ...
    async def close(self) -> None: ...


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


async def copy_store(source_url: str, target_url: str) -> dict[str, int]:
    """Copy everything; returns rows copied per table."""
    if source_url == target_url:
        raise StoreError("migrate-store: --from and --to name the same store")
    source = await _side(source_url, must_exist=True)
    try:
        store = await open_store(target_url)  # creates and migrates the target
        await store.close()
        target = await _side(target_url)
    except BaseException:
        await source.close()
        raise
    try:
        for table in CONTENT:
            if await target.count(table):
                raise StoreError(
                    f"migrate-store: the target already holds {table}; it must be a new, "
                    "empty store (nothing copied)"
                )
        batches = []
        for table in TABLES:
            rows = await source.read(table)
            for column in CLEARED.get(table, ()):
                for row in rows:
                    row[column] = None
            batches.append((table, rows))
        await target.write(batches)
    finally:
        await source.close()
        await target.close()
    return {table: len(rows) for table, rows in batches}


async def _side(url: str, *, must_exist: bool = False) -> Side:
    if _is_postgres(url):
        return await PostgresSide.open(url)
    if url.startswith("sqlite:"):
        return await SqliteSide.open(url, must_exist=must_exist)
    raise StoreError(f"migrate-store: unsupported store URL scheme in {url.split(':', 1)[0]!r}")


class SqliteSide:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._db = conn

    @classmethod
    async def open(cls, url: str, *, must_exist: bool) -> SqliteSide:
        path = path_from_url(url)
        if must_exist and not await _exists(path):
            raise StoreError(f"migrate-store: no SQLite database at {path}")
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA busy_timeout=10000")
        return cls(conn)

    async def read(self, table: str) -> list[Row]:
        async with self._db.execute(f"SELECT * FROM {table}") as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def count(self, table: str) -> int:
        async with self._db.execute(f"SELECT COUNT(*) FROM {table}") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def write(self, tables: Sequence[tuple[str, list[Row]]]) -> None:
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            for table, rows in tables:
                if table == "meta":
                    await self._db.execute("DELETE FROM meta")
                if rows:
                    cols = list(rows[0])
                    await self._db.executemany(
                        f"INSERT INTO {table} ({', '.join(cols)}) "
                        f"VALUES ({', '.join('?' * len(cols))})",
                        [tuple(r[c] for c in cols) for r in rows],
                    )
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")

    async def close(self) -> None:
        await self._db.close()


async def _exists(path: str) -> bool:
    import asyncio

    return path == ":memory:" or await asyncio.to_thread(os.path.exists, path)


class PostgresSide:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, url: str) -> PostgresSide:
        import asyncpg

        from alerts.store.postgres import redact

        try:
            return cls(await asyncpg.connect(url))
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to {redact(url)}: {exc}") from exc

    async def read(self, table: str) -> list[Row]:
        cols = await self._columns(table)
        rows = await self._conn.fetch(f"SELECT {', '.join(cols)} FROM {table}")
        return [{c: _to_neutral(c, r[c]) for c in cols} for r in rows]

    async def count(self, table: str) -> int:
        return int(await self._conn.fetchval(f"SELECT count(*) FROM {table}"))

    async def _columns(self, table: str) -> list[str]:
        rows = await self._conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            table,
        )
        return [r[0] for r in rows]

    async def write(self, tables: Sequence[tuple[str, list[Row]]]) -> None:
        async with self._conn.transaction():
            for table, rows in tables:
                if table == "meta":
                    await self._conn.execute("DELETE FROM meta")
                if rows:
                    cols = list(rows[0])
                    await self._conn.copy_records_to_table(
                        table,
                        records=[tuple(_from_neutral(c, r[c]) for c in cols) for r in rows],
                        columns=cols,
                    )
            for table in ("events", "subscriptions", "deliveries"):
                await self._conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
                )

    async def close(self) -> None:
        await self._conn.close()


def _to_neutral(column: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool):
        return int(value)
    return value


def _from_neutral(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in TIMES:
        return datetime.fromtimestamp(float(value), UTC)
    if column in BOOLS:
        return bool(value)
    return value
