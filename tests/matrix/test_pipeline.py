"""End to end: a room subscribes by command, the core commits an event, the real
dispatcher delivers it through the Matrix sink; after unsubscribing, nothing comes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import nio
import pytest

from alerts.model import DeliveryState, Event, EventKind
from alerts.platforms.matrix import MatrixSink
from alerts.store.sqlite import SqliteStore

from .conftest import TOPICS
from .helpers import Peer
from .pipeline import Pipeline
from .synapse_server import Account, SynapseServer
from .test_chat import ask, bot_joins, listening

pytestmark = pytest.mark.synapse


def press_event(title: str) -> Event:
    return Event(source_id="press", kind=EventKind.NEW, key=title, title=title, topics=("news",))


async def test_subscribe_then_event_is_delivered_unsubscribe_then_not(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    store: SqliteStore,
) -> None:
    alice = await peers("alice")
    sink = await make_sink(invite_users=alice.user_id)
    pipeline = Pipeline(store, {"matrix": sink}, TOPICS)
    bot = str(sink.session.client.user_id)

    async with listening(sink, pipeline.commands), pipeline.running():
        room_id = await bot_joins(alice, sink)
        await ask(alice, room_id, "!alerts subscribe news")
        await pipeline.commit([press_event("Tech workers sign ICEout letter")])
        delivered = await alice.wait_for(
            room_id,
            lambda e: (
                isinstance(e, nio.RoomMessageNotice)
                and e.body.startswith("Tech workers sign ICEout letter")
            ),
        )
        await ask(alice, room_id, "!alerts unsubscribe news")
        await pipeline.commit([press_event("A second story nobody asked for")])
        await pipeline.dispatcher.drain(timeout_s=5)
        await alice.sync()

    assert delivered.sender == bot
    rows = await store.list_deliveries()
    assert [(r.event.title, r.destination_id, r.state, r.remote_id) for r in rows] == [
        ("Tech workers sign ICEout letter", f"matrix:{room_id}", DeliveryState.SENT,
         delivered.event_id)
    ]  # fmt: skip
    alerts = [e for e in alice.messages(room_id, bot) if "m.in_reply_to" not in str(e.source)]
    assert [e.event_id for e in alerts] == [delivered.event_id]


async def test_rate_limited_room_is_rescheduled_and_nothing_is_lost(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    store: SqliteStore,
    synapse: SynapseServer,
    bot_account: Account,
) -> None:
    alice = await peers("alice")
    sink = await make_sink(invite_users=alice.user_id)
    pipeline = Pipeline(store, {"matrix": sink}, TOPICS)
    titles = [f"Story {n}" for n in range(4)]

    async with listening(sink, pipeline.commands), pipeline.running():
        room_id = await bot_joins(alice, sink)
        await ask(alice, room_id, "!alerts subscribe news")
        synapse.override_ratelimit(bot_account.user_id, per_second=2, burst_count=1)
        await pipeline.commit([press_event(t) for t in titles])
        await alice.wait_for(
            room_id,
            lambda e: isinstance(e, nio.RoomMessageNotice) and e.body.startswith(titles[-1]),
        )

    rows = sorted(await store.list_deliveries(), key=lambda r: r.id)
    # 429s are not counted as attempts: each delivery took exactly its one successful send.
    assert [(r.event.title, r.state, r.attempts) for r in rows] == [
        (t, DeliveryState.SENT, 1) for t in titles
    ]
    assert any("M_LIMIT_EXCEEDED" in (r.last_error or "") for r in rows)
    notices = [
        e.body.splitlines()[0]
        for e in alice.messages(room_id, bot_account.user_id)
        if isinstance(e, nio.RoomMessageNotice) and "m.in_reply_to" not in str(e.source)
    ]
    assert notices == titles
