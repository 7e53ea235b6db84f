"""Messages that live, on Matrix (issue 15), against a real Synapse: ``m.replace``
edits that the server aggregates, ``m.thread`` replies, relations in cleartext in
encrypted rooms, and the stories of the issue end to end."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nio
import pytest

from alerts.errors import MessageGone
from alerts.model import Delivery, Destination, MessageView, Posted
from alerts.platforms.matrix import MatrixSink
from alerts.store.sqlite import SqliteStore

from ..edits_world import World, award_modified, award_new, delta, report
from .helpers import Peer
from .synapse_server import SynapseServer
from .test_sink import award_event, by_id, delivery_to, joined_room

pytestmark = pytest.mark.synapse

MakeSink = Callable[..., Awaitable[MatrixSink]]
MakePeer = Callable[..., Awaitable[Peer]]


def relations(
    synapse: SynapseServer, reader: Peer, room_id: str, event_id: str, rel: str
) -> list[Any]:
    """The events relating to ``event_id`` with ``rel``, as the homeserver aggregates
    them (client-server API: ``GET /rooms/{roomId}/relations/{eventId}/{relType}``)."""
    path = (
        f"/_matrix/client/v1/rooms/{urllib.parse.quote(room_id)}/relations/"
        f"{urllib.parse.quote(event_id)}/{rel}?limit=100"
    )
    chunk: list[Any] = synapse.request("GET", path, token=reader.account.access_token)["chunk"]
    return sorted(chunk, key=lambda e: e["origin_server_ts"])


def latest_edit(synapse: SynapseServer, reader: Peer, room_id: str, event_id: str) -> Any:
    """What clients show for the message: the server's bundled latest ``m.replace``."""
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/event/{urllib.parse.quote(event_id)}"
    event = synapse.request("GET", path, token=reader.account.access_token)
    return event["unsigned"]["m.relations"]["m.replace"]["content"]["m.new_content"]


# --- the sink ---------------------------------------------------------------------------


@dataclass
class Alerted:
    """An alert the bot posted in a room ``reader`` created."""

    sink: MatrixSink
    reader: Peer
    room_id: str
    delivery: Delivery
    posted: Posted


async def alert_posted(
    make_sink: MakeSink, peers: MakePeer, key: str, *, encrypted: bool = False
) -> Alerted:
    sink = await make_sink()
    alice = await peers("alice", e2e=encrypted)
    room_id = await joined_room(alice, sink, encrypted=encrypted)
    delivery = delivery_to(room_id, key=key)
    posted = await sink.post(delivery, MessageView(delivery.event))
    return Alerted(sink, alice, room_id, delivery, posted)


async def test_an_edit_is_one_replacement_the_server_aggregates(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer
) -> None:
    alert = await alert_posted(make_sink, peers, "edit-1")
    sink, alice, room_id, posted = alert.sink, alert.reader, alert.room_id, alert.posted
    assert posted.room == room_id
    corrected = award_event(title="ICE contract modification (corrected)")
    edit = delivery_to(room_id, corrected, key="edit-2", id=2)
    await sink.edit(edit, posted, MessageView(corrected))
    await sink.edit(edit, posted, MessageView(corrected))  # retried: same transaction id
    [replacement] = relations(synapse, alice, room_id, posted.remote_id, "m.replace")
    content = replacement["content"]
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": posted.remote_id}
    assert content["body"].startswith("* Updated: ICE contract modification (corrected)")
    assert content["m.mentions"] == {} and content["m.new_content"]["m.mentions"] == {}
    shown = latest_edit(synapse, alice, room_id, posted.remote_id)
    assert shown["body"].startswith("Updated: ICE contract modification (corrected)")
    assert "m.relates_to" not in shown


async def test_a_reply_is_one_message_in_the_threads_of_the_alert(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer
) -> None:
    alert = await alert_posted(make_sink, peers, "thread-1")
    sink, alice, room_id, posted, delivery = (
        alert.sink, alert.reader, alert.room_id, alert.posted, alert.delivery
    )  # fmt: skip
    note = MessageView(award_event(title="What changed", fields={"delta": 12_500_000}))
    first = await sink.reply(delivery, posted, note)
    again = await sink.reply(delivery, posted, note)
    assert first == again
    [reply] = relations(synapse, alice, room_id, posted.remote_id, "m.thread")
    assert reply["event_id"] == first
    relates = reply["content"]["m.relates_to"]
    assert relates == {
        "rel_type": "m.thread",
        "event_id": posted.remote_id,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": posted.remote_id},
    }


async def test_a_redacted_original_is_gone(make_sink: MakeSink, peers: MakePeer) -> None:
    alert = await alert_posted(make_sink, peers, "redacted-1")
    sink, alice, room_id, posted, delivery = (
        alert.sink, alert.reader, alert.room_id, alert.posted, alert.delivery
    )  # fmt: skip
    redacted = await alice.client.room_redact(room_id, posted.remote_id, reason="off topic")
    assert isinstance(redacted, nio.RoomRedactResponse), redacted
    with pytest.raises(MessageGone, match="redacted"):
        await sink.edit(delivery, posted, MessageView(delivery.event))
    with pytest.raises(MessageGone):
        await sink.edit(delivery, Posted("$no-such-event", room_id), MessageView(delivery.event))


async def test_in_an_encrypted_room_the_relation_is_in_clear_and_the_text_is_not(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer
) -> None:
    """Spec, "Editing encrypted events": ``m.relates_to`` in the cleartext part, the
    new content inside the ciphertext; the reader decrypts the edit and the server
    aggregates it."""
    alert = await alert_posted(make_sink, peers, "e2e-1", encrypted=True)
    sink, alice, room_id, posted, delivery = (
        alert.sink, alert.reader, alert.room_id, alert.posted, alert.delivery
    )  # fmt: skip
    corrected = award_event(title="Corrected in an encrypted room")
    await sink.edit(
        delivery_to(room_id, corrected, key="e2e-2", id=2), posted, MessageView(corrected)
    )
    await sink.reply(delivery, posted, MessageView(award_event(title="What changed")))
    [replacement] = relations(synapse, alice, room_id, posted.remote_id, "m.replace")
    assert replacement["type"] == "m.room.encrypted"
    assert replacement["content"]["m.relates_to"]["rel_type"] == "m.replace"
    assert "m.new_content" not in replacement["content"]  # only in the ciphertext
    [thread] = relations(synapse, alice, room_id, posted.remote_id, "m.thread")
    assert thread["type"] == "m.room.encrypted"
    edit = await alice.wait_for(room_id, by_id(replacement["event_id"]))
    assert isinstance(edit, nio.RoomMessageNotice), edit  # alice could decrypt it
    new_content = edit.source["content"]["m.new_content"]
    assert new_content["body"].startswith("Updated: Corrected in an encrypted room")


# --- the stories of issue 15, end to end ----------------------------------------------


async def story_room(
    make_sink: MakeSink, peers: MakePeer, store: SqliteStore
) -> tuple[MatrixSink, Peer, str, World]:
    """The bot in a room, and the pipeline that delivers to it."""
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink)
    destination = Destination(f"matrix:{room_id}", "matrix", room_id)
    return sink, alice, room_id, await World(store, sink, destination).start()


async def test_an_award_modified_twice_is_one_message_edited_twice_and_two_thread_replies(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer, store: SqliteStore
) -> None:
    sink, alice, room_id, world = await story_room(make_sink, peers, store)
    await world.deliver(award_new(95_900_000.0))
    await world.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    await world.deliver(award_modified(125_754_750.0, 140_000_000.0, "P00012"))
    await world.settle()
    original = await first_message(alice, sink, room_id)
    assert alice_messages(alice, sink, room_id) == [original]
    edits = relations(synapse, alice, room_id, original, "m.replace")
    replies = relations(synapse, alice, room_id, original, "m.thread")
    assert (len(edits), len(replies)) == (2, 2)
    assert (
        "Amount: $125,754,750 → $140,000,000 (+$14,245,250)"
        in latest_edit(synapse, alice, room_id, original)["body"]
    )
    assert ["P00011" in r["content"]["body"] for r in replies] == [True, False]
    assert ["P00012" in r["content"]["body"] for r in replies] == [False, True]


async def test_a_petitions_count_message_shows_the_latest_count_after_20_deltas(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer, store: SqliteStore
) -> None:
    sink, alice, room_id, world = await story_room(make_sink, peers, store)
    count = 1_000
    for n in range(20):
        count += 3
        await world.deliver(delta(count, 3, n))
    await world.settle(timeout_s=60)
    original = await first_message(alice, sink, room_id)
    assert alice_messages(alice, sink, room_id) == [original]  # one message, edited
    shown = latest_edit(synapse, alice, room_id, original)["body"]
    assert shown.startswith("+60 signatures (1,060 total)")
    assert "Count: 1,060" in shown
    assert 1 <= len(relations(synapse, alice, room_id, original, "m.replace")) < 19


async def test_three_sources_of_one_story_are_one_message_listing_them(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer, store: SqliteStore
) -> None:
    sink, alice, room_id, world = await story_room(make_sink, peers, store)
    article = "https://next.ink/167245/ice-palantir-immigrationos/"
    post = "https://bsky.app/profile/next.ink/post/3lgxq4vbzyc2a"
    await world.deliver(
        report("next-ink", "Palantir's ImmigrationOS: what ICE buys", article, name="Next")
    )
    await world.deliver(
        report(
            "next-bluesky", "Read our investigation", post, name="Next (Bluesky)", links=[article]
        )
    )
    await world.deliver(
        report(
            "wired",
            "Palantir's ImmigrationOS: What ICE Buys - Wired",
            "https://www.wired.com/story/x/",
            name="Wired",
        )
    )
    original = await first_message(alice, sink, room_id)
    assert alice_messages(alice, sink, room_id) == [original]
    shown = latest_edit(synapse, alice, room_id, original)
    assert (
        f"Also reported by: Next (Bluesky) {post}, Wired https://www.wired.com/story/x/"
        in shown["body"]
    )
    assert (
        f'<p>Also reported by <a href="{post}">Next (Bluesky)</a>, '
        '<a href="https://www.wired.com/story/x/">Wired</a></p>' in shown["formatted_body"]
    )


async def test_a_redacted_original_falls_back_to_a_new_message(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer, store: SqliteStore
) -> None:
    sink, alice, room_id, world = await story_room(make_sink, peers, store)
    await world.deliver(award_new(95_900_000.0))
    original = await first_message(alice, sink, room_id)
    await alice.client.room_redact(room_id, original)
    await world.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    await world.settle()
    await alice.wait_until(lambda: len(alice_messages(alice, sink, room_id)) == 2)
    _, anew = alice_messages(alice, sink, room_id)
    content = (await alice.wait_for(room_id, by_id(anew))).source["content"]
    assert "Amount: $95,900,000 → $125,754,750 (+$29,854,750)" in content["body"]
    assert "m.relates_to" not in content
    assert relations(synapse, alice, room_id, original, "m.replace") == []


def alice_messages(reader: Peer, sink: MatrixSink, room_id: str) -> list[str]:
    """The bot's messages the reader saw, edits and thread replies left out."""
    return [
        e.event_id
        for e in reader.messages(room_id, str(sink.session.client.user_id))
        if "m.relates_to" not in e.source.get("content", {})
    ]


async def first_message(reader: Peer, sink: MatrixSink, room_id: str) -> str:
    await reader.wait_until(lambda: bool(alice_messages(reader, sink, room_id)))
    return alice_messages(reader, sink, room_id)[0]


async def test_a_crash_between_the_edit_and_its_record_edits_once(
    make_sink: MakeSink, peers: MakePeer, synapse: SynapseServer, store: SqliteStore
) -> None:
    """The process dies after Synapse took the edit and the thread reply and before the
    outbox recorded them: the retried delivery sends both again with the same
    transaction ids, and the room shows one edit and one reply."""
    sink, alice, room_id, world = await story_room(make_sink, peers, store)
    await world.deliver(award_new(95_900_000.0))
    await world.commit(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    [claimed] = await store.claim_deliveries(datetime.now(UTC), owner="dead", lease_s=60, limit=5)
    messages = world.dispatcher.messages
    await messages.apply(sink, await messages.plan(sink, claimed))  # ...and it dies here
    await store.release_owner("dead")
    await world.settle()
    original = await first_message(alice, sink, room_id)
    assert len(relations(synapse, alice, room_id, original, "m.replace")) == 1
    assert len(relations(synapse, alice, room_id, original, "m.thread")) == 1
