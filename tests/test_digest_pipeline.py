"""Digests through the whole service (issue 16), on SQLite and on PostgreSQL: a real
feed server, the real runtime (scheduler, router, store, dispatcher) on a config whose
destination sets ``digest = "daily@09:00"`` in Europe/Paris, stopped and started again
while alerts are held and while their digest is waiting to be sent. The digest is
made once and sent once; nothing held is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerts.config import Settings, load_config
from alerts.digest import DIGEST_SOURCE
from alerts.errors import RetryableSendError
from alerts.model import DeliveryState, EventKind
from alerts.runtime import Runtime
from alerts.scheduler import Timing

from .pg_support import fresh_database
from .support import FeedServer, RecordingSink, feed_server, write_config

SATURDAY_NOON = datetime(2026, 10, 24, 10, 0, tzinfo=UTC)  # 12:00 CEST
BEFORE_NINE = datetime(2026, 10, 25, 7, 59, tzinfo=UTC)  # 08:59 CET, clocks went back at 01:00
NINE_CET = datetime(2026, 10, 25, 8, 0, tzinfo=UTC)
LATER = datetime(2026, 10, 25, 9, 0, tzinfo=UTC)
ROOM = 'digest = "daily@09:00"\ntz = "Europe/Paris"\n'


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'alerts.db'}"
    else:
        async with fresh_database() as url:
            yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


def opener(
    tmp_path: Path, config: Path, url: str, sink: RecordingSink, clock: Clock
) -> Callable[[], AbstractAsyncContextManager[Runtime]]:
    @asynccontextmanager
    async def running() -> AsyncIterator[Runtime]:
        settings = Settings(config_dir=config, database_url=url, data_dir=tmp_path / "data")
        rt = await Runtime.open(
            settings,
            load_config(config),
            clock=clock,
            sink_overrides={"console": sink},
            timing=Timing(jitter=0.0, first_spread_s=0.0, idle_s=0.05),
        )
        try:
            await rt._start_sinks()
            yield rt
        finally:
            await rt.close()

    return running


async def test_a_digest_held_over_restarts_is_sent_once(
    tmp_path: Path, server: FeedServer, database_url: str
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a")}, destination=ROOM)
    sink, clock = RecordingSink(), Clock(SATURDAY_NOON)
    running = opener(tmp_path, config, database_url, sink, clock)

    async with running() as rt:
        assert (await rt.scheduler.poll_now("wire")).ok  # baseline
        server.add("wire", "b", "c")
        assert len((await rt.scheduler.poll_now("wire")).events) == 2
        await rt.dispatcher.drain()
        assert sink.sent == []  # held until 09:00 tomorrow, Paris time
        held = await rt.store.list_deliveries(state=DeliveryState.HELD)
        assert sorted(r.event.title for r in held) == ["Item b", "Item c"]

    clock.now = BEFORE_NINE  # a new process the next morning, before the digest time
    async with running() as rt:
        await rt.dispatcher.drain()
        assert sink.sent == []
        clock.now = NINE_CET
        sink.fail["console"] = [RetryableSendError("the platform hung up")]
        await rt.dispatcher.drain()  # the digest is made, and its first send fails
        assert sink.sent == []
        [pending] = await rt.store.list_deliveries(state=DeliveryState.PENDING)
        assert pending.event.source_id == DIGEST_SOURCE

    clock.now = LATER  # stopped with the digest unsent; started again an hour later
    async with running() as rt:
        await rt.dispatcher.drain()
        await rt.dispatcher.drain()
        [digest] = sink.sent
        assert digest.event.kind is EventKind.SUMMARY
        assert digest.event.title == "Daily digest: 2 alerts"
        [group] = digest.event.fields["digest"]
        assert (group["topic"], group["source"], group["count"]) == ("news", "wire", 2)
        assert [i["title"] for i in group["items"]] == ["Item b", "Item c"]
        assert sink.duplicates == 0
        assert await rt.store.list_deliveries(state=DeliveryState.HELD) == []
        digested = await rt.store.list_deliveries(state=DeliveryState.DIGESTED)
        assert len(digested) == 2
        [sent] = await rt.store.list_deliveries(state=DeliveryState.SENT)
        assert sent.id == digest.id
        stats = await rt.store.outbox_stats()
        assert (stats.pending, stats.dead) == (0, 0)

    async with running() as rt:
        await rt.dispatcher.drain()
        assert len(sink.sent) == 1  # and never again
