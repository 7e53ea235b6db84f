"""The core pipeline around one sink: store, router, outbox commit, real dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from alerts.chat.commands import CommandService
from alerts.dispatch import Dispatcher, RetryPolicy
from alerts.model import Event, utcnow
from alerts.route import Router
from alerts.sinks import Sink
from alerts.store import PollCommit, RoutedEvent, Store

SOURCE = "press"
OWNER = "matrix-tests"


class Pipeline:
    """Commit events the way the scheduler does; the dispatcher sends them."""

    def __init__(
        self, store: Store, sinks: dict[str, Sink], topics: dict[str, str], **dispatcher: object
    ) -> None:
        self.store = store
        self.router = Router()
        self.commands = CommandService(store=store, topics=topics, on_change=self.reload)
        self.dispatcher = Dispatcher(
            store=store, sinks=sinks, owner=OWNER, policy=RetryPolicy(base_s=0.2), idle_s=0.05,
            **dispatcher,  # type: ignore[arg-type]
        )  # fmt: skip

    async def reload(self) -> None:
        version = await self.store.subscriptions_version()
        self.router.set_dynamic(await self.store.list_subscriptions(), version)

    async def commit(self, events: Sequence[Event]) -> list[Event]:
        """One poll of ``SOURCE`` that found ``events``: routed and committed atomically."""
        now = utcnow()
        await self.store.sync_sources({SOURCE: now})
        claimed = await self.store.claim_due_sources(now, owner=OWNER, lease_s=60, limit=1)
        assert [row.source_id for row in claimed] == [SOURCE]
        routed = [RoutedEvent(e, self.router.route(e)) for e in events]
        commit = PollCommit(source_id=SOURCE, now=now, next_due=now, events=routed)
        stored = await self.store.commit_poll(commit, owner=OWNER)
        self.dispatcher.wake()
        return stored

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.dispatcher.run())
        try:
            yield
        finally:
            self.dispatcher.stop()
            await task
