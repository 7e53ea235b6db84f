"""Messages that live, on Discord (issue 15): the real discord.py against the fake,
every request and response checked against Discord's OpenAPI spec."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from discord_helpers import make_delivery, make_event, shown
from fake_discord import FORUM, FakeDiscord, Fault, Limits, Message
from tests.edits_world import World, award_modified, award_new, delta, report

from alerts.errors import MessageGone
from alerts.model import Destination, MessageView, Posted, UpdateStyle
from alerts.platforms.discord import DiscordSettings, DiscordSink, DiscordWebhookSink
from alerts.sinks import SinkContext
from alerts.store import Store

AMOUNT_BEFORE, AMOUNT_AFTER, AMOUNT_LAST = 95_900_000.0, 125_754_750.0, 140_000_000.0


def fields_of(message: Message) -> dict[str, str]:
    [embed] = message.embeds
    return {shown(f["name"]): shown(f["value"]) for f in embed.get("fields", [])}


def title_of(message: Message) -> str:
    [embed] = message.embeds
    return shown(embed["title"])


@pytest.fixture
async def webhook_sink(
    fake: FakeDiscord, channel: int, tmp_path: Path
) -> AsyncIterator[DiscordWebhookSink]:
    settings = DiscordSettings(webhook_url=fake.add_webhook(channel))
    context = SinkContext(settings=None, store=None, data_dir=str(tmp_path))  # type: ignore[arg-type]
    hook = DiscordWebhookSink(context=context, settings=settings)
    await hook.start()
    try:
        yield hook
    finally:
        await hook.close()


# --- the sink's edits and replies -----------------------------------------------------


async def test_an_edit_patches_the_bots_message_to_the_new_embed(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    delivery = make_delivery(channel, event=make_event(changes={}))
    posted = await sink.post(delivery, MessageView(delivery.event))
    assert posted == Posted(str(fake.messages_in(channel)[0].id), str(channel))
    later = make_event(
        changes={"amount": (AMOUNT_BEFORE, AMOUNT_AFTER)}, fields={"amount": AMOUNT_AFTER}
    )
    await sink.edit(make_delivery(channel, delivery_id=2, event=later), posted, MessageView(later))
    await sink.edit(make_delivery(channel, delivery_id=2, event=later), posted, MessageView(later))
    [message] = fake.messages_in(channel)
    assert fields_of(message)["Amount"] == "$95,900,000 → $125,754,750 (+$29,854,750)"
    assert len(message.edits) == 2 and message.edits[0] == message.edits[1]  # the same PATCH twice
    assert message.edits[0]["allowed_mentions"] == {"parse": []}
    assert message.edited is not None


async def test_a_reply_references_the_message_and_shows_once(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    delivery = make_delivery(channel)
    posted = await sink.post(delivery, MessageView(delivery.event))
    note = MessageView(make_event(fields={"delta": 29_854_750.0}))
    first = await sink.reply(make_delivery(channel, delivery_id=2), posted, note)
    again = await sink.reply(make_delivery(channel, delivery_id=2), posted, note)
    assert first == again
    original, reply = fake.messages_in(channel)
    assert reply.reference is original and reply.nonce == "alerts-2-abc.r"
    assert reply.payload["allowed_mentions"] == {"parse": [], "replied_user": False}


@pytest.mark.parametrize(
    "gone",
    [
        pytest.param(None, id="deleted"),
        pytest.param(
            Fault(400, code=30046, path_contains="/messages/", method="PATCH"), id="too-old"
        ),
    ],
)
async def test_a_message_that_cannot_be_edited_is_gone(
    fake: FakeDiscord, sink: DiscordSink, channel: int, gone: Fault | None
) -> None:
    delivery = make_delivery(channel)
    posted = await sink.post(delivery, MessageView(delivery.event))
    if gone is None:
        fake.delete_message(posted.remote_id)
    else:
        fake.faults.append(gone)
    with pytest.raises(MessageGone):
        await sink.edit(delivery, posted, MessageView(delivery.event))


async def test_a_forum_post_is_edited_and_replied_to_in_its_thread(
    fake: FakeDiscord, sink: DiscordSink, guild: int
) -> None:
    forum = fake.add_channel(guild, "alerts-forum", type=FORUM)
    delivery = make_delivery(forum, options={"post": "forum_post"})
    posted = await sink.post(delivery, MessageView(delivery.event))
    assert posted.room == posted.remote_id  # the post's first message has the thread's id
    await sink.edit(delivery, posted, MessageView(make_event(title="Corrected")))
    await sink.reply(delivery, posted, MessageView(make_event(title="What changed")))
    starter, reply = fake.messages_in(int(posted.room))
    assert title_of(starter) == "Updated: Corrected"
    assert reply.reference is starter


async def test_a_webhook_edits_its_message_and_posts_the_note_after_it(
    fake: FakeDiscord, webhook_sink: DiscordWebhookSink, channel: int
) -> None:
    delivery = make_delivery("default", sink="discord_webhook")
    posted = await webhook_sink.post(delivery, MessageView(delivery.event))
    assert posted.room == ""  # the webhook's own channel
    await webhook_sink.edit(delivery, posted, MessageView(make_event(title="Corrected")))
    await webhook_sink.reply(delivery, posted, MessageView(make_event(title="What changed")))
    original, note = fake.messages_in(channel)
    assert (title_of(original), len(original.edits)) == ("Updated: Corrected", 1)
    assert title_of(note) == "Updated: What changed"
    fake.delete_message(original.id)
    with pytest.raises(MessageGone):
        await webhook_sink.edit(delivery, posted, MessageView(delivery.event))


async def test_a_webhook_message_in_a_thread_is_edited_there(
    fake: FakeDiscord, webhook_sink: DiscordWebhookSink, channel: int, guild: int
) -> None:
    thread = fake.add_channel(guild, "updates", type=11, parent_id=channel)
    delivery = make_delivery("default", sink="discord_webhook", options={"thread_id": str(thread)})
    posted = await webhook_sink.post(delivery, MessageView(delivery.event))
    assert posted.room == str(thread)
    await webhook_sink.edit(delivery, posted, MessageView(make_event(title="Corrected")))
    [message] = fake.messages_in(thread)
    assert title_of(message) == "Updated: Corrected"
    assert any(h.method == "PATCH" and h.status == 200 for h in fake.hits)


@pytest.mark.parametrize(
    "limits", [Limits(edits_per_channel=2, edits_window_s=1.0)], indirect=False
)
async def test_edits_keep_to_the_channels_edit_limit(
    fake: FakeDiscord, sink: DiscordSink, channel: int, limits: Limits
) -> None:
    fake.set_limits(limits)
    delivery = make_delivery(channel)
    posted = await sink.post(delivery, MessageView(delivery.event))
    started = time.monotonic()
    for n in range(6):
        await sink.edit(delivery, posted, MessageView(make_event(title=f"Revision {n}")))
    assert time.monotonic() - started >= 1.5  # three windows of two edits
    assert len(fake.messages_in(channel)[0].edits) == 6
    assert fake.invalid_beyond_first_429() == 0


# --- the stories of issue 15, end to end ----------------------------------------------


async def room(store: Store, sink: Any, channel: int, kind: str = "discord") -> World:
    target = "default" if kind == "discord_webhook" else str(channel)
    return await World(store, sink, Destination(f"{kind}:{channel}", kind, target)).start()


@pytest.mark.parametrize("kind", ["discord", "discord_webhook"])
async def test_an_award_modified_twice_is_one_message_edited_twice_and_two_replies(
    fake: FakeDiscord,
    store: Store,
    sink: DiscordSink,
    webhook_sink: DiscordWebhookSink,
    channel: int,
    kind: str,
) -> None:
    world = await room(store, sink if kind == "discord" else webhook_sink, channel, kind)
    await world.deliver(award_new(AMOUNT_BEFORE))
    await world.deliver(award_modified(AMOUNT_BEFORE, AMOUNT_AFTER, "P00011"))
    await world.deliver(award_modified(AMOUNT_AFTER, AMOUNT_LAST, "P00012"))
    award, first_note, second_note = fake.messages_in(channel)
    assert len(award.edits) == 2
    assert fields_of(award)["Amount"] == "$125,754,750 → $140,000,000 (+$14,245,250)"
    assert "P00011" in shown(first_note.embeds[0]["description"])
    assert "P00012" in shown(second_note.embeds[0]["description"])
    if kind == "discord":
        assert first_note.reference is award and second_note.reference is award


async def test_a_petitions_count_message_shows_the_latest_count_after_20_deltas(
    fake: FakeDiscord, store: Store, sink: DiscordSink, channel: int
) -> None:
    world = await room(store, sink, channel)
    count = 1_000
    for n in range(20):
        count += 3
        await world.deliver(delta(count, 3, n))  # an edit at most every second: the rest wait
    await world.settle()
    [message] = fake.messages_in(channel)
    assert title_of(message) == "+60 signatures (1,060 total)"
    assert fields_of(message)["Count"] == "1,060"
    assert 1 <= len(message.edits) < 19  # deltas that waited were folded into one edit


async def test_three_sources_of_one_story_are_one_message_listing_them(
    fake: FakeDiscord, store: Store, sink: DiscordSink, channel: int
) -> None:
    world = await room(store, sink, channel)
    article = "https://next.ink/167245/ice-palantir-immigrationos/"
    await world.deliver(
        report("next-ink", "Palantir's ImmigrationOS: what ICE buys", article, name="Next")
    )
    await world.deliver(
        report(
            "next-bluesky",
            "Read our investigation",
            "https://bsky.app/profile/next.ink/post/3lgxq4vbzyc2a",
            name="Next (Bluesky)",
            links=[article],
        )
    )
    await world.deliver(
        report(
            "wired",
            "Palantir's ImmigrationOS: What ICE Buys | Wired",
            "https://www.wired.com/story/x/",
            name="Wired",
        )
    )
    [message] = fake.messages_in(channel)
    [embed] = message.embeds
    also = embed["fields"][0]
    assert also["name"] == "Also reported by"
    assert also["value"] == (
        "[Next \\(Bluesky\\)](https://bsky.app/profile/next.ink/post/3lgxq4vbzyc2a), "
        "[Wired](https://www.wired.com/story/x/)"
    )
    assert shown(embed["footer"]["text"]).startswith("Next · new")


async def test_a_deleted_original_falls_back_to_a_new_message(
    fake: FakeDiscord, store: Store, sink: DiscordSink, channel: int
) -> None:
    world = await room(store, sink, channel)
    await world.deliver(award_new(AMOUNT_BEFORE))
    [original] = fake.messages_in(channel)
    fake.delete_message(original.id)
    await world.deliver(award_modified(AMOUNT_BEFORE, AMOUNT_AFTER, "P00011"))
    [anew] = fake.visible_in(channel)
    assert fields_of(anew)["Amount"] == "$95,900,000 → $125,754,750 (+$29,854,750)"
    await asyncio.sleep(0)
    await world.deliver(award_modified(AMOUNT_AFTER, AMOUNT_LAST, "P00012"))
    assert [len(m.edits) for m in fake.visible_in(channel)] == [1, 0]  # edited, and one reply


# --- /alerts subscribe … updates -------------------------------------------------------


async def test_subscribe_offers_updates_as_a_choice_and_stores_it(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int, guild: int
) -> None:
    [command] = fake.commands[guild]
    subscribe = next(o for o in command["options"] if o["name"] == "subscribe")
    updates = next(o for o in subscribe["options"] if o["name"] == "updates")
    assert [c["value"] for c in updates["choices"]] == ["edit", "reply", "new"]
    callback = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=1 << 4,  # Manage Channels
        subcommand="subscribe",
        options={"topic": "contracts", "updates": "new"},
    )
    assert callback["data"]["content"] == "Subscribed: contracts updates=new"
    [sub] = await store.list_subscriptions(f"discord:{channel}")
    assert sub.updates is UpdateStyle.NEW
