"""The slice of the Store the Matrix sink and chat front end use, in memory.

Used only until the SQLite store is on main; same semantics as the protocol says.
"""

from __future__ import annotations

import dataclasses

from alerts.model import Destination, Subscription


class MemoryStore:
    install_id = "test"

    def __init__(self) -> None:
        self.kv: dict[tuple[str, str], str] = {}
        self.destinations: dict[str, Destination] = {}
        self.subscriptions: list[Subscription] = []
        self._next_id = 1

    async def close(self) -> None:
        return None

    async def kv_get(self, namespace: str, key: str) -> str | None:
        return self.kv.get((namespace, key))

    async def kv_set(self, namespace: str, key: str, value: str) -> None:
        self.kv[(namespace, key)] = value

    async def upsert_destination(self, destination: Destination) -> None:
        self.destinations[destination.id] = destination

    async def add_subscription(self, subscription: Subscription) -> Subscription:
        await self.remove_subscriptions(
            subscription.destination_id, topic=subscription.topic, source=subscription.source
        )
        stored = dataclasses.replace(subscription, id=self._next_id)
        self._next_id += 1
        self.subscriptions.append(stored)
        return stored

    async def remove_subscriptions(
        self, destination_id: str, *, topic: str | None = None, source: str | None = None
    ) -> int:
        def hit(s: Subscription) -> bool:
            if s.destination_id != destination_id:
                return False
            if topic is None and source is None:
                return True
            return (topic is not None and s.topic == topic) or (
                source is not None and s.source == source
            )

        before = len(self.subscriptions)
        self.subscriptions = [s for s in self.subscriptions if not hit(s)]
        return before - len(self.subscriptions)

    async def list_subscriptions(self, destination_id: str | None = None) -> list[Subscription]:
        return [s for s in self.subscriptions if destination_id in (None, s.destination_id)]

    async def remove_destination(self, destination_id: str, *, reason: str) -> int:
        self.destinations.pop(destination_id, None)
        return await self.remove_subscriptions(destination_id)
