"""``/alerts`` slash commands: real discord.py over the fake gateway, real SQLite store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from discord_helpers import EPHEMERAL, MEMBER
from fake_discord import MANAGE_CHANNELS, FakeDiscord

from alerts.chat.commands import CommandService
from alerts.model import Destination, EventKind, Subscription
from alerts.platforms.discord import DiscordCommands, DiscordSettings, DiscordSink
from alerts.sinks import SinkContext
from alerts.store import Store

CONTEXT = SinkContext(settings=None, store=None, data_dir=".")  # type: ignore[arg-type]


async def run(
    fake: FakeDiscord,
    channel: int,
    subcommand: str,
    *,
    permissions: int = MANAGE_CHANNELS,
    **options: str,
) -> dict[str, Any]:
    callback = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=permissions,
        subcommand=subcommand,
        options=options,
    )
    assert callback["type"] == 4
    assert callback["data"]["flags"] & EPHEMERAL
    assert callback["data"]["allowed_mentions"] == {"parse": []}
    return dict(callback["data"])


async def test_commands_synced_to_guild_with_manage_channels(
    fake: FakeDiscord, bot: DiscordSink, guild: int
) -> None:
    [command] = fake.commands[guild]
    assert command["name"] == "alerts"
    assert int(command["default_member_permissions"]) == MANAGE_CHANNELS
    subcommands = {o["name"]: o for o in command["options"]}
    assert set(subcommands) == {
        "help",
        "topics",
        "list",
        "subscribe",
        "unsubscribe",
        "add-feed",
        "remove-feed",
        "feeds",
    }
    # Guild channels and the bot's DMs (InteractionContextType GUILD 0, BOT_DM 1), not
    # other people's DMs (PRIVATE_CHANNEL 2); installed to guilds only.
    assert command["contexts"] == [0, 1]
    assert command["integration_types"] == [0]
    topic = next(o for o in subcommands["subscribe"]["options"] if o["name"] == "topic")
    assert topic["autocomplete"] is True
    assert topic["required"] is True


async def test_subscribe_list_unsubscribe_change_the_store(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int, guild: int
) -> None:
    reply = await run(
        fake, channel, "subscribe", topic="contracts", kinds="new,updated", keywords="palantir"
    )
    assert reply["content"] == "Subscribed: contracts kinds=new,updated keywords=palantir"
    [sub] = await store.list_subscriptions(f"discord:{channel}")
    assert sub.topic == "contracts"
    assert sub.kinds == frozenset({EventKind.NEW, EventKind.UPDATED})
    assert sub.include == ("palantir",)
    row = await store.get_destination(f"discord:{channel}")
    assert row is not None
    assert row.destination.options == {"guild_id": str(guild)}

    listed = await run(fake, channel, "list", permissions=MEMBER)
    assert "contracts kinds=new,updated keywords=palantir" in listed["content"]

    gone = await run(fake, channel, "unsubscribe", topic="contracts")
    assert gone["content"].startswith("Unsubscribed from contracts")
    assert await store.list_subscriptions(f"discord:{channel}") == []


async def test_subscribe_with_min_change_and_keywords(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int
) -> None:
    reply = await run(
        fake, channel, "subscribe", topic="contracts", min_change="1M", keywords="palantir"
    )
    assert reply["content"] == "Subscribed: contracts keywords=palantir min_change=1,000,000"
    [sub] = await store.list_subscriptions(f"discord:{channel}")
    assert (sub.include, sub.min_change) == (("palantir",), 1_000_000.0)
    bad = await run(fake, channel, "subscribe", topic="contracts", keywords="re:(a")
    assert "keywords: regular expression '(a': missing )" in bad["content"]


@pytest.mark.parametrize(
    ("subcommand", "expected"),
    [
        pytest.param("help", "subscribe TOPIC", id="help"),
        pytest.param("topics", "- contracts: Federal contract awards", id="topics"),
        pytest.param("list", "This room has no subscriptions", id="list-empty"),
    ],
)
async def test_read_only_commands(
    fake: FakeDiscord, bot: DiscordSink, channel: int, subcommand: str, expected: str
) -> None:
    reply = await run(fake, channel, subcommand, permissions=MEMBER)
    assert expected in reply["content"]


@pytest.mark.parametrize(
    ("subcommand", "options"),
    [
        pytest.param("subscribe", {"topic": "contracts"}, id="subscribe"),
        pytest.param("unsubscribe", {"topic": "all"}, id="unsubscribe"),
    ],
)
async def test_member_without_manage_channels_is_refused(
    fake: FakeDiscord,
    bot: DiscordSink,
    store: Store,
    service: CommandService,
    channel: int,
    subcommand: str,
    options: dict[str, str],
) -> None:
    await run(fake, channel, "subscribe", topic="letter")
    reply = await run(fake, channel, subcommand, permissions=MEMBER, **options)
    assert "only room moderators" in reply["content"]
    assert [s.topic for s in await store.list_subscriptions(f"discord:{channel}")] == ["letter"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"topic": "weather"}, "unknown topic 'weather'", id="unknown-topic"),
        pytest.param({"topic": "contracts", "kinds": "bogus"}, "unknown event kind", id="bad-kind"),
        pytest.param(
            {"topic": "contracts", "min_amount": "lots"}, "min_amount must be", id="bad-amount"
        ),
    ],
)
async def test_bad_subscribe_stores_nothing(
    fake: FakeDiscord,
    bot: DiscordSink,
    store: Store,
    channel: int,
    options: dict[str, str],
    message: str,
) -> None:
    reply = await run(fake, channel, "subscribe", **options)
    assert message in reply["content"]
    assert await store.list_subscriptions() == []


@pytest.mark.parametrize(
    ("subcommand", "typed", "expected"),
    [
        pytest.param("subscribe", "con", ["contracts"], id="subscribe-prefix"),
        pytest.param("subscribe", "", ["contracts", "letter"], id="subscribe-all-topics"),
        pytest.param("unsubscribe", "a", ["all"], id="unsubscribe-all"),
    ],
)
async def test_topic_autocomplete(
    fake: FakeDiscord,
    bot: DiscordSink,
    channel: int,
    subcommand: str,
    typed: str,
    expected: list[str],
) -> None:
    callback = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=MANAGE_CHANNELS,
        subcommand=subcommand,
        options={"topic": typed},
        autocomplete="topic",
    )
    assert callback["type"] == 8
    assert [c["value"] for c in callback["data"]["choices"]] == expected


async def test_mentions_in_replies_are_inert(
    fake: FakeDiscord, bot: DiscordSink, channel: int
) -> None:
    reply = await run(fake, channel, "subscribe", topic="contracts", keywords="@everyone")
    assert "@everyone" in reply["content"]  # shown, but allowed_mentions parses nothing


async def test_leaving_a_guild_drops_its_subscriptions(
    fake: FakeDiscord, bot: DiscordSink, store: Store, guild: int, channel: int
) -> None:
    elsewhere = Destination(
        "discord:42424242424242424", "discord", "42424242424242424", {"guild_id": "1"}
    )
    await store.upsert_destination(elsewhere)
    await store.add_subscription(Subscription(elsewhere.id, topic="letter"))
    await run(fake, channel, "subscribe", topic="contracts")
    await fake.remove_guild(guild)
    for _ in range(100):
        if not await store.list_subscriptions(f"discord:{channel}"):
            break
        await asyncio.sleep(0.02)
    assert await store.list_subscriptions(f"discord:{channel}") == []
    assert [s.topic for s in await store.list_subscriptions()] == ["letter"]


@pytest.mark.parametrize(
    ("guilds", "global_commands", "expected"),
    [
        pytest.param(True, True, {None}, id="global-option"),
        pytest.param(False, False, {None}, id="no-guilds-means-global"),
        pytest.param(True, False, {"guild"}, id="configured-guilds"),
    ],
)
async def test_command_sync_targets(
    fake: FakeDiscord,
    guild: int,
    service: CommandService,
    guilds: bool,
    global_commands: bool,
    expected: set[object],
) -> None:
    settings = DiscordSettings(
        token=fake.token, guilds=[guild] if guilds else [], global_commands=global_commands
    )
    sink = DiscordSink(context=CONTEXT, settings=settings)
    await sink.start()
    try:
        front = DiscordCommands(
            sink.session.client, service, guilds=settings.guilds, global_commands=global_commands
        )
        await front.sync()
    finally:
        await sink.close()
    targets = {"guild" if g == guild else g for g in fake.commands}
    assert targets == expected
    assert all(cmds[0]["name"] == "alerts" for cmds in fake.commands.values())


async def test_store_failure_gets_a_polite_reply(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int
) -> None:
    await store.close()  # the database went away
    reply = await run(fake, channel, "list")
    assert reply["content"].startswith("Sorry, that failed on our side")
