"""Personal subscriptions in Matrix: a DM is a room. Against a real Synapse: the bot
accepts an ``is_direct`` invite from anyone (unless the operator turns it off), the
user needs no power level in their DM, alerts arrive there, and a "DM" with a third
person in it is left again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import nio
import pytest

from alerts.chat.commands import CommandService
from alerts.chat.feeds import ChatFeeds
from alerts.config import ChatConfig
from alerts.model import Event, EventKind
from alerts.platforms.matrix import MatrixSink
from alerts.store.sqlite import SqliteStore
from tests.hostile.checks import _mention_problems, _parse, _spec_problems, text_problems
from tests.hostile.world import HOSTILE_TITLES, json_feed
from tests.support import FeedServer, FeedState, feed_server, loopback_http

from .conftest import TOPICS
from .helpers import Peer
from .pipeline import Pipeline
from .test_chat import ask, listening, sink_user

pytestmark = pytest.mark.synapse


def left_by(bot: str) -> Callable[[object], bool]:
    return lambda e: (
        isinstance(e, nio.RoomMemberEvent) and e.state_key == bot and e.membership == "leave"
    )


async def dm_with_bot(peer: Peer, sink: MatrixSink) -> str:
    """``peer`` opens a DM with the bot, then hands its own power down to 0: in a
    room version before 12 (where creators are not privileged by themselves) it is
    then no moderator by any rule but the DM rule."""
    bot = sink_user(sink)
    room_id = await peer.create_room(invite=[bot], is_direct=True, room_version="11")
    await peer.wait_until(lambda: room_id in sink.session.client.rooms)
    await peer.wait_until(lambda: bot in sink.session.client.rooms[room_id].users)
    levels = {"users": {peer.user_id: 0, bot: 100}, "users_default": 0, "events_default": 0}
    sent = await peer.client.room_put_state(room_id, "m.room.power_levels", levels)
    assert isinstance(sent, nio.RoomPutStateResponse), sent
    room = sink.session.client.rooms[room_id]
    await peer.wait_until(lambda: room.power_levels.get_user_level(peer.user_id) == 0)
    return room_id


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as served:
        served.feed("dm", "a")
        yield served


async def test_dm_subscription_delivers_to_the_dm(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    store: SqliteStore,
) -> None:
    eve = await peers("eve")  # not in any invite allow-list
    sink = await make_sink()
    pipeline = Pipeline(store, {"matrix": sink}, TOPICS)
    async with listening(sink, pipeline.commands), pipeline.running():
        room_id = await dm_with_bot(eve, sink)
        room = sink.session.client.rooms[room_id]
        assert room.power_levels.get_user_level(eve.user_id) == 0
        reply = await ask(eve, room_id, "!alerts subscribe news")
        assert reply.body == "Subscribed: news"
        title = "Your personal alert"
        await pipeline.commit(
            [Event(source_id="press", kind=EventKind.NEW, key="k", title=title, topics=("news",))]
        )
        delivered = await eve.wait_for(
            room_id,
            lambda e: isinstance(e, nio.RoomMessageNotice) and e.body.startswith(title),
        )
    assert delivered.sender == sink_user(sink)
    [sub] = await store.list_subscriptions(f"matrix:{room_id}")
    assert (sub.topic, sub.created_by) == ("news", eve.user_id)


async def test_room_with_a_third_member_needs_rights_and_is_left_as_a_dm(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
) -> None:
    eve, bob = await peers("eve"), await peers("bob")
    sink = await make_sink()
    bot = sink_user(sink)
    async with listening(sink, commands):
        # Marked direct, but bob is invited too: the bot joins, sees him, leaves.
        crowded = await eve.create_room(invite=[bot, bob.user_id], is_direct=True)
        await eve.wait_for(crowded, left_by(bot))
        # Not marked direct, from someone not allowed: refused as before.
        plain = await eve.create_room(invite=[bot])
        await eve.wait_for(plain, left_by(bot))
    assert crowded not in sink.session.client.rooms
    assert plain not in sink.session.client.rooms


async def test_direct_invites_can_be_turned_off(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
) -> None:
    eve = await peers("eve")
    sink = await make_sink(invite_direct=False)
    bot = sink_user(sink)
    async with listening(sink, commands):
        room_id = await eve.create_room(invite=[bot], is_direct=True)
        await eve.wait_for(room_id, left_by(bot))
    assert room_id not in sink.session.client.rooms


async def test_add_feed_in_a_dm_follows_the_operator_switch(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    store: SqliteStore,
    server: FeedServer,
) -> None:
    eve, alice, bob = await peers("eve"), await peers("alice"), await peers("bob")
    sink = await make_sink(invite_users=alice.user_id)
    http = loopback_http()
    chat = ChatConfig(
        allow_add_sources=True, add_source_domains=("127.0.0.1",), allow_private_network=True
    )
    feeds = ChatFeeds(store=store, http=http, chat=chat)
    commands = CommandService(store=store, topics=TOPICS, feeds=feeds)
    url = server.url("dm")
    try:
        async with listening(sink, commands):
            dm = await dm_with_bot(eve, sink)
            added = await ask(eve, dm, f"!alerts add-feed {url}")
            assert added.body.splitlines()[:3] == [
                f"Added feed {(await store.list_chat_sources())[0].id} (127.0.0.1) for this room.",
                "It lists 1 item now:",
                "- Item a",
            ]
            # In a group room, bob (power 0) may not; the operator's switch applies too.
            group = await alice.create_room(invite=[sink_user(sink), bob.user_id])
            await alice.wait_until(lambda: group in sink.session.client.rooms)
            await bob.client.join(group)
            await alice.wait_until(lambda: bob.user_id in sink.session.client.rooms[group].users)
            refused = await ask(bob, group, f"!alerts add-feed {url}")
            assert refused.body == "Sorry, only room moderators can add-feed."
            feeds.chat = ChatConfig()
            off = await ask(eve, dm, f"!alerts add-feed {server.feed('other', 'x')}")
            assert off.body == "The operator has not allowed adding feeds from chat."
    finally:
        await http.close()
    [stored] = await store.list_chat_sources()
    assert (stored.destination_id, stored.added_by) == (f"matrix:{dm}", eve.user_id)


async def test_user_leaving_the_dm_drops_its_subscriptions_and_the_bot_leaves(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    store: SqliteStore,
    commands: CommandService,
) -> None:
    eve = await peers("eve")
    sink = await make_sink()
    async with listening(sink, commands):
        room_id = await dm_with_bot(eve, sink)
        assert (await ask(eve, room_id, "!alerts subscribe news")).body == "Subscribed: news"
        left = await eve.client.room_leave(room_id)
        assert isinstance(left, nio.RoomLeaveResponse), left
        await eve.wait_until(lambda: room_id not in sink.session.client.rooms)
    assert await store.list_subscriptions(f"matrix:{room_id}") == []


MATRIX_HOSTILE_TITLES = (  # the reply shows the first three
    "@room see https://matrix.to/#/@alice:example.org and #ops:example.org",
    '<a href="https://phish.example/login">Sign the updated letter</a> \u2066x\u2069',
    "ping @alice:example.org in !abc:example.org, \x00 @everyone",
    *HOSTILE_TITLES,
)


async def test_add_feed_reply_shows_hostile_titles_as_text(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    store: SqliteStore,
    server: FeedServer,
) -> None:
    # Synapse end to end: the add-feed reply and the feeds list show a hostile feed's
    # titles with no mention, pill, link, control or bidi character left (the rules
    # of tests/hostile/checks.py), in the body and in the <pre> formatted body.
    eve = await peers("eve")
    sink = await make_sink()
    http = loopback_http()
    chat = ChatConfig(
        allow_add_sources=True, add_source_domains=("127.0.0.1",), allow_private_network=True
    )
    commands = CommandService(
        store=store, topics=TOPICS, feeds=ChatFeeds(store=store, http=http, chat=chat)
    )
    server.feeds["hostile"] = FeedState(body=json_feed(MATRIX_HOSTILE_TITLES))
    try:
        async with listening(sink, commands):
            dm = await dm_with_bot(eve, sink)
            added = await ask(eve, dm, f"!alerts add-feed {server.url('hostile')}")
            listed = await ask(eve, dm, "!alerts feeds")
    finally:
        await http.close()
    assert added.body.splitlines()[1] == "It lists 6 items now:"
    for reply in (added, listed):
        content = reply.source["content"]
        root = _parse(content["formatted_body"])
        problems = _spec_problems(root)
        problems += text_problems("body", content["body"], multiline=True)
        problems += _mention_problems("body", content["body"].replace(eve.user_id, ""))
        problems += [f"<{e.tag}>" for e in root.iter() if e.tag.split("}")[-1] == "a"]
        assert problems == [], content
