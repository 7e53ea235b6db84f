"""Personal subscriptions in the bot's DMs and ``/alerts add-feed``: the real
discord.py over the fake (DM channels, ``POST /users/@me/channels``, interactions
with ``user`` and ``context`` 1, deferred answers and follow-ups), the real runtime
(SQLite, HTTP client and SSRF guard, scheduler, dispatcher) and a loopback feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from discord_helpers import EPHEMERAL, MEMBER, make_event
from discord_helpers import shown as embed_text
from fake_discord import MANAGE_CHANNELS, FakeDiscord
from test_discord_e2e import commit
from tests.hostile.checks import markdown_problems, text_problems
from tests.hostile.world import HOSTILE_TITLES, json_feed, load_corpus
from tests.support import FeedServer, FeedState, feed_server, runtime_on, write_config

from alerts.chat.commands import CommandService
from alerts.chat.feeds import chat_source_id, literal_for, shown
from alerts.dispatch import Dispatcher
from alerts.model import EventKind
from alerts.platforms.discord import DiscordSink
from alerts.route import Router
from alerts.runtime import Runtime
from alerts.store import Store

CHAT = (
    '\n[topics.contracts]\ndescription = "Federal contract awards"\n'
    '\n[chat]\nallow_add_sources = true\nadd_source_domains = ["127.0.0.1"]\n'
    "allow_private_network = true\n"
)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = write_config(tmp_path, {}, extra=CHAT)
    (config / "sources.d" / "feeds.toml").unlink()
    async with runtime_on(tmp_path, config) as opened:
        yield opened


@pytest.fixture
def store(runtime: Runtime) -> Store:
    """The bot fixture of conftest listens with the runtime's store and commands."""
    return runtime.store


@pytest.fixture
def service(runtime: Runtime) -> CommandService:
    return runtime.commands


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as served:
        served.feed("room", "a", "b")
        yield served


async def slash(
    fake: FakeDiscord,
    channel: int,
    subcommand: str,
    *,
    user: int | None = None,
    permissions: int = MANAGE_CHANNELS,
    **options: str,
) -> dict[str, Any]:
    answer = await fake.interact(
        channel_id=channel,
        user_id=user or fake.snowflake(),
        permissions=permissions,
        subcommand=subcommand,
        options=options,
    )
    assert answer["data"]["flags"] & EPHEMERAL
    assert answer["data"]["allowed_mentions"] == {"parse": []}
    return answer


async def test_dm_subscribe_delivers_to_the_dm(
    fake: FakeDiscord, bot: DiscordSink, store: Store
) -> None:
    user = fake.snowflake()
    dm = fake.add_dm(user)  # the user opened a DM with the bot
    # No Manage Channels in a DM (Discord sends no member permissions there): the
    # user's own DM needs no rights.
    answer = await slash(fake, dm, "subscribe", user=user, permissions=0, topic="contracts")
    assert answer["type"] == 4
    assert answer["data"]["content"] == "Subscribed: contracts"
    assert any(h.path == "/users/@me/channels" for h in fake.hits)  # create_dm
    row = await store.get_destination(f"discord:{dm}")
    assert row is not None
    assert row.destination.options == {"dm_user": str(user)}

    router = Router()
    event = make_event(key="award-dm", kind=EventKind.NEW, topics=("contracts",), id=None)
    assert await commit(store, router, event) == (f"discord:{dm}",)
    await Dispatcher(store=store, sinks={"discord": bot}, owner="t").drain(timeout_s=10)
    [message] = fake.messages_in(dm)
    assert (
        embed_text(message.embeds[0]["title"])
        == "Palantir Technologies: ImmigrationOS modification"
    )
    assert message.payload["allowed_mentions"] == {"parse": []}

    listed = await slash(fake, dm, "list", user=user, permissions=0)
    assert listed["data"]["content"] == "Subscriptions:\n- contracts"


async def test_add_feed_in_a_channel_needs_manage_channels(
    fake: FakeDiscord, bot: DiscordSink, store: Store, channel: int, server: FeedServer
) -> None:
    user = fake.snowflake()
    url = server.url("room")
    answer = await slash(fake, channel, "add-feed", user=user, permissions=MEMBER, url=url)
    expected = "Sorry, only room moderators can add-feed."
    assert answer["data"]["content"] == expected
    assert await store.list_chat_sources() == []
    assert server.hits["room"] == 0


async def test_add_feed_is_polled_and_delivered_then_removed(
    fake: FakeDiscord,
    bot: DiscordSink,
    runtime: Runtime,
    channel: int,
    server: FeedServer,
) -> None:
    url = server.url("room")
    answer = await slash(fake, channel, "add-feed", url=url, topic="contracts")
    assert answer["type"] == 5  # deferred (the feed is fetched), then a follow-up
    source_id = chat_source_id(f"discord:{channel}", url)
    lines = answer["data"]["content"].splitlines()
    assert lines[:4] == [
        f"Added feed {source_id} (127.0.0.1) for this room.",
        "It lists 2 items now:",
        "- Item b",
        "- Item a",
    ]
    assert fake.messages_in(channel)[-1].payload["flags"] & EPHEMERAL  # only they see it

    await runtime.scheduler.poll_now(source_id)  # baseline: nothing sent
    server.add("room", "c")
    assert [e.title for e in (await runtime.scheduler.poll_now(source_id)).events] == ["Item c"]
    runtime.dispatcher.sinks = {"discord": bot}
    await runtime.dispatcher.drain(timeout_s=10)
    alerts = [m for m in fake.messages_in(channel) if m.embeds]
    assert [embed_text(m.embeds[0]["title"]) for m in alerts] == ["Item c"]

    listed = await slash(fake, channel, "feeds", permissions=MEMBER)
    assert f"- {source_id} {url} topic=contracts" in listed["data"]["content"]
    gone = await slash(fake, channel, "remove-feed", feed=source_id)
    assert gone["data"]["content"].startswith(f"Removed feed {source_id}")
    assert await runtime.store.list_chat_sources() == []
    assert source_id not in runtime.scheduler.specs


async def test_add_feed_in_a_dm_without_rights_and_refusals(
    fake: FakeDiscord, bot: DiscordSink, runtime: Runtime, server: FeedServer
) -> None:
    user = fake.snowflake()
    dm = fake.add_dm(user)
    refused = await slash(
        fake, dm, "add-feed", user=user, permissions=0, url="https://evil.example.net/f.xml"
    )
    assert refused["data"]["content"].startswith("Feeds from evil.example.net are not allowed")
    added = await slash(fake, dm, "add-feed", user=user, permissions=0, url=server.url("room"))
    assert added["data"]["content"].startswith("Added feed chat-")
    [stored] = await runtime.store.list_chat_sources(f"discord:{dm}")
    assert stored.added_by == f"user{user % 1000}"


def reply_problems(content: str) -> list[str]:
    """What Discord would read as markup or mentions in the lines of a reply that
    show a feed's titles (``- `` then the title), per tests/hostile's rules."""
    problems = []
    for line in content.splitlines():
        if line.startswith("- "):
            problems += markdown_problems("title", line[2:])
            problems += text_problems("title", line[2:], multiline=False)
    return problems


async def test_add_feed_reply_shows_hostile_titles_as_text(
    fake: FakeDiscord, bot: DiscordSink, runtime: Runtime, channel: int, server: FeedServer
) -> None:
    # Through the fake (whose payloads are checked against Discord's OpenAPI spec):
    # a feed added from chat whose titles are masked links, tokens, mentions, NUL and
    # bidi overrides; the ephemeral add-feed reply shows them as plain text.
    server.feeds["hostile"] = FeedState(body=json_feed(HOSTILE_TITLES))
    answer = await slash(fake, channel, "add-feed", url=server.url("hostile"))
    content = answer["data"]["content"]
    assert content.splitlines()[1] == "It lists 3 items now:"
    assert reply_problems(content) == []
    assert "\\[https\\://bank.example\\]\\(https\\://phish.example/login\\)" in content
    assert "@\u200beveryone" in content
    assert answer["data"]["allowed_mentions"] == {"parse": []}


def test_every_corpus_text_is_plain_in_a_discord_feed_reply() -> None:
    # The whole tests/hostile corpus, as add-feed's reply shows a title on Discord.
    texts, _ = load_corpus("@alice:example.org")
    literal = literal_for("discord")
    failures = {
        case.id: problems
        for case in texts
        if (problems := reply_problems("- " + literal(shown(case.text))))
    }
    assert failures == {}
    assert len(texts) > 100
