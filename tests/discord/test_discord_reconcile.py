"""A retry after Discord forgot the nonce finds the first message in the channel's
history instead of posting a second one (issue 11, "Re-sends after the platform has
forgotten"). Discord keeps a nonce "in the past few minutes" (docs: Create Message,
``enforce_nonce``); the fake's window is shortened to reach past it."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from discord_helpers import make_delivery
from fake_discord import FakeDiscord

from alerts.model import MessageView, utcnow
from alerts.platforms.discord import DiscordSink


def _in(fake: FakeDiscord, channel: int) -> list[int]:
    return [m.id for m in fake.messages if m.channel_id == channel and not m.deleted]


async def test_a_retry_past_the_nonce_window_finds_the_message(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    delivery = make_delivery(channel)
    first = await sink.send(delivery)
    for n in range(3):  # later alerts in the channel: the marker is looked for among them
        await sink.send(make_delivery(channel, delivery_id=10 + n))
    fake.limits.nonce_window_s = 0.0  # Discord has forgotten the nonce
    retried = dataclasses.replace(delivery, tried_at=utcnow() - timedelta(minutes=10))
    assert await sink.send(retried) == first
    assert len(_in(fake, channel)) == 4
    footer = fake.messages[0].embeds[0]["footer"]["text"]
    assert footer.endswith(f" · ref {delivery.idempotency_key}")


async def test_without_an_earlier_try_nothing_is_looked_up(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    """A first try sends at once (no history read); shown here by what the platform
    does once it has forgotten the nonce: a second message, the duplicate that
    reconciliation exists to prevent."""
    delivery = make_delivery(channel)
    await sink.send(delivery)
    fake.limits.nonce_window_s = 0.0
    await sink.send(delivery)
    assert len(_in(fake, channel)) == 2
    assert not [h for h in fake.hits if h.method == "GET" and "/messages" in h.path]


async def test_a_message_that_never_arrived_is_sent(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    fake.limits.nonce_window_s = 0.0
    delivery = make_delivery(channel)
    retried = dataclasses.replace(delivery, tried_at=utcnow() - timedelta(minutes=10))
    sent = await sink.send(retried)
    assert _in(fake, channel) == [int(sent or 0)]


async def test_a_retried_reply_is_found_too(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    delivery = make_delivery(channel)
    posted = await sink.post(delivery, MessageView(delivery.event))
    reply = await sink.reply(delivery, posted, MessageView(delivery.event))
    fake.limits.nonce_window_s = 0.0
    retried = dataclasses.replace(delivery, tried_at=utcnow() - timedelta(minutes=10))
    assert await sink.reply(retried, posted, MessageView(delivery.event)) == reply
    assert len(_in(fake, channel)) == 2
