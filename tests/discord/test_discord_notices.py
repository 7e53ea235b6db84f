"""Failure notices on Discord (issue 16): the real discord.py against the fake, every
request checked against Discord's OpenAPI spec. A notice quoting an upstream error
that carries a token, ``@everyone`` and markup is posted with the token masked and
the rest shown literally; ``/alerts subscribe`` takes ``notify_failures``."""

from __future__ import annotations

from datetime import UTC, datetime

from discord_helpers import make_delivery, shown
from fake_discord import MANAGE_CHANNELS, FakeDiscord

from alerts.notices import Notice, notice_event
from alerts.platforms.discord import DiscordSink
from alerts.store import Store

ERROR = "HTTP 503 from https://feeds.example/rss?token=hunter22secret: @everyone **down** <@&1>"


async def test_a_failure_notice_is_posted_redacted_and_inert(
    fake: FakeDiscord, sink: DiscordSink, channel: int
) -> None:
    notice = notice_event(
        Notice.FAILING,
        source_id="wire",
        label="Wire",
        topics=("news",),
        now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        failures=3,
        detail=ERROR,
    )
    await sink.send(make_delivery(channel, event=notice))
    [message] = fake.messages_in(channel)
    assert message.payload["allowed_mentions"] == {"parse": []}
    [embed] = message.embeds
    assert shown(embed["title"]) == "Source failing: Wire (3 failed polls in a row)"
    description = str(embed["description"])
    assert "hunter22secret" not in description
    assert "@everyone" not in description and "\\*\\*down\\*\\*" in description
    assert shown(description).startswith("HTTP 503 from https://feeds.example/rss?token=")


async def test_subscribe_takes_notify_failures(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int, guild: int
) -> None:
    [command] = fake.commands[guild]
    subscribe = next(o for o in command["options"] if o["name"] == "subscribe")
    [option] = [o for o in subscribe["options"] if o["name"] == "notify_failures"]
    assert option["type"] == 5  # BOOLEAN
    done = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=MANAGE_CHANNELS,
        subcommand="subscribe",
        options={"topic": "contracts", "notify_failures": True},
    )
    assert done["data"]["content"] == "Subscribed: contracts notify_failures=yes"
    [sub] = await store.list_subscriptions(f"discord:{channel}")
    assert sub.notify_failures
