"""Message templates on Matrix (issue 16), against a real Synapse: a room shown with a
template that tries to ping the room and write HTML around a hostile source's text
gets a message whose only markup is the renderer's own (one link, the event's), no
mention, no highlight; ``!alerts subscribe … template=`` takes only the operator's
templates."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest

from alerts.chat.commands import CommandService
from alerts.model import Destination, View
from alerts.platforms.matrix import MatrixSink
from alerts.store.sqlite import SqliteStore
from alerts.templates import Template

from ..edits_world import World, report
from .helpers import Peer
from .test_chat import ask, bot_joins, listening
from .test_edits import alice_messages
from .test_sink import joined_room

pytestmark = pytest.mark.synapse

MakeSink = Callable[..., Awaitable[MatrixSink]]
MakePeer = Callable[..., Awaitable[Peer]]
LOUD = Template(
    "loud",
    title="@room {title} <a href='https://evil.example/t'>more</a>",
    body="<b>{summary}</b> @room {link} <img src=x onerror=alert(1)>",
)


async def test_a_template_cannot_ping_the_room_or_write_html(
    make_sink: MakeSink, peers: MakePeer, store: SqliteStore
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink, bot_power=100)  # it could notify: content must not
    destination = Destination(f"matrix:{room_id}", "matrix", room_id)
    world = await World(store, sink, destination, view=View(template=LOUD)).start()
    bot = str(sink.session.client.user_id)
    hostile = replace(
        report(
            "wire",
            '@room <a href="https://evil.example/s">ICE</a> <i>contract</i>',
            "https://example.org/a?x=1",
            name="Wire",
        ),
        summary="<script>alert(1)</script> @room",
    )
    await world.deliver(hostile)
    await alice.wait_until(lambda: len(alice_messages(alice, sink, room_id)) == 1)
    content = alice.messages(room_id, bot)[0].source["content"]
    body, html = content["body"], content["formatted_body"]
    assert body.startswith("@\u2060room @\u2060room <a href=")  # the template's title, as text
    assert content["m.mentions"] == {}
    assert not re.search(r"@room(?!\u2060)", body + html)  # defused for every client
    assert re.findall(r'<a href="([^"]*)"', html) == ["https://example.org/a?x=1"]
    assert set(re.findall(r"<(/?[a-z]+)", html)) <= {
        "p", "/p", "strong", "/strong", "a", "/a", "br", "em", "/em", "ul", "/ul", "li", "/li",
        "blockquote", "/blockquote", "sub", "/sub",
    }  # fmt: skip
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;b&gt;&lt;script&gt;" in html
    assert "&lt;a href=&#x27;https:\u2060//evil.example/t&#x27;&gt;more&lt;/a&gt;" in html
    assert alice.highlights() == []


async def test_alerts_subscribe_with_a_template_in_a_room(
    make_sink: MakeSink, peers: MakePeer, commands: CommandService, store: SqliteStore
) -> None:
    commands.templates = frozenset({"short"})
    alice = await peers("alice")
    sink = await make_sink(invite_users=alice.user_id)
    async with listening(sink, commands):
        room_id = await bot_joins(alice, sink)
        done = await ask(alice, room_id, "!alerts subscribe news template=short")
        bad = await ask(alice, room_id, "!alerts subscribe news template=loud")
        listed = await ask(alice, room_id, "!alerts list")
    assert done.body == "Subscribed: news template=short"
    assert bad.body == "unknown template 'loud'; templates are: short"
    assert "- news template=short" in listed.body
    [sub] = await store.list_subscriptions(f"matrix:{room_id}")
    assert sub.template == "short"
