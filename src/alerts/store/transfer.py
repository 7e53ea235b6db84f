"""Copy a whole installation from one store to another (``alerts migrate-store``).

Everything that makes the service *remember* is copied with its ids: sources with
their detector state (leases cleared, so the new store can claim them at once),
items, events, destinations, subscriptions, deliveries (so idempotency keys, made
of ``meta.install_id`` and the delivery id, stay the same and a delivery sent just
before the move is recognised by the platform), the messages kept alive in rooms
(``posts``, ``post_items``: edits go on after the move), the ``meta`` rows (install id,
subscriptions version) and the sinks' ``kv`` state. Leaders are not copied.

Rows are read as their backend stores them and converted for the target's column
types by the target's dialect (``Dialect.adapt``: UNIX seconds and ``timestamptz``,
0/1 and ``boolean``), so a column added by a later migration is copied with no change
here. The target must be empty (freshly migrated); it is written in one
transaction, so a failed copy leaves it empty.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from alerts.errors import StoreError
from alerts.store import open_store
from alerts.store.database import Database, Tx

TABLES: tuple[str, ...] = (
    "meta",
    "destinations",
    "sources",
    "items",
    "events",
    "subscriptions",
    "chat_sources",
    "deliveries",
    "posts",
    "post_items",
    "kv",
)
CONTENT = tuple(table for table in TABLES if table != "meta")  # must be empty in the target
IDENTITIES = ("events", "subscriptions", "deliveries", "posts")
CLEARED = {"sources": ("lease_owner", "lease_until"), "deliveries": ("lease_owner", "lease_until")}
Row = dict[str, Any]


async def copy_store(source_url: str, target_url: str) -> dict[str, int]:
    """Copy everything; returns rows copied per table."""
    if source_url == target_url:
        raise StoreError("migrate-store: --from and --to name the same store")
    source = await _open(source_url, must_exist=True)
    try:
        store = await open_store(target_url)  # creates and migrates the target
        await store.close()
        target = await _open(target_url)
    except BaseException:
        await source.close()
        raise
    try:
        for table in CONTENT:
            if await target.fetchval(f"SELECT count(*) FROM {table}"):
                raise StoreError(
                    f"migrate-store: the target already holds {table}; it must be a new, "
                    "empty store (nothing copied)"
                )
        batches = [(table, await _read(source, table)) for table in TABLES]
        await _write(target, batches)
    finally:
        await source.close()
        await target.close()
    return {table: len(rows) for table, rows in batches}


async def _open(url: str, *, must_exist: bool = False) -> Database:
    if url.startswith(("postgres://", "postgresql://")):
        from alerts.store.postgres import PostgresDatabase

        return await PostgresDatabase.open(url, max_connections=2)
    if url.startswith("sqlite:"):
        from alerts.store.sqlite import PLAIN_PRAGMAS, SqliteDatabase, path_from_url

        path = path_from_url(url)
        if must_exist and not await _exists(path):
            raise StoreError(f"migrate-store: no SQLite database at {path}")
        return await SqliteDatabase.open(path, pragmas=PLAIN_PRAGMAS)
    raise StoreError(f"migrate-store: unsupported store URL scheme in {url.split(':', 1)[0]!r}")


async def _exists(path: str) -> bool:
    return path == ":memory:" or await asyncio.to_thread(os.path.exists, path)


async def _read(db: Database, table: str) -> list[Row]:
    rows = [dict(zip(r.keys(), r, strict=True)) for r in await db.fetch(f"SELECT * FROM {table}")]
    for column in CLEARED.get(table, ()):
        for row in rows:
            row[column] = None
    return rows


async def _write(db: Database, batches: Sequence[tuple[str, list[Row]]]) -> None:
    d = db.dialect
    types = {
        table: {str(r[0]): str(r[1]) for r in await db.fetch(d.columns_sql, table)}
        for table, _ in batches
    }

    async def body(tx: Tx) -> None:
        for table, rows in batches:
            if table == "meta":
                await tx.execute("DELETE FROM meta")
            if rows:
                cols = list(rows[0])
                marks = ", ".join(f"${n}" for n in range(1, len(cols) + 1))
                await tx.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})",
                    [tuple(d.adapt(r[c], types[table][c]) for c in cols) for r in rows],
                )
        if d.restart_identity:
            for table in IDENTITIES:
                await tx.execute(d.restart_identity.format(table=table))

    await db.transaction(body)
