"""Sources added from chat (``add-feed``), written once for both backends.

A chat source belongs to one room. Adding it writes, in one transaction, the room
(destination), the source row, and the room's subscription to it — or nothing, when
the room already holds its quota of chat sources. Removing it deletes the row and
the room's subscription to it and parks the room's pending deliveries of that
source as dead (``alerts deliveries`` shows them; ``--requeue-dead`` sends them).
The source's items and events stay: a feed added again is not alerted on anew.
"""

from __future__ import annotations

from alerts.model import Destination, Subscription, utcnow
from alerts.records import ChatSource
from alerts.store.codec import (
    chat_source_from_row,
    dumps,
    subscription_insert,
    subscription_row,
)
from alerts.store.database import Database, Tx
from alerts.store.dialect import Dialect

ADD_CHAT_SOURCE = (
    "INSERT INTO chat_sources (id, destination_id, url, kind, topic, added_by, added_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
)
SUBSCRIBE = subscription_insert(
    "ON CONFLICT (destination_id, topic, source) DO UPDATE SET updates = excluded.updates"
)
BUMP = (
    "INSERT INTO meta (key, value) VALUES ('subscriptions_version', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS bigint) + 1 AS text)"
)


class ChatSourcesSql:
    """The chat-source part of ``alerts.store.common.SqlStore``."""

    _db: Database
    _d: Dialect

    async def add_chat_source(
        self,
        source: ChatSource,
        *,
        destination: Destination,
        subscription: Subscription,
        quota: int,
    ) -> bool:
        """Store ``source`` with the room and its subscription; False (nothing
        written) when the room already has ``quota`` chat sources or this URL."""
        d = self._d

        async def body(tx: Tx) -> bool:
            await tx.execute(
                "INSERT INTO destinations (id, sink, target, options) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (id) DO UPDATE SET options = excluded.options",
                destination.id,
                destination.sink,
                destination.target,
                dumps(dict(destination.options)),
            )
            held = await tx.fetchval(
                "SELECT count(*) FROM chat_sources WHERE destination_id = $1",
                source.destination_id,
            )
            if int(held or 0) >= quota:
                return False
            added = await tx.execute(
                ADD_CHAT_SOURCE,
                source.id,
                source.destination_id,
                source.url,
                source.kind,
                source.topic,
                source.added_by,
                d.time(source.added_at),
            )
            if not added:
                return False
            await tx.execute(SUBSCRIBE, *subscription_row(subscription), d.time(utcnow()))
            await tx.execute(BUMP)
            return True

        return await self._db.transaction(body)

    async def remove_chat_source(self, source_id: str, *, reason: str) -> ChatSource | None:
        """Delete the chat source, its room's subscription to it, and park the room's
        pending deliveries of it as dead with ``reason``; the removed row, or None."""

        async def body(tx: Tx) -> ChatSource | None:
            row = await tx.fetchrow("SELECT * FROM chat_sources WHERE id = $1", source_id)
            if row is None:
                return None
            found = chat_source_from_row(row, self._d)
            await tx.execute("DELETE FROM chat_sources WHERE id = $1", source_id)
            await tx.execute(
                "DELETE FROM subscriptions WHERE destination_id = $1 AND source = $2",
                found.destination_id,
                source_id,
            )
            await tx.execute(
                "UPDATE deliveries SET state = 'dead', last_error = $3, lease_owner = NULL, "
                "lease_until = NULL WHERE destination_id = $1 AND state = 'pending' "
                "AND event_id IN (SELECT id FROM events WHERE source_id = $2)",
                found.destination_id,
                source_id,
                reason,
            )
            await tx.execute(BUMP)
            return found

        return await self._db.transaction(body)

    async def list_chat_sources(self, destination_id: str | None = None) -> list[ChatSource]:
        """Every chat source (or one room's), oldest first."""
        sql = "SELECT * FROM chat_sources"
        args: list[str] = []
        if destination_id is not None:
            sql, args = sql + " WHERE destination_id = $1", [destination_id]
        rows = await self._db.fetch(sql + " ORDER BY added_at, id", *args)
        return [chat_source_from_row(r, self._d) for r in rows]
