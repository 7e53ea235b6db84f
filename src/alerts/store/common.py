"""The store, written once: every method of ``alerts.contracts.Store`` over a
``Database`` handle, in SQL both backends run (see ``alerts.store.dialect``).

A backend subclass overrides only what really differs: how deliveries are claimed
(PostgreSQL locks destinations so that replicas keep per-destination order),
batched writes (PostgreSQL sends arrays with ``unnest``, SQLite runs
``executemany`` on its own thread), leadership (PostgreSQL adds an advisory lock)
and migration bookkeeping (locks, and SQLite's upgrade from ``PRAGMA user_version``).

Why ``commit_poll`` is safe: the source row is read — and, on PostgreSQL, locked —
and its lease owner checked before anything is written, all in the transaction
that writes detector state, items, events and deliveries. A lost lease raises
``LeaseLostError`` and the transaction is rolled back, so a poll is stored whole or
not at all. SQLite gets the same guarantee from its single writer
(``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from alerts.errors import LeaseLostError
from alerts.model import (
    Delivery,
    DeliveryState,
    Destination,
    Event,
    Subscription,
    View,
    utcnow,
)
from alerts.records import (
    AccountLease,
    DeliveryRow,
    DestinationRow,
    ItemState,
    NotModified,
    OutboxStats,
    PollCommit,
    Post,
    PostKind,
    SourceRow,
)
from alerts.store.chat_sources import ChatSourcesSql
from alerts.store.codec import (
    delivery_row_from_row,
    destination_from_row,
    dumps,
    hold_columns,
    loads,
    post_from_row,
    source_from_row,
    subscription_from_row,
    subscription_insert,
    subscription_row,
    template_column,
    view_columns,
)
from alerts.store.database import Database, Tx
from alerts.store.dialect import Dialect
from alerts.store.migrations import Migration, bundled, statements

SOURCE_SELECT = (
    "SELECT s.*, (SELECT count(*) FROM items i WHERE i.source_id = s.id) AS item_count "
    "FROM sources s"
)
FAIL_POLL = (
    "UPDATE sources SET failures = failures + 1, last_error = $2, last_attempt_at = $3, "
    "next_due = $4, lease_owner = NULL, lease_until = NULL WHERE id = $1"
)
SUCCEED_POLL = (
    "UPDATE sources SET etag = $2, last_modified = $3, cursor = COALESCE($4, cursor), "
    "detector = COALESCE($5, detector), baselined = $6, failures = 0, last_error = NULL, "
    "last_attempt_at = $7, last_success_at = $7, "
    "last_new_at = CASE WHEN $8 THEN $7 ELSE last_new_at END, "
    "next_due = $9, lease_owner = NULL, lease_until = NULL WHERE id = $1"
)
UPSERT_ITEM = (
    "INSERT INTO items (source_id, key, fingerprint, snapshot, first_seen, last_changed, "
    "digest) VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (source_id, key) DO UPDATE SET "
    "fingerprint = excluded.fingerprint, snapshot = excluded.snapshot, "
    "last_changed = excluded.last_changed, digest = excluded.digest"
)
SET_DIGEST = "UPDATE items SET digest = $3 WHERE source_id = $1 AND key = $2"
NOT_MODIFIED = (
    "UPDATE sources SET etag = $1, last_modified = $2, failures = 0, last_error = NULL, "
    "last_attempt_at = $3, last_success_at = $3, next_due = $4, lease_owner = NULL, "
    "lease_until = NULL WHERE id = $5 AND lease_owner = $6"
)
CLAIMED_DELIVERIES = (
    "SELECT d.id, d.attempts, d.tried_at, d.updates, d.merge_window_s, d.template, "
    "e.payload, t.id AS dest_id, t.sink, t.target, t.options "
    "FROM deliveries d JOIN events e ON e.id = d.event_id "
    "JOIN destinations t ON t.id = d.destination_id"
)
MARK_SENT = (
    "UPDATE deliveries SET state = 'sent', sent_at = $2, remote_id = $3, "
    "lease_owner = NULL, lease_until = NULL, attempts = attempts + 1 WHERE id = $1"
)
# A post is made once, by the delivery that first showed it: a retried write of the
# same delivery finds its row again. Every value is absolute, so writing twice is once.
INSERT_POST = (
    "INSERT INTO posts (destination_id, kind, source_id, item_key, delivery_id, detected_at, "
    "remote_id, room, target, state, edits, edited_at, closed, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) "
    "ON CONFLICT (delivery_id) DO UPDATE SET remote_id = excluded.remote_id, "
    "room = excluded.room, target = excluded.target, state = excluded.state, "
    "edits = excluded.edits, edited_at = excluded.edited_at, closed = excluded.closed "
    "RETURNING id"
)
UPDATE_POST = (
    "UPDATE posts SET remote_id = $2, room = $3, target = $4, state = $5, edits = $6, "
    "edited_at = $7, closed = $8 WHERE id = $1 RETURNING id"
)
BUMP_SUBSCRIPTIONS = (
    "INSERT INTO meta (key, value) VALUES ('subscriptions_version', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS bigint) + 1 AS text)"
)


def _post_key(post: Post, d: Dialect) -> tuple[Any, ...]:
    """Columns destination_id, kind, source_id, item_key, delivery_id, detected_at."""
    return (
        post.destination_id,
        post.kind.value,
        post.source_id,
        post.item_key,
        post.delivery_id,
        d.time(post.detected_at),
    )


class SqlStore(ChatSourcesSql, ABC):
    """``Store`` on any ``Database``; see the module docstring."""

    def __init__(self, db: Database, install_id: str) -> None:
        self._db = db
        self._d = db.dialect
        self.install_id = install_id

    async def close(self) -> None:
        await self._db.close()

    # --- schema ----------------------------------------------------------------------

    @classmethod
    async def migrate(cls, db: Database) -> str:
        """Apply, in one transaction, every bundled migration the database lacks;
        returns the database's install id (made on first use)."""

        async def body(tx: Tx) -> str:
            await cls._lock_schema(tx)
            done = set(await cls._applied(tx))
            for migration in bundled(db.dialect.name):
                if migration.version not in done:
                    for statement in statements(migration.sql):
                        await tx.execute(statement)
                    await cls._record(tx, migration)
            await tx.execute(
                "INSERT INTO meta (key, value) VALUES ('install_id', $1) ON CONFLICT DO NOTHING",
                secrets.token_hex(4),
            )
            return str(await tx.fetchval("SELECT value FROM meta WHERE key = 'install_id'"))

        return await db.transaction(body)

    @classmethod
    async def applied(cls, db: Database) -> tuple[int, ...]:
        """Migration versions the database records, without changing it."""
        return await db.transaction(cls._applied)

    async def schema_version(self) -> int:
        return max(await self.applied(self._db), default=0)

    @staticmethod
    @abstractmethod
    async def _lock_schema(tx: Tx) -> None:
        """Keep other processes from migrating at the same time."""

    @staticmethod
    @abstractmethod
    async def _applied(tx: Tx) -> tuple[int, ...]: ...

    @staticmethod
    @abstractmethod
    async def _record(tx: Tx, migration: Migration) -> None: ...

    # --- sources ---------------------------------------------------------------------

    async def sync_sources(self, due: Mapping[str, datetime]) -> None:
        d = self._d
        rows = [(sid, d.time(when)) for sid, when in due.items()]

        async def body(tx: Tx) -> None:
            await tx.execute(
                f"UPDATE sources SET active = false WHERE active AND NOT ({d.member('id', 1, 'text')})",
                d.array(due),
            )
            await tx.executemany(
                "INSERT INTO sources (id, next_due, active) VALUES ($1, $2, true) "
                "ON CONFLICT (id) DO UPDATE SET active = true WHERE NOT sources.active",
                rows,
            )

        await self._db.transaction(body)

    async def claim_due_sources(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        only: Collection[str] | None = None,
    ) -> list[SourceRow]:
        d = self._d
        due = "next_due <= $3 AND (lease_until IS NULL OR lease_until < $3)"
        args: list[Any] = [owner, d.time(now + timedelta(seconds=lease_s)), d.time(now), limit]
        if only is None:  # "= true": SQLite range-scans its (active, next_due) index
            where = f"active = true AND {due}"
        elif not only:
            return []
        else:  # plain "active": SQLite looks the few ids up by primary key instead
            where = f"{d.member('id', 5, 'text')} AND active AND {due}"
            args.append(d.array(only))
        rows = await self._db.execute_returning(
            "UPDATE sources SET lease_owner = $1, lease_until = $2 WHERE id IN (SELECT id "
            f"FROM sources WHERE {where} ORDER BY next_due LIMIT $4{d.skip_locked}) "
            "RETURNING *, 0 AS item_count",
            *args,
        )
        return sorted((source_from_row(r, d) for r in rows), key=lambda r: r.next_due)

    async def claim_source(
        self, source_id: str, now: datetime, *, owner: str, lease_s: float
    ) -> SourceRow | None:
        d = self._d

        async def body(tx: Tx) -> Any:
            await tx.execute(
                "INSERT INTO sources (id, next_due, active) VALUES ($1, $2, false) "
                "ON CONFLICT (id) DO NOTHING",
                source_id,
                d.time(now),
            )
            return await tx.fetchrow(
                "UPDATE sources SET lease_owner = $2, lease_until = $3 WHERE id = $1 "
                "AND (lease_until IS NULL OR lease_until < $4) RETURNING *, 0 AS item_count",
                source_id,
                owner,
                d.time(now + timedelta(seconds=lease_s)),
                d.time(now),
            )

        row = await self._db.transaction(body)
        return None if row is None else source_from_row(row, d)

    async def release_source(self, source_id: str, *, owner: str) -> None:
        await self._db.execute(
            "UPDATE sources SET lease_owner = NULL, lease_until = NULL "
            "WHERE id = $1 AND lease_owner = $2",
            source_id,
            owner,
        )

    async def get_source(self, source_id: str) -> SourceRow | None:
        row = await self._db.fetchrow(SOURCE_SELECT + " WHERE s.id = $1", source_id)
        return None if row is None else source_from_row(row, self._d)

    async def list_sources(self) -> list[SourceRow]:
        rows = await self._db.fetch(SOURCE_SELECT + " WHERE s.active ORDER BY s.id")
        return [source_from_row(r, self._d) for r in rows]

    async def set_next_due(self, source_id: str, next_due: datetime) -> None:
        await self._db.execute(
            "UPDATE sources SET next_due = $2 WHERE id = $1", source_id, self._d.time(next_due)
        )

    async def load_items(
        self, source_id: str, keys: Collection[str] | None = None
    ) -> dict[str, ItemState]:
        sql = "SELECT key, fingerprint, snapshot, digest FROM items WHERE source_id = $1"
        if keys is None:
            rows = await self._db.fetch(sql, source_id)
        else:
            member = self._d.member("key", 2, "text")
            rows = await self._db.fetch(f"{sql} AND {member}", source_id, self._d.array(keys))
        return {
            r["key"]: ItemState(r["fingerprint"], loads(r["snapshot"]), r["digest"]) for r in rows
        }

    async def load_digests(self, source_id: str, keys: Collection[str]) -> dict[str, str | None]:
        member = self._d.member("key", 2, "text")
        rows = await self._db.fetch(
            f"SELECT key, digest FROM items WHERE source_id = $1 AND {member}",
            source_id,
            self._d.array(keys),
        )
        return {r[0]: r[1] for r in rows}

    async def commit_poll(self, commit: PollCommit, *, owner: str) -> list[Event]:
        return await self._db.transaction(lambda tx: self._commit_poll(tx, commit, owner))

    async def _commit_poll(self, tx: Tx, commit: PollCommit, owner: str) -> list[Event]:
        d, now = self._d, self._d.time(commit.now)
        holder = await tx.fetchval(
            f"SELECT lease_owner FROM sources WHERE id = $1{d.lock_rows}", commit.source_id
        )
        if holder != owner:
            raise LeaseLostError(f"source {commit.source_id!r} is no longer leased by {owner}")
        if commit.error is not None:
            await tx.execute(
                FAIL_POLL, commit.source_id, commit.error, now, d.time(commit.next_due)
            )
            return await self._insert_events(tx, commit) if commit.events else []
        await tx.execute(
            SUCCEED_POLL,
            commit.source_id,
            commit.validators.etag,
            commit.validators.last_modified,
            None if commit.cursor is None else dumps(dict(commit.cursor)),
            None if commit.detector is None else dumps(dict(commit.detector)),
            commit.baselined,
            now,
            commit.saw_new,
            d.time(commit.next_due),
        )
        if commit.items:
            await self._upsert_items(tx, commit)
        if commit.digests:
            await tx.executemany(
                SET_DIGEST, [(commit.source_id, k, v) for k, v in commit.digests.items()]
            )
        return await self._insert_events(tx, commit) if commit.events else []

    async def _upsert_items(self, tx: Tx, commit: PollCommit) -> None:
        now = self._d.time(commit.now)
        await tx.executemany(
            UPSERT_ITEM,
            [
                (
                    commit.source_id,
                    key,
                    state.fingerprint,
                    dumps(dict(state.snapshot)),
                    now,
                    state.digest,
                )
                for key, state in commit.items.items()
            ],
        )

    async def _insert_events(self, tx: Tx, commit: PollCommit) -> list[Event]:
        """Events in order, each followed by its deliveries (ids keep event order)."""
        now = self._d.time(commit.now)
        stored: list[Event] = []
        for routed in commit.events:
            event = routed.event
            event_id = await tx.fetchval(
                "INSERT INTO events (source_id, kind, key, payload, created_at) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                event.source_id,
                event.kind.value,
                event.key,
                dumps(event.to_json()),
                now,
            )
            stored.append(event.with_id(int(event_id)))
            await tx.executemany(
                "INSERT INTO deliveries (event_id, destination_id, created_at, updates, "
                "merge_window_s, state, hold_until, digest_key, template) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                [
                    (
                        event_id,
                        dest,
                        now,
                        *view_columns(routed.views.get(dest, View())),
                        *hold_columns(routed.holds.get(dest), self._d),
                        template_column(routed.views.get(dest, View())),
                    )
                    for dest in dict.fromkeys(routed.destination_ids)
                ],
            )
        return stored

    @abstractmethod
    async def commit_not_modified(self, polls: Sequence[NotModified]) -> int:
        """``NOT_MODIFIED`` for every poll in one transaction; the count recorded."""

    # --- destinations and subscriptions ---------------------------------------------

    async def upsert_destination(self, destination: Destination) -> None:
        await self._db.execute(
            "INSERT INTO destinations (id, sink, target, options) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (id) DO UPDATE SET sink = excluded.sink, target = excluded.target, "
            "options = excluded.options",
            destination.id,
            destination.sink,
            destination.target,
            dumps(dict(destination.options)),
        )

    async def get_destination(self, destination_id: str) -> DestinationRow | None:
        row = await self._db.fetchrow("SELECT * FROM destinations WHERE id = $1", destination_id)
        return None if row is None else destination_from_row(row, self._d)

    async def list_destinations(self) -> list[DestinationRow]:
        rows = await self._db.fetch("SELECT * FROM destinations ORDER BY id")
        return [destination_from_row(r, self._d) for r in rows]

    async def park_destination(self, destination_id: str, *, reason: str, now: datetime) -> None:
        await self._db.execute(
            "UPDATE destinations SET parked_reason = $2, parked_at = $3 WHERE id = $1",
            destination_id,
            reason,
            self._d.time(now),
        )

    async def unpark_destination(self, destination_id: str) -> bool:
        changed = await self._db.execute(
            "UPDATE destinations SET parked_reason = NULL, parked_at = NULL, "
            "blocked_until = NULL WHERE id = $1 AND parked_at IS NOT NULL",
            destination_id,
        )
        return changed > 0

    async def remove_destination(self, destination_id: str, *, reason: str) -> int:
        async def body(tx: Tx) -> int:
            removed = await tx.execute(
                "DELETE FROM subscriptions WHERE destination_id = $1", destination_id
            )
            await tx.execute(
                "UPDATE deliveries SET state = 'dead', last_error = $2, lease_owner = NULL, "
                "lease_until = NULL WHERE destination_id = $1 AND state IN ('pending', 'held')",
                destination_id,
                reason,
            )
            await tx.execute(BUMP_SUBSCRIPTIONS)
            return removed

        return await self._db.transaction(body)

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        args = (*subscription_row(subscription), self._d.time(utcnow()))

        async def body(tx: Tx) -> Any:
            stored = await tx.fetchrow(
                subscription_insert(
                    "ON CONFLICT (destination_id, topic, source) DO UPDATE SET "
                    "kinds = excluded.kinds, include = excluded.include, exclude = excluded.exclude, "
                    "min_amount = excluded.min_amount, min_change = excluded.min_change, "
                    "created_by = excluded.created_by, updates = excluded.updates, "
                    "schedule = excluded.schedule, template = excluded.template, "
                    "notify_failures = excluded.notify_failures RETURNING *"
                ),
                *args,
            )
            await tx.execute(BUMP_SUBSCRIPTIONS)
            return stored

        return subscription_from_row(await self._db.transaction(body))

    async def remove_subscriptions(
        self, destination_id: str, *, topic: str | None = None, source: str | None = None
    ) -> int:
        sql, args = "DELETE FROM subscriptions WHERE destination_id = $1", [destination_id]
        for column, value in (("topic", topic), ("source", source)):
            if value is not None:
                args.append(value)
                sql += f" AND {column} = ${len(args)}"

        async def body(tx: Tx) -> int:
            removed = await tx.execute(sql, *args)
            await tx.execute(BUMP_SUBSCRIPTIONS)
            return removed

        return await self._db.transaction(body)

    async def list_subscriptions(self, destination_id: str | None = None) -> list[Subscription]:
        if destination_id is None:
            rows = await self._db.fetch("SELECT * FROM subscriptions ORDER BY id")
        else:
            rows = await self._db.fetch(
                "SELECT * FROM subscriptions WHERE destination_id = $1 ORDER BY id",
                destination_id,
            )
        return [subscription_from_row(r) for r in rows]

    async def subscriptions_version(self) -> int:
        value = await self._db.fetchval(
            "SELECT value FROM meta WHERE key = 'subscriptions_version'"
        )
        return int(value or 0)

    # --- the outbox ------------------------------------------------------------------

    @abstractmethod
    async def claim_deliveries(
        self,
        now: datetime,
        *,
        owner: str,
        lease_s: float,
        limit: int,
        sinks: Collection[str] | None = None,
    ) -> list[Delivery]: ...

    async def mark_sent(self, delivery_id: int, *, remote_id: str | None, now: datetime) -> None:
        await self._db.execute(MARK_SENT, delivery_id, self._d.time(now), remote_id)

    async def release_held(
        self,
        now: datetime,
        *,
        digest: Callable[[str, Sequence[tuple[Event, str]]], Event],
        limit: int = 1000,
    ) -> list[int]:
        """Each room's held deliveries whose time has come become one digest delivery
        (see ``alerts.digest``): the digest event, its pending delivery and the held
        rows marked ``digested`` are written in one transaction per room. Held rows
        another replica is digesting are skipped (PostgreSQL) or already gone."""
        d, at = self._d, self._d.time(now)
        lock = " FOR UPDATE OF d SKIP LOCKED" if d.skip_locked else ""
        rows = await self._db.fetch(
            "SELECT DISTINCT destination_id FROM deliveries "
            "WHERE state = 'held' AND hold_until <= $1",
            at,
        )

        async def one(tx: Tx, *, destination_id: str) -> int | None:
            held = await tx.fetch(
                "SELECT d.id, d.digest_key, e.payload FROM deliveries d "
                "JOIN events e ON e.id = d.event_id WHERE d.destination_id = $1 "
                f"AND d.state = 'held' AND d.hold_until <= $2 ORDER BY d.id LIMIT $3{lock}",
                destination_id,
                at,
                limit,
            )
            if not held:
                return None
            event = digest(
                destination_id,
                [(Event.from_json(loads(r["payload"])), r["digest_key"] or "") for r in held],
            )
            event_id = await tx.fetchval(
                "INSERT INTO events (source_id, kind, key, payload, created_at) "
                "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                event.source_id,
                event.kind.value,
                event.key,
                dumps(event.to_json()),
                at,
            )
            delivery_id = int(
                await tx.fetchval(
                    "INSERT INTO deliveries (event_id, destination_id, created_at) "
                    "VALUES ($1, $2, $3) RETURNING id",
                    event_id,
                    destination_id,
                    at,
                )
            )
            await tx.execute(
                "UPDATE deliveries SET state = 'digested', digest_id = $1, sent_at = $2 "
                f"WHERE {d.member('id', 3, 'bigint')} AND state = 'held'",
                delivery_id,
                at,
                d.array([r["id"] for r in held]),
            )
            return delivery_id

        made = []
        for row in rows:
            made_id = await self._db.transaction(partial(one, destination_id=row[0]))
            if made_id is not None:
                made.append(made_id)
        return made

    # --- messages kept alive in rooms (alerts.edits) ----------------------------------

    async def find_post(self, destination_id: str, source_id: str, item_key: str) -> Post | None:
        row = await self._db.fetchrow(
            "SELECT p.* FROM post_items i JOIN posts p ON p.id = i.post_id "
            "WHERE i.destination_id = $1 AND i.source_id = $2 AND i.item_key = $3",
            destination_id,
            source_id,
            item_key,
        )
        return None if row is None else post_from_row(row, self._d)

    async def live_counter(self, destination_id: str, source_id: str) -> Post | None:
        row = await self._db.fetchrow(
            "SELECT * FROM posts WHERE destination_id = $1 AND source_id = $2 AND kind = $3 "
            "AND closed = false ORDER BY id DESC LIMIT 1",
            destination_id,
            source_id,
            PostKind.COUNTER.value,
        )
        return None if row is None else post_from_row(row, self._d)

    async def recent_posts(
        self, destination_id: str, *, since: datetime, limit: int = 500
    ) -> list[Post]:
        rows = await self._db.fetch(
            "SELECT * FROM posts WHERE destination_id = $1 AND detected_at >= $2 AND kind = $3 "
            "ORDER BY detected_at DESC, id DESC LIMIT $4",
            destination_id,
            self._d.time(since),
            PostKind.ITEM.value,
            limit,
        )
        return [post_from_row(r, self._d) for r in rows]

    async def record_post(
        self,
        delivery_id: int,
        post: Post,
        *,
        now: datetime,
        items: Collection[tuple[str, str]] = (),
        close_counter: bool = False,
    ) -> int:
        d = self._d

        async def body(tx: Tx) -> int:
            await tx.execute(MARK_SENT, delivery_id, d.time(now), post.remote_id)
            if close_counter:
                await tx.execute(
                    "UPDATE posts SET closed = true WHERE destination_id = $1 "
                    "AND source_id = $2 AND kind = $3 AND closed = false",
                    post.destination_id,
                    post.source_id,
                    PostKind.COUNTER.value,
                )
            shown = (
                post.remote_id,
                post.room,
                post.target,
                dumps(dict(post.state)),
                post.edits,
                d.time(post.edited_at),
                post.closed,
            )
            if post.id is None:
                post_id = await tx.fetchval(INSERT_POST, *_post_key(post, d), *shown, d.time(now))
            else:
                post_id = await tx.fetchval(UPDATE_POST, post.id, *shown)
            await tx.executemany(
                "INSERT INTO post_items (destination_id, source_id, item_key, post_id) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT (destination_id, source_id, item_key) "
                "DO UPDATE SET post_id = excluded.post_id",
                [(post.destination_id, source, key, post_id) for source, key in items],
            )
            return int(post_id)

        return await self._db.transaction(body)

    async def mark_retry(
        self, delivery_id: int, *, error: str, retry_at: datetime, count_attempt: bool
    ) -> None:
        until = self._d.time(retry_at)

        async def body(tx: Tx) -> None:
            await tx.execute(
                "UPDATE deliveries SET last_error = $2, attempts = attempts + $3, "
                "lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending'",
                delivery_id,
                error,
                int(count_attempt),
            )
            await tx.execute(
                "UPDATE destinations SET blocked_until = CASE WHEN blocked_until IS NULL "
                "OR blocked_until < $2 THEN $2 ELSE blocked_until END "
                "WHERE id = (SELECT destination_id FROM deliveries WHERE id = $1)",
                delivery_id,
                until,
            )

        await self._db.transaction(body)

    async def mark_dead(self, delivery_id: int, *, error: str, now: datetime) -> None:
        await self._db.execute(
            "UPDATE deliveries SET state = 'dead', last_error = $2, attempts = attempts + 1, "
            "lease_owner = NULL, lease_until = NULL WHERE id = $1",
            delivery_id,
            error,
        )

    async def release_deliveries(self, delivery_ids: Collection[int]) -> None:
        if delivery_ids:
            await self._db.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                f"WHERE {self._d.member('id', 1, 'bigint')} AND state = 'pending'",
                self._d.array(delivery_ids),
            )

    async def list_deliveries(
        self, *, state: DeliveryState | None = None, limit: int = 100
    ) -> list[DeliveryRow]:
        sql = "SELECT d.*, e.payload FROM deliveries d JOIN events e ON e.id = d.event_id"
        args: list[Any] = []
        if state is not None:
            args.append(state.value)
            sql += " WHERE d.state = $1"
        args.append(limit)
        rows = await self._db.fetch(f"{sql} ORDER BY d.id DESC LIMIT ${len(args)}", *args)
        return [delivery_row_from_row(r, self._d) for r in rows]

    async def requeue_dead(self, delivery_ids: Collection[int] | None = None) -> int:
        sql = "UPDATE deliveries SET state = 'pending', attempts = 0 WHERE state = 'dead'"
        if delivery_ids is None:
            return await self._db.execute(sql)
        if not delivery_ids:
            return 0
        member = self._d.member("id", 1, "bigint")
        return await self._db.execute(f"{sql} AND {member}", self._d.array(delivery_ids))

    async def outbox_stats(self) -> OutboxStats:
        row = await self._db.fetchrow(
            "SELECT (SELECT count(*) FROM deliveries WHERE state = 'pending') AS pending, "
            "(SELECT count(*) FROM deliveries WHERE state = 'dead') AS dead, "
            "(SELECT min(created_at) FROM deliveries WHERE state = 'pending') AS oldest, "
            "(SELECT count(*) FROM destinations WHERE parked_at IS NOT NULL) AS parked, "
            "(SELECT count(*) FROM deliveries WHERE state = 'held') AS held"
        )
        assert row is not None
        oldest = self._d.when(row["oldest"])
        return OutboxStats(row["pending"], row["dead"], oldest, row["parked"], row["held"])

    # --- kv --------------------------------------------------------------------------

    async def kv_get(self, namespace: str, key: str) -> str | None:
        value = await self._db.fetchval(
            "SELECT value FROM kv WHERE namespace = $1 AND key = $2", namespace, key
        )
        return None if value is None else str(value)

    async def kv_set(self, namespace: str, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO kv (namespace, key, value) VALUES ($1, $2, $3) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
            namespace,
            key,
            value,
        )

    # --- claims of workers that died ---------------------------------------------------

    async def lease_owners(self) -> set[str]:
        rows = await self._db.fetch(
            "SELECT lease_owner FROM sources WHERE lease_owner IS NOT NULL UNION "
            "SELECT lease_owner FROM deliveries WHERE lease_owner IS NOT NULL "
            "AND state = 'pending' UNION SELECT owner FROM leaders UNION "
            "SELECT owner FROM accounts WHERE owner IS NOT NULL"
        )
        return {str(r[0]) for r in rows}

    async def release_owner(self, owner: str) -> int:
        async def body(tx: Tx) -> int:
            sources = await tx.execute(
                "UPDATE sources SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
                owner,
            )
            deliveries = await tx.execute(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL "
                "WHERE lease_owner = $1 AND state = 'pending'",
                owner,
            )
            leaders = await tx.execute("DELETE FROM leaders WHERE owner = $1", owner)
            accounts = await tx.execute(
                "UPDATE accounts SET owner = NULL, lease_until = NULL WHERE owner = $1", owner
            )
            return sources + deliveries + leaders + accounts

        return await self._db.transaction(body)

    # --- leadership --------------------------------------------------------------------

    async def try_lead(self, name: str, *, owner: str, lease_s: float, now: datetime) -> bool:
        """Lead while the lease row names us, or once the last leader's lease ran out."""
        d = self._d
        rows = await self._db.execute_returning(
            "INSERT INTO leaders (name, owner, lease_until) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
            "lease_until = excluded.lease_until "
            "WHERE leaders.owner = excluded.owner OR leaders.lease_until < $4 RETURNING owner",
            name,
            owner,
            d.time(now + timedelta(seconds=lease_s)),
            d.time(now),
        )
        return bool(rows)

    async def resign(self, name: str, *, owner: str) -> None:
        await self._db.execute("DELETE FROM leaders WHERE name = $1 AND owner = $2", name, owner)

    # --- chat accounts: one owner at a time, and the session it hands over -------------

    async def try_account(
        self, name: str, *, owner: str, lease_s: float, now: datetime
    ) -> AccountLease | None:
        """Hold (or renew) the lease of account ``name``: its row as now held, or None
        while another owner's lease runs."""
        d = self._d
        rows = await self._db.execute_returning(
            "INSERT INTO accounts (name, owner, lease_until) VALUES ($1, $2, $3) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
            "lease_until = excluded.lease_until WHERE accounts.owner = excluded.owner "
            "OR accounts.owner IS NULL OR accounts.lease_until < $4 "
            "RETURNING name, owner, lease_until, device_id, keys",
            name,
            owner,
            d.time(now + timedelta(seconds=lease_s)),
            d.time(now),
        )
        if not rows:
            return None
        row = rows[0]
        until = d.when(row["lease_until"])
        assert until is not None
        return AccountLease(row["name"], row["owner"], until, row["device_id"], row["keys"])

    async def release_account(self, name: str, *, owner: str) -> None:
        await self._db.execute(
            "UPDATE accounts SET owner = NULL, lease_until = NULL WHERE name = $1 AND owner = $2",
            name,
            owner,
        )

    async def save_account(
        self,
        name: str,
        *,
        owner: str,
        now: datetime,
        device_id: str | None = None,
        keys: str | None = None,
    ) -> bool:
        """Store what the next owner needs (only while ``owner`` holds the lease)."""
        changed = await self._db.execute(
            "UPDATE accounts SET device_id = COALESCE($3, device_id), "
            "keys = COALESCE($4, keys), "
            "keys_saved_at = CASE WHEN $4 IS NULL THEN keys_saved_at ELSE $5 END "
            "WHERE name = $1 AND owner = $2 AND lease_until >= $5",
            name,
            owner,
            device_id,
            keys,
            self._d.time(now),
        )
        return changed > 0
