"""Message templates on Discord (issue 16): the real discord.py against the fake,
every request checked against Discord's OpenAPI spec. A template's output is text the
embed renderer escapes like any source text, so neither the source's text nor the
template itself can mention ``@everyone``, write a masked link or markdown; edits,
merged stories and counters keep the room's template."""

from __future__ import annotations

import re

from discord_helpers import MEMBER, shown
from fake_discord import MANAGE_CHANNELS, FakeDiscord, Message
from tests.edits_world import World, award_modified, award_new, delta, report

from alerts.chat.commands import CommandService
from alerts.model import Destination, Subscription, View
from alerts.platforms.discord import DiscordSink
from alerts.route import Router
from alerts.store import Store
from alerts.templates import Template

HOSTILE_TITLE = (
    "@everyone <a href='https://evil.example'>ICE</a> **deal** [x](https://evil.example)"
)
# A template that itself tries to ping and to write markup around the source's text.
LOUD = Template(
    "loud",
    title="@everyone {title} <@&123> [{source}](https://evil.example)",
    body="**{summary}** <b>raw</b> @here {link}",
    show_facts=False,
)
SHORT = Template("short", title="{amount} · {recipient}", body="Change: {amount}")


def only(message: Message) -> dict[str, object]:
    [embed] = message.embeds
    return embed


async def room(store: Store, sink: DiscordSink, channel: int, view: View) -> World:
    destination = Destination(f"discord:{channel}", "discord", str(channel))
    return await World(store, sink, destination, view=view).start()


async def test_a_template_cannot_ping_or_write_markup_from_the_source_or_itself(
    fake: FakeDiscord, store: Store, sink: DiscordSink, channel: int
) -> None:
    world = await room(store, sink, channel, View(template=LOUD))
    hostile = report("wire", HOSTILE_TITLE, "https://example.org/a", name="Wire @here")
    await world.deliver(hostile)
    [message] = fake.messages_in(channel)
    assert message.payload["allowed_mentions"] == {"parse": []}
    embed = only(message)
    title, description = str(embed["title"]), str(embed["description"])
    # what a member sees is the text, literally: the template's words and the source's
    assert shown(title) == (
        "@everyone @everyone <a href='https://evil.example'>ICE</a> **deal** "
        "[x](https://evil.example) <@&123> [Wire @here](https://evil.example)"
    )
    assert shown(description) == "**** <b>raw</b> @here https://example.org/a"
    for text in (title, description):
        assert "@everyone" not in text and "@here" not in text  # broken by a zero-width space
        # every character that opens markdown, a mention or a masked link is escaped
        assert re.findall(r"(?<!\\)[<>\[\]()*]", text) == []
    assert embed["url"] == "https://example.org/a"  # the only link is the event's own
    assert "fields" not in embed  # facts = false


async def test_an_edited_award_keeps_its_template_and_a_subscriptions_wins(
    fake: FakeDiscord, store: Store, sink: DiscordSink, channel: int
) -> None:
    world = await room(store, sink, channel, View(template=LOUD))
    world.router = Router([Subscription(f"discord:{channel}", template="short")])
    world.router.set_views({f"discord:{channel}": View(template=LOUD)}, {}, ("iceout-letter",))
    world.router.set_templates({"short": SHORT, "loud": LOUD})
    await world.deliver(award_new(95_900_000.0))
    await world.deliver(award_modified(95_900_000.0, 125_754_750.0, "P00011"))
    [award] = fake.messages_in(channel)  # edited in place: updates=edit by default
    assert len(award.edits) == 1
    embed = only(award)
    assert shown(str(embed["title"])) == (
        "$95,900,000 → $125,754,750 (+$29,854,750) · PALANTIR TECHNOLOGIES INC."
    )
    assert shown(str(embed["description"])).startswith("Change: $95,900,000 → $125,754,750")
    assert {shown(f["name"]) for f in embed["fields"]} >= {"Recipient", "Amount"}


async def test_a_counter_edited_by_deltas_keeps_its_template(
    fake: FakeDiscord, store: Store, sink: DiscordSink, channel: int
) -> None:
    counter = Template("count", title="{count} signatures ({change})", body="{source}")
    world = await room(store, sink, channel, View(template=counter))
    await world.deliver(delta(1_003, 3, 0))
    await world.deliver(delta(1_010, 7, 1))
    await world.settle()
    [message] = fake.messages_in(channel)
    assert message.edits  # one message, edited
    embed = only(message)
    assert shown(str(embed["title"])) == "1,010 signatures (+10)"
    assert shown(str(embed["description"])) == "ICEout.tech letter"


# --- /alerts subscribe … template ---------------------------------------------------------


async def test_subscribe_offers_the_operators_templates_and_refuses_others(
    fake: FakeDiscord,
    bot: DiscordSink,
    store: Store,
    service: CommandService,
    channel: int,
    guild: int,
) -> None:
    [command] = fake.commands[guild]
    subscribe = next(o for o in command["options"] if o["name"] == "subscribe")
    assert "template" in {o["name"] for o in subscribe["options"]}
    refused = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=MANAGE_CHANNELS,
        subcommand="subscribe",
        options={"topic": "contracts", "template": "loud"},
    )
    assert "unknown template 'loud'" in refused["data"]["content"]
    assert await store.list_subscriptions() == []
    service.templates = frozenset({"short"})
    done = await fake.interact(
        channel_id=channel,
        user_id=fake.snowflake(),
        permissions=MANAGE_CHANNELS,
        subcommand="subscribe",
        options={"topic": "contracts", "template": "short"},
    )
    assert done["data"]["content"] == "Subscribed: contracts template=short"
    [sub] = await store.list_subscriptions(f"discord:{channel}")
    assert sub.template == "short"
    listed = await fake.interact(
        channel_id=channel, user_id=fake.snowflake(), permissions=MEMBER, subcommand="list"
    )
    assert "contracts template=short" in listed["data"]["content"]
