"""Failure notices on Matrix, against a real Synapse: the operator room gets a
source's failure and its recovery as two messages, and the error text in them (a
stranger's server wrote it) is redacted and inert: no secret, no highlight, no
markup, no link but the ones the notice makes."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from alerts.model import Destination, Event
from alerts.notices import Notice, notice_event
from alerts.platforms.matrix import MatrixSink
from alerts.records import PollCommit, RoutedEvent
from alerts.store.sqlite import SqliteStore

from ..edits_world import OWNER, World
from .helpers import Peer
from .test_edits import alice_messages
from .test_sink import joined_room

pytestmark = pytest.mark.synapse

MakeSink = Callable[..., Awaitable[MatrixSink]]
MakePeer = Callable[..., Awaitable[Peer]]
FAILED_AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RECOVERED_AT = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
# What a hostile or broken server may put in an error the notice quotes.
HOSTILE_ERROR = (
    "HTTP 503 from https://feeds.example/rss?token=hunter22secret: "
    "@room <b>down</b> [x](https://evil.example) <a href='https://evil.example'>y</a>"
)


async def test_a_failure_and_its_recovery_reach_the_operator_room_inert(
    make_sink: MakeSink, peers: MakePeer, store: SqliteStore
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink, bot_power=100)  # it could notify: content must not
    destination = Destination(f"matrix:{room_id}", "matrix", room_id)
    world = await World(store, sink, destination).start()
    bot = str(sink.session.client.user_id)

    failing = notice_event(
        Notice.FAILING,
        source_id="wire",
        label="Wire",
        topics=("news",),
        now=FAILED_AT,
        failures=3,
        detail=HOSTILE_ERROR,
    )
    recovered = notice_event(
        Notice.RECOVERED,
        source_id="wire",
        label="Wire",
        topics=("news",),
        now=RECOVERED_AT,
        failures=5,
    )
    for notice, at in ((failing, FAILED_AT), (recovered, RECOVERED_AT)):
        await _commit_notice(store, destination, notice, at)
        await world.deliver()
    await alice.wait_until(lambda: len(alice_messages(alice, sink, room_id)) == 2)

    first, second = (m.source["content"] for m in alice.messages(room_id, bot))
    assert first["body"].startswith("Source failing: Wire (3 failed polls in a row)")
    assert second["body"].startswith("Source recovered: Wire (after 5 failed polls)")
    body, html = first["body"], first["formatted_body"]
    assert "hunter22secret" not in body + html  # the token is redacted
    assert first["m.mentions"] == {} and second["m.mentions"] == {}
    assert not re.search(r"@room(?!\u2060)", body + html)  # defused for every client
    assert "<b>down</b>" not in html and "&lt;b&gt;down&lt;/b&gt;" in html
    assert not any("evil.example" in href for href in re.findall(r'href="([^"]*)"', html))
    assert alice.highlights() == []


async def _commit_notice(
    store: SqliteStore, destination: Destination, notice: Event, at: datetime
) -> None:
    """The notice as the scheduler commits it: with the source's poll, to the room."""
    row = await store.claim_source(notice.source_id, at, owner=OWNER, lease_s=60)
    assert row is not None
    commit = PollCommit(
        source_id=notice.source_id,
        now=at,
        next_due=at,
        events=[RoutedEvent(notice, (destination.id,))],
    )
    await store.commit_poll(commit, owner=OWNER)
