"""The Matrix room front end against a real Synapse: invites, kicks, commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import nio
import pytest

from alerts.chat.commands import CommandService
from alerts.model import EventKind
from alerts.platforms.matrix import MatrixSink
from alerts.store.sqlite import SqliteStore

from .helpers import Peer, replying_to

pytestmark = pytest.mark.synapse


@asynccontextmanager
async def listening(sink: MatrixSink, commands: CommandService) -> AsyncIterator[None]:
    task = asyncio.create_task(sink.listen(commands))
    await asyncio.sleep(0)
    try:
        yield
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def bot_joins(peer: Peer, sink: MatrixSink, *, also: tuple[str, ...] = ()) -> str:
    room_id = await peer.create_room(invite=[sink_user(sink), *also])
    await peer.wait_until(lambda: room_id in sink.session.client.rooms)
    return room_id


def sink_user(sink: MatrixSink) -> str:
    return str(sink.session.client.user_id)


async def ask(peer: Peer, room_id: str, text: str) -> nio.RoomMessageNotice:
    event_id = await peer.say(room_id, text)
    reply = await peer.wait_for(room_id, replying_to(event_id))
    assert isinstance(reply, nio.RoomMessageNotice), reply
    assert reply.source["content"]["m.mentions"] == {}
    return reply


async def test_invite_from_allowed_user_joins_and_others_are_refused(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
) -> None:
    alice, eve = await peers("alice"), await peers("eve")
    sink = await make_sink(invite_users=alice.user_id)
    bot = sink_user(sink)
    async with listening(sink, commands):
        allowed = await alice.create_room(invite=[bot])
        refused = await eve.create_room(invite=[bot])
        await alice.wait_until(lambda: allowed in sink.session.client.rooms)
        left = await eve.wait_for(
            refused,
            lambda e: (
                isinstance(e, nio.RoomMemberEvent)
                and e.state_key == bot
                and e.membership == "leave"
            ),
        )
    assert left.sender == bot
    assert refused not in sink.session.client.rooms


@pytest.mark.parametrize(
    ("invite_settings", "allowed"),
    [
        pytest.param({"invite_anyone": True}, True, id="anyone"),
        pytest.param({"invite_servers": "localhost"}, True, id="homeserver"),
        pytest.param({"invite_servers": "example.org"}, False, id="other-homeserver"),
        pytest.param({}, False, id="nobody-by-default"),
    ],
)
def test_invite_policy(invite_settings: dict[str, object], allowed: bool) -> None:
    from alerts.platforms.matrix import MatrixRooms, MatrixSession, MatrixSettings

    session = MatrixSession(settings=MatrixSettings(**invite_settings), home=None)  # type: ignore[arg-type]
    rooms = MatrixRooms(session=session, commands=None)  # type: ignore[arg-type]
    assert rooms.inviter_allowed("@carol:localhost") is allowed
    assert rooms.inviter_allowed(None) is False


async def test_commands_subscribe_list_topics_help_unsubscribe(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
    store: SqliteStore,
) -> None:
    alice = await peers("alice")
    sink = await make_sink(invite_users=alice.user_id)
    async with listening(sink, commands):
        room_id = await bot_joins(alice, sink)
        destination = f"matrix:{room_id}"

        help_reply = await ask(alice, room_id, "!alerts help")
        topics = await ask(alice, room_id, "!alerts topics")
        subscribed = await ask(alice, room_id, "!alerts subscribe contracts kinds=new,updated")
        listed = await ask(alice, room_id, "!alerts list")
        subs = await store.list_subscriptions(destination)
        unknown = await ask(alice, room_id, "!alerts subscribe weather")
        unsubscribed = await ask(alice, room_id, "!alerts unsubscribe contracts")
        filtered = await ask(
            alice, room_id, "!alerts subscribe contracts min_change=1M keywords=palantir"
        )
        [watch] = await store.list_subscriptions(destination)
        bad = await ask(alice, room_id, "!alerts subscribe contracts keywords=re:(a")

    assert "subscribe TOPIC" in help_reply.body
    assert "- contracts: Federal contract awards" in topics.body
    assert subscribed.body.startswith("Subscribed: contracts kinds=new,updated")
    assert "- contracts kinds=new,updated" in listed.body
    assert [(s.topic, s.kinds, s.created_by) for s in subs] == [
        ("contracts", frozenset({EventKind.NEW, EventKind.UPDATED}), alice.user_id)
    ]
    assert "unknown topic 'weather'; topics are: contracts, news" in unknown.body
    assert unsubscribed.body.startswith("Unsubscribed from contracts")
    assert filtered.body == "Subscribed: contracts keywords=palantir min_change=1,000,000"
    assert (watch.include, watch.min_change) == (("palantir",), 1_000_000.0)
    assert "keywords: regular expression '(a': missing )" in bad.body


async def test_non_moderator_is_refused(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
    store: SqliteStore,
) -> None:
    alice, bob = await peers("alice"), await peers("bob")
    sink = await make_sink(invite_users=alice.user_id)
    async with listening(sink, commands):
        room_id = await bot_joins(alice, sink, also=(bob.user_id,))
        await bob.client.join(room_id)
        refused = await ask(bob, room_id, "!alerts subscribe news")
        listed = await ask(bob, room_id, "!alerts list")
    assert "only room moderators can subscribe" in refused.body
    assert "no subscriptions" in listed.body
    assert await store.list_subscriptions() == []


async def test_configured_power_level_lets_a_moderator_manage(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
    store: SqliteStore,
) -> None:
    alice, bob = await peers("alice"), await peers("bob")
    sink = await make_sink(invite_users=alice.user_id, manage_power_level=10)
    bot = sink_user(sink)
    async with listening(sink, commands):
        room_id = await alice.create_room(invite=[bot, bob.user_id], power={bob.user_id: 10})
        await alice.wait_until(lambda: room_id in sink.session.client.rooms)
        await bob.client.join(room_id)
        reply = await ask(bob, room_id, "!alerts subscribe news")
    assert reply.body.startswith("Subscribed: news")
    assert [s.topic for s in await store.list_subscriptions()] == ["news"]


async def test_kick_drops_the_rooms_subscriptions(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
    store: SqliteStore,
) -> None:
    alice = await peers("alice")
    sink = await make_sink(invite_users=alice.user_id)
    async with listening(sink, commands):
        room_id = await bot_joins(alice, sink)
        await ask(alice, room_id, "!alerts subscribe news")
        assert len(await store.list_subscriptions(f"matrix:{room_id}")) == 1
        await alice.client.room_kick(room_id, sink_user(sink), reason="bye")
        await alice.wait_until(_no_subscriptions(store, room_id))
    assert room_id not in sink.session.client.rooms


def _no_subscriptions(store: SqliteStore, room_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await store.list_subscriptions(f"matrix:{room_id}")

    return check


async def test_commands_from_before_the_start_are_not_replayed(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
    store: SqliteStore,
) -> None:
    alice = await peers("alice")
    sink = await make_sink(invite_users=alice.user_id)
    async with listening(sink, commands):
        room_id = await bot_joins(alice, sink)
    await sink.close()
    stale = await alice.say(room_id, "!alerts subscribe news")

    restarted = await make_sink(invite_users=alice.user_id)
    async with listening(restarted, commands):
        fresh = await ask(alice, room_id, "!alerts subscribe contracts")

    assert fresh.body.startswith("Subscribed: contracts")
    assert [s.topic for s in await store.list_subscriptions()] == ["contracts"]
    assert not [e for e in alice.events[room_id] if replying_to(stale)(e)]


async def test_commands_work_in_an_encrypted_room(
    make_sink: Callable[..., Awaitable[MatrixSink]],
    peers: Callable[..., Awaitable[Peer]],
    commands: CommandService,
    store: SqliteStore,
) -> None:
    alice = await peers("alice", e2e=True)
    sink = await make_sink(invite_users=alice.user_id)
    async with listening(sink, commands):
        room_id = await alice.create_room(encrypted=True, invite=[sink_user(sink)])
        await alice.wait_until(lambda: room_id in sink.session.client.rooms)
        reply = await ask(alice, room_id, "!alerts subscribe news")
    assert reply.body.startswith("Subscribed: news")
    assert [s.topic for s in await store.list_subscriptions(f"matrix:{room_id}")] == ["news"]
