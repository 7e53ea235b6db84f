"""Quiet hours and digests on Matrix (issue 16), against a real Synapse: alerts held
through a night that crosses the spring daylight-saving change in Europe/Paris, an
urgent milestone that goes straight through, and the one digest message the room
gets when quiet hours end, its strangers' text inert."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from alerts.chat.commands import CommandService
from alerts.model import DeliveryState, Destination, Subscription
from alerts.platforms.matrix import MatrixSink
from alerts.schedule import parse_schedule
from alerts.store.sqlite import SqliteStore

from ..edits_world import World, milestone, report
from .helpers import Peer
from .test_chat import ask, bot_joins, listening
from .test_edits import alice_messages
from .test_sink import joined_room

pytestmark = pytest.mark.synapse

MakeSink = Callable[..., Awaitable[MatrixSink]]
MakePeer = Callable[..., Awaitable[Peer]]
NIGHT = datetime(2026, 3, 28, 21, 30, tzinfo=UTC)  # 22:30 CET; clocks go forward at 01:00 UTC
MORNING = datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 07:00 CEST: quiet hours end


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_quiet_hours_over_the_dst_change_hold_alerts_for_one_digest(
    make_sink: MakeSink, peers: MakePeer, store: SqliteStore
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink, bot_power=100)  # it could notify: content must not
    destination = Destination(f"matrix:{room_id}", "matrix", room_id)
    schedule = parse_schedule(quiet="22:00-07:00", tz="Europe/Paris", urgent="milestone")
    clock = Clock(NIGHT)
    world = await World(
        store,
        sink,
        destination,
        subscription=Subscription(destination.id, schedule=schedule),
        clock=clock,
    ).start()
    bot = str(sink.session.client.user_id)

    hostile = report(
        "wire", "@room <b>ICE</b> contract", "https://example.org/a?x=1", name="Wire", key="a"
    )
    calm = report("wire", "Second story", "https://example.org/b", name="Wire", key="b")
    await world.deliver(hostile, calm, milestone(50_123, 50_000))
    await alice.wait_until(lambda: len(alice_messages(alice, sink, room_id)) == 1)
    first = alice.messages(room_id, bot)[0].source["content"]
    assert first["body"].startswith("50,000 signatures reached")  # the milestone, at once
    assert len(await store.list_deliveries(state=DeliveryState.HELD)) == 2

    clock.now = MORNING - timedelta(minutes=1)  # 06:59 CEST: still quiet
    await world.deliver()
    assert len(alice_messages(alice, sink, room_id)) == 1

    clock.now = MORNING
    await world.deliver()
    await world.settle()
    await alice.wait_until(lambda: len(alice_messages(alice, sink, room_id)) == 2)
    content = alice.messages(room_id, bot)[-1].source["content"]
    body, html = content["body"], content["formatted_body"]
    assert body.startswith("Held during quiet hours: 2 alerts")
    assert "news · Wire (2):" in body
    assert "https://example.org/a?x=1" in body and "https://example.org/b" in body
    assert content["m.mentions"] == {}
    assert not re.search(r"@room(?!\u2060)", body + html)  # defused for every client
    assert "<b>ICE</b>" not in html and "&lt;b&gt;ICE&lt;/b&gt;" in html
    hrefs = re.findall(r'<a href="([^"]*)"', html)
    assert hrefs == ["https://example.org/a?x=1", "https://example.org/b"]
    assert alice.highlights() == []
    assert await store.list_deliveries(state=DeliveryState.HELD) == []
    await world.deliver()  # nothing more: the digest is shown once
    assert len(alice_messages(alice, sink, room_id)) == 2


async def test_alerts_subscribe_with_quiet_hours_in_a_room(
    make_sink: MakeSink, peers: MakePeer, commands: CommandService, store: SqliteStore
) -> None:
    alice = await peers("alice")
    sink = await make_sink(invite_users=alice.user_id)
    async with listening(sink, commands):
        room_id = await bot_joins(alice, sink)
        done = await ask(
            alice,
            room_id,
            "!alerts subscribe news quiet=22:00-07:00 tz=Europe/Paris urgent=milestone",
        )
        bad = await ask(alice, room_id, "!alerts subscribe news tz=Europe/Atlantis")
        listed = await ask(alice, room_id, "!alerts list")
    settings = "quiet=22:00-07:00 tz=Europe/Paris urgent=milestone"
    assert done.body == f"Subscribed: news {settings}"
    assert "unknown time zone 'Europe/Atlantis'" in bad.body
    assert f"- news {settings}" in listed.body
    [sub] = await store.list_subscriptions(f"matrix:{room_id}")
    assert sub.schedule == parse_schedule(
        quiet="22:00-07:00", tz="Europe/Paris", urgent="milestone"
    )
