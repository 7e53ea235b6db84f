"""Messages that live (issue 15), through the real router, SQLite store and dispatcher
into a sink with a platform's guarantees (``RoomSink``). The platform suites
(``tests/discord/test_discord_edits.py``, ``tests/matrix/test_edits.py``) run the
same stories against the Discord fake and a real Synapse."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.errors import RetryableSendError
from alerts.model import DeliveryState, Destination, EventKind, UpdateStyle, View
from alerts.store.sqlite import SqliteStore

from .edits_world import (
    DEFAULT_VIEW,
    T0,
    RoomSink,
    World,
    award_modified,
    award_new,
    delta,
    milestone,
    report,
)
from .support import RecordingSink

ROOM = Destination("campaign", "room", "channel-1")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def sink() -> RoomSink:
    return RoomSink()


async def world(store: SqliteStore, sink: object, view: View = DEFAULT_VIEW) -> World:
    return await World(store, sink, ROOM, view=view).start()  # type: ignore[arg-type]


# --- updates --------------------------------------------------------------------------


async def test_an_award_modified_twice_is_one_message_edited_twice_with_two_replies(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(award_new(95_900_000.0))
    await room.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    await room.deliver(award_modified(125_754_750.0, 140_000_000.0, "P00012"))
    [message] = sink.messages
    assert len(message.revisions) == 3  # the award, then edited twice
    assert message.view.event.changes == {"amount": (125_754_750.0, 140_000_000.0)}
    assert [r.event.summary for r in message.replies] == [
        "Modification P00011: IMMIGRATIONOS - CASE MANAGEMENT ENHANCEMENTS",
        "Modification P00012: IMMIGRATIONOS - CASE MANAGEMENT ENHANCEMENTS",
    ]
    # the reply says what changed and nothing else
    assert set(message.replies[1].event.fields) == {"amount", "delta"}
    sent = await store.list_deliveries(state=DeliveryState.SENT)
    assert {d.remote_id for d in sent} == {message.id}  # every delivery remembers the message


@pytest.mark.parametrize(
    ("updates", "messages", "revisions", "replies"),
    [
        pytest.param(UpdateStyle.EDIT, 1, 2, 0, id="edit"),
        pytest.param(UpdateStyle.REPLY, 1, 2, 1, id="reply"),
        pytest.param(UpdateStyle.NEW, 2, 1, 0, id="new"),
    ],
)
async def test_the_room_chooses_what_an_update_does(
    store: SqliteStore,
    sink: RoomSink,
    updates: UpdateStyle,
    messages: int,
    revisions: int,
    replies: int,
) -> None:
    room = await world(store, sink, View(updates))
    await room.deliver(award_new(95_900_000.0))
    await room.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    assert len(sink.messages) == messages
    assert len(sink.messages[0].revisions) == revisions
    assert len(sink.messages[0].replies) == replies


async def test_an_update_of_an_item_the_room_never_saw_is_a_new_message(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    [message] = sink.messages
    assert message.view.event.changes == {"amount": (95_900_000.0, 125_754_750.0)}
    assert message.replies == []
    await room.deliver(award_modified(125_754_750.0, 140_000_000.0, "P00012"))
    assert len(sink.messages) == 1 and len(sink.messages[0].revisions) == 2  # now it edits


async def test_a_sink_that_cannot_edit_gets_a_new_message_per_update(store: SqliteStore) -> None:
    recording = RecordingSink()
    room = World(store, recording, dataclasses.replace(ROOM, sink="console"))  # type: ignore[arg-type]
    await room.start()
    await room.deliver(award_new(95_900_000.0))
    await room.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    assert [d.event.kind.value for d in recording.sent] == ["new", "updated"]


# --- fallbacks ------------------------------------------------------------------------


async def test_a_deleted_original_falls_back_to_a_new_message(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(award_new(95_900_000.0))
    sink.messages[0].deleted = True  # a moderator deleted it
    await room.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    [anew] = sink.visible()
    assert anew.view.event.changes == {"amount": (95_900_000.0, 125_754_750.0)}
    assert anew.replies == []  # the new message is the news itself
    await room.deliver(award_modified(125_754_750.0, 140_000_000.0, "P00012"))
    assert [len(m.revisions) for m in sink.visible()] == [2]  # later updates edit the new one
    stats = await store.outbox_stats()
    assert (stats.pending, stats.dead) == (0, 0)


async def test_a_room_re_created_under_a_new_id_gets_a_new_message(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(award_new(95_900_000.0))
    await store.upsert_destination(dataclasses.replace(ROOM, target="channel-2"))
    await room.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    assert [(m.room, len(m.revisions)) for m in sink.messages] == [
        ("channel-1", 1),
        ("channel-2", 1),
    ]


# --- counters -------------------------------------------------------------------------


async def test_a_petitions_count_is_one_message_showing_the_latest_after_20_deltas(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    count = 1_000
    for n in range(20):
        count += n + 1
        await room.commit(delta(count, n + 1, n, by_company={"Google": 1, "Microsoft": n}))
    await room.deliver()
    [message] = sink.messages
    shown = message.view.event
    assert shown.fields["count"] == count == 1_210
    assert shown.fields["delta"] == 210  # the rise since the message was posted
    assert shown.title == "+210 signatures (1,210 total)"
    assert shown.fields["by_company"] == {"Microsoft": 190, "Google": 20}
    # deltas claimed together are folded into the last one's edit
    assert sink.calls == ["post", "edit"]
    assert len(await store.list_deliveries(state=DeliveryState.SENT)) == 20


async def test_a_milestone_is_news_and_the_count_starts_a_new_message_after_it(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(delta(990, 10, 1))
    await room.deliver(delta(995, 5, 2))
    await room.deliver(milestone(1_004, 1_000), delta(1_004, 9, 3))
    assert [m.view.event.title for m in sink.messages] == [
        "+15 signatures (995 total)",
        "1,000 signatures reached",
        "+9 signatures (1,004 total)",
    ]


async def test_a_count_message_older_than_a_day_is_left_and_a_new_one_started(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(delta(990, 10, 1))
    late = dataclasses.replace(delta(1_000, 10, 2), detected_at=T0 + timedelta(hours=25))
    await room.deliver(late)
    assert [m.view.event.title for m in sink.messages] == [
        "+10 signatures (990 total)",
        "+10 signatures (1,000 total)",
    ]


async def test_counter_edits_wait_for_the_platforms_edit_limit(store: SqliteStore) -> None:
    slow = RoomSink()
    slow.edit_interval_s = 3600.0  # type: ignore[misc]
    room = await world(store, slow)
    now = datetime.now(UTC)
    await room.deliver(delta(990, 10, 1, at=now))
    await room.deliver(delta(995, 5, 2, at=now))
    assert slow.calls == ["post"]  # the edit waits, not counted as a failure
    [pending] = await store.list_deliveries(state=DeliveryState.PENDING)
    assert pending.attempts == 0 and "edit limit" in (pending.last_error or "")


async def test_a_room_that_wants_every_update_new_gets_every_delta(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink, View(UpdateStyle.NEW))
    await room.deliver(delta(990, 10, 1))
    await room.deliver(delta(995, 5, 2))
    assert len(sink.messages) == 2


# --- one story, one message -----------------------------------------------------------

ARTICLE = "https://next.ink/167245/ice-palantir-immigrationos/"


async def test_three_sources_of_one_story_give_one_message_listing_all_three(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(
        report("next-ink", "Palantir's ImmigrationOS: what ICE is buying", ARTICLE, name="Next")
    )
    post = "https://bsky.app/profile/next.ink/post/3lgxq4vbzyc2a"
    await room.deliver(
        report(
            "next-ink-bluesky",
            "Our investigation into ICE's new platform",
            post,
            name="Next (Bluesky)",
            links=[ARTICLE + "?utm_source=bluesky"],
        )
    )
    await room.deliver(
        report(
            "wired",
            "Palantir's ImmigrationOS: What ICE Is Buying - Wired",
            "https://www.wired.com/story/palantir-immigrationos/",
            name="Wired",
        )
    )
    [message] = sink.messages
    assert [(a.source, a.url) for a in message.view.also] == [
        ("Next (Bluesky)", post),
        ("Wired", "https://www.wired.com/story/palantir-immigrationos/"),
    ]
    assert message.view.event.source_id == "next-ink"  # the first report leads
    assert len(message.revisions) == 3


async def test_headlines_in_two_languages_linking_one_document_merge_by_link(
    store: SqliteStore, sink: RoomSink
) -> None:
    document = "https://www.ice.gov/doclib/foia/contracts/70CTD022FR0000170.pdf"
    room = await world(store, sink)
    await room.deliver(
        report("lemonde", "L'ICE étend son contrat avec Palantir", document, key="fr")
    )
    await room.deliver(
        report("guardian", "ICE extends its Palantir contract", document + "#page=2", key="en")
    )
    [message] = sink.messages
    assert [a.source for a in message.view.also] == ["guardian"]


async def test_two_different_stories_with_similar_headlines_stay_apart(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(
        report(
            "wired",
            "Palantir wins $30 million ICE contract for ImmigrationOS",
            "https://wired.com/a",
        )
    )
    await room.deliver(
        report(
            "404",
            "Palantir wins $96 million ICE contract for ImmigrationOS",
            "https://404media.co/b",
        )
    )
    await room.deliver(
        report(
            "verge",
            "Anduril wins $30 million ICE contract for border towers",
            "https://verge.com/c",
        )
    )
    assert len(sink.messages) == 3 and all(m.view.also == () for m in sink.messages)


async def test_near_identical_headlines_merge_within_the_window_only(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink, View(merge_window_s=48 * 3600.0))
    title = "ICE signs a $30 million deal with Palantir for ImmigrationOS"
    await room.deliver(report("wired", title, "https://wired.com/a"))
    await room.deliver(report("404", title.upper() + " | 404 Media", "https://404media.co/b"))
    late = report("verge", title, "https://verge.com/c", at=T0 + timedelta(hours=49))
    await room.deliver(late)
    assert [[a.source for a in m.view.also] for m in sink.messages] == [["404"], []]


async def test_a_petitions_alerts_are_no_stories_to_merge_with(
    store: SqliteStore, sink: RoomSink
) -> None:
    """A watched signatory's alert links the letter, as does the campaign's post
    asking people to sign: they are not one story."""
    room = await world(store, sink)
    letter = "https://iceout.tech/letter"
    signatory = dataclasses.replace(
        report("iceout-letter", "Margaret Hamilton", letter, key="margaret|palantir"),
        topics=("petition",),
    )
    await room.deliver(signatory)
    await room.deliver(
        report("twc-bluesky", "Sign the letter!", "https://bsky.app/p/1", links=[letter])
    )
    await room.deliver(dataclasses.replace(signatory, key="grace|google", title="Grace Hopper"))
    assert len(sink.messages) == 3 and all(m.view.also == () for m in sink.messages)


async def test_a_merge_window_of_zero_keeps_every_report_apart(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink, View(merge_window_s=0.0))
    await room.deliver(report("next-ink", "A", ARTICLE), report("wired", "B", ARTICLE))
    assert len(sink.messages) == 2


async def test_an_update_of_a_merged_report_edits_the_story_without_a_reply(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink, View(UpdateStyle.REPLY))
    await room.deliver(report("next-ink", "Story", ARTICLE, name="Next"))
    await room.deliver(report("wired", "Same story", ARTICLE, name="Wired", key="w1"))
    corrected = dataclasses.replace(
        report("wired", "Same story", "https://www.wired.com/story/x/", name="Wired", key="w1"),
        kind=EventKind.UPDATED,
    )
    await room.deliver(corrected)
    [message] = sink.messages
    assert [(a.source, a.url) for a in message.view.also] == [
        ("Wired", "https://www.wired.com/story/x/")
    ]
    assert message.replies == []


# --- a crash between the platform and the store ---------------------------------------


async def test_a_crash_after_the_edit_repeats_nothing_when_retried(
    store: SqliteStore, sink: RoomSink
) -> None:
    """kill -9 after the platform took the edit and the reply, before the outbox
    recorded them: the retried delivery edits to the same content and replies with
    the same key, which the platform shows once."""
    room = await world(store, sink)
    await room.deliver(award_new(95_900_000.0))
    await room.commit(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    [claimed] = await store.claim_deliveries(datetime.now(UTC), owner="dead", lease_s=60, limit=5)
    messages = room.dispatcher.messages
    plan = await messages.plan(sink, claimed)
    await messages.apply(sink, plan)  # ...and the process dies here, before record
    await store.release_owner("dead")
    await room.deliver()
    [message] = sink.messages
    assert len(message.revisions) == 2 and len(message.replies) == 1
    assert sink.calls == ["post", "edit", "reply", "edit", "reply"]


async def test_a_failed_reply_retries_the_whole_delivery_and_shows_each_once(
    store: SqliteStore, sink: RoomSink
) -> None:
    room = await world(store, sink)
    await room.deliver(award_new(95_900_000.0))
    sink.fail["reply"] = [RetryableSendError("503 from the homeserver")]
    await room.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    await room.settle()
    [message] = sink.messages
    assert (len(message.revisions), len(message.replies)) == (2, 1)
    assert sink.calls == ["post", "edit", "reply", "edit", "reply"]
    [update, _] = await store.list_deliveries(state=DeliveryState.SENT)
    assert update.attempts == 2  # one failure counted, then sent
