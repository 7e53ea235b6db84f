"""Digests on Discord (issue 16): the real discord.py against the fake, every request
checked against Discord's OpenAPI spec. A channel on ``digest=daily@09:00`` in
America/New_York gets its held alerts as one embed at 09:00 local, grouped by topic
and source with links, strangers' text escaped and no mention allowed; a milestone
marked urgent is posted at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from discord_helpers import MEMBER, shown
from fake_discord import MANAGE_CHANNELS, FakeDiscord
from tests.edits_world import World, award_new, milestone, report

from alerts.model import DeliveryState, Destination, Subscription
from alerts.platforms.discord import DiscordSink
from alerts.schedule import parse_schedule
from alerts.store import Store

EVENING = datetime(2026, 3, 7, 23, 0, tzinfo=UTC)  # 18:00 EST, the day before clocks change
NINE_EDT = datetime(2026, 3, 8, 13, 0, tzinfo=UTC)  # 09:00 EDT on the morning of the change


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize("urgent", ["milestone", ""])
async def test_held_alerts_become_one_digest_embed_at_nine_local(
    fake: FakeDiscord, store: Store, sink: DiscordSink, channel: int, urgent: str
) -> None:
    destination = Destination(f"discord:{channel}", "discord", str(channel))
    schedule = parse_schedule(digest="daily@09:00", tz="America/New_York", urgent=urgent)
    clock = Clock(EVENING)
    world = await World(
        store,
        sink,
        destination,
        subscription=Subscription(destination.id, schedule=schedule),
        clock=clock,
    ).start()
    await world.deliver(
        report("wire", "@everyone **ICE** [deal](https://evil.example)", "https://example.org/1"),
        report("wire", "Second", "https://example.org/2"),
        award_new(95_900_000.0),
        milestone(50_123, 50_000),
    )
    posted_at_once = fake.messages_in(channel)
    assert len(posted_at_once) == (1 if urgent else 0)

    clock.now = NINE_EDT - timedelta(seconds=1)
    await world.deliver()
    assert len(fake.messages_in(channel)) == len(posted_at_once)

    clock.now = NINE_EDT
    await world.deliver()
    await world.settle()
    digest = fake.messages_in(channel)[-1]
    assert digest.payload["allowed_mentions"] == {"parse": []}
    [embed] = digest.embeds
    held = 3 if urgent else 4
    assert shown(embed["title"]) == f"Daily digest: {held} alerts"
    fields = {shown(f["name"]): f["value"] for f in embed["fields"]}
    assert fields["Count"] == str(held)
    assert "contracts · ICE contract awards (1)" in fields
    news = fields["news · wire (2)"]
    # the title is text: markdown escaped, @everyone broken, only our links are links
    assert news.splitlines()[0] == (
        "• [@\u200beveryone \\*\\*ICE\\*\\* \\[deal\\]\\(https\\://evil.example\\)]"
        "(https://example.org/1)"
    )
    assert news.splitlines()[1] == "• [Second](https://example.org/2)"
    assert ("petition · ICEout.tech letter (1)" in fields) is not bool(urgent)
    assert await store.list_deliveries(state=DeliveryState.HELD) == []
    await world.deliver()
    assert len(fake.messages_in(channel)) == len(posted_at_once) + 1  # one digest, once


# --- /alerts subscribe … digest quiet tz urgent ----------------------------------------


async def test_subscribe_with_a_digest_stores_it_and_list_shows_it(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int, guild: int
) -> None:
    [command] = fake.commands[guild]
    subscribe = next(o for o in command["options"] if o["name"] == "subscribe")
    assert {"digest", "quiet", "tz", "urgent"} <= {o["name"] for o in subscribe["options"]}
    callback = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=MANAGE_CHANNELS,
        subcommand="subscribe",
        options={
            "topic": "letter",
            "digest": "daily@9:00",
            "tz": "Europe/Paris",
            "urgent": "milestone",
        },
    )
    expected = "letter digest=daily@09:00 tz=Europe/Paris urgent=milestone"
    assert callback["data"]["content"] == f"Subscribed: {expected}"
    [sub] = await store.list_subscriptions(f"discord:{channel}")
    assert sub.schedule == parse_schedule(
        digest="daily@09:00", tz="Europe/Paris", urgent="milestone"
    )
    listed = await fake.interact(
        channel_id=channel, user_id=fake.snowflake(), permissions=MEMBER, subcommand="list"
    )
    assert expected in listed["data"]["content"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"tz": "Europe/Pariss"}, "unknown time zone 'Europe/Pariss'", id="tz"),
        pytest.param({"quiet": "22h-7h"}, "quiet: '22h' is not a time of day", id="quiet"),
        pytest.param(
            {"digest": "weekly"}, "digest must be hourly, daily@HH:MM or off", id="digest"
        ),
    ],
)
async def test_a_bad_setting_is_refused_and_stores_nothing(
    fake: FakeDiscord,
    bot: DiscordSink,
    store: Store,
    channel: int,
    options: dict[str, str],
    message: str,
) -> None:
    callback = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=MANAGE_CHANNELS,
        subcommand="subscribe",
        options={"topic": "contracts", **options},
    )
    assert message in callback["data"]["content"]
    assert await store.list_subscriptions() == []
