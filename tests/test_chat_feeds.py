"""``add-feed`` / ``remove-feed`` / ``feeds`` through the real runtime: real SQLite,
the real HTTP client and SSRF guard, a loopback feed server, the real scheduler and
dispatcher (a recording console sink stands for the room)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alerts.chat.commands import Command, CommandContext, CommandError, parse
from alerts.chat.feeds import chat_source_id
from alerts.cli import main
from alerts.config import Settings, load_config
from alerts.model import DeliveryState, UpdateStyle, utcnow
from alerts.runtime import Runtime
from alerts.scheduler import Timing
from alerts.status.view import snapshot as status_snapshot

from .pg_support import fresh_database
from .support import FeedServer, RecordingSink, feed_server, write_config

ROOM = CommandContext(sink="console", target="room-1", user="@mod:hs", may_manage=True)
MEMBER = CommandContext(sink="console", target="room-1", user="@someone:hs", may_manage=False)
ALLOWED = (
    '\n[chat]\nallow_add_sources = true\nadd_source_domains = ["127.0.0.1", "example.org"]\n'
    "add_source_quota = 2\nallow_private_network = true\n"
)


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as served:
        served.feed("room", "a", "b")
        served.feeds["room"].items.append(("c", "@everyone \u202eclick <b>here</b>"))
        yield served


async def running(tmp_path: Path, chat: str, database_url: str = "") -> AsyncIterator[Runtime]:
    """The real runtime (as ``support.runtime_on``) on SQLite, or on ``database_url``."""
    config = write_config(tmp_path, {}, extra=chat)
    (config / "sources.d" / "feeds.toml").unlink()  # no config sources: empty is an error
    settings = Settings(
        config_dir=config,
        database_url=database_url or f"sqlite:///{tmp_path / 'alerts.db'}",
        data_dir=tmp_path / "data",
    )
    runtime = await Runtime.open(
        settings,
        load_config(config),
        sink_overrides={"console": RecordingSink()},
        timing=Timing(jitter=0.0, first_spread_s=0.0),
    )
    try:
        await runtime._start_sinks()
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    """Chat sources are stored: every test on both backends."""
    if request.param == "sqlite":
        async for opened in running(tmp_path, ALLOWED):
            yield opened
        return
    async with fresh_database() as url:
        async for opened in running(tmp_path, ALLOWED, url):
            yield opened


async def cli(*argv: str) -> int:
    """``alerts …`` as the operator runs it beside the service (its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


def sink(runtime: Runtime) -> RecordingSink:
    recording = runtime.sinks["console"]
    assert isinstance(recording, RecordingSink)
    return recording


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "add-feed https://example.org/feed.xml",
            Command("add-feed", feed="https://example.org/feed.xml"),
            id="url",
        ),
        pytest.param(
            "add-feed https://example.org/f?a=1&b=2 News updates=reply",
            Command(
                "add-feed",
                topic="news",
                updates=UpdateStyle.REPLY,
                feed="https://example.org/f?a=1&b=2",
            ),
            id="query-topic-updates",
        ),
        pytest.param("remove-feed chat-0123", Command("remove-feed", feed="chat-0123"), id="rm"),
        pytest.param("feeds", Command("feeds"), id="feeds"),
    ],
)
def test_parse_feed_verbs(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("add-feed", "usage: add-feed URL", id="no-url"),
        pytest.param("add-feed https://x.org/f a b", "usage: add-feed URL", id="extra"),
        pytest.param("add-feed https://x.org/f kinds=new", "unknown option(s) kinds", id="opt"),
        pytest.param("add-feed https://x.org/f updates=maybe", "updates must be", id="updates"),
        pytest.param("remove-feed", "usage: remove-feed ID|URL", id="rm-nothing"),
        pytest.param("feeds now", "feeds takes no arguments", id="feeds-args"),
    ],
)
def test_parse_feed_errors(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        parse(text)


async def test_add_feed_needs_the_operators_switch(tmp_path: Path, server: FeedServer) -> None:
    async for runtime in running(tmp_path, ""):
        reply = await runtime.commands.handle_text(f"add-feed {server.url('room')}", ROOM)
        assert not reply.ok
        assert reply.text == "The operator has not allowed adding feeds from chat."
        assert await runtime.store.list_chat_sources() == []
        assert server.hits["room"] == 0  # refused before anything was fetched


@pytest.mark.parametrize(
    ("text", "ctx", "expected"),
    [
        pytest.param(
            "add-feed {url}", MEMBER, "only room moderators can add-feed", id="not-a-moderator"
        ),
        pytest.param(
            "add-feed https://evil.example.net/feed.xml",
            ROOM,
            "Feeds from evil.example.net are not allowed here; allowed: 127.0.0.1, example.org.",
            id="disallowed-domain",
        ),
        pytest.param(
            "add-feed https://notexample.org/feed.xml",
            ROOM,
            "Feeds from notexample.org are not allowed here",
            id="suffix-is-not-a-subdomain",
        ),
        pytest.param("add-feed ftp://example.org/f", ROOM, "scheme 'ftp'", id="not-http"),
        pytest.param("add-feed {url} nosuchtopic", ROOM, "unknown topic", id="unknown-topic"),
        pytest.param(
            "add-feed http://127.0.0.1:9/nothing.xml", ROOM, "Could not read that feed", id="dead"
        ),
    ],
)
async def test_add_feed_refusals_store_nothing(
    runtime: Runtime, server: FeedServer, text: str, ctx: CommandContext, expected: str
) -> None:
    reply = await runtime.commands.handle_text(text.format(url=server.url("room")), ctx)
    assert not reply.ok
    assert expected in reply.text
    assert await runtime.store.list_chat_sources() == []
    assert await runtime.store.list_subscriptions() == []


async def test_loopback_is_refused_without_the_chat_opt_in(
    tmp_path: Path, server: FeedServer
) -> None:
    # The operator allows the hosts but not private addresses: the SSRF guard refuses
    # a literal loopback address at once and a name resolving to one when connecting.
    chat = ALLOWED.replace("allow_private_network = true", "") + "[http]\n"
    chat = chat.replace('"example.org"]', '"example.org", "localhost"]')
    async for runtime in running(tmp_path, chat):
        literal = await runtime.commands.handle_text(f"add-feed {server.url('room')}", ROOM)
        assert (literal.ok, literal.text) == (False, "Refused: 127.0.0.1 is a loopback address.")
        named = server.url("room").replace("127.0.0.1", "localhost")
        resolved = await runtime.commands.handle_text(f"add-feed {named}", ROOM)
        assert not resolved.ok
        assert resolved.text.startswith("Could not read that feed: ")
        assert "loopback" in resolved.text
        assert server.hits["room"] == 0
        assert await runtime.store.list_chat_sources() == []


async def test_added_feed_is_dry_run_then_polled_and_delivered(
    runtime: Runtime, server: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.url("room")
    reply = await runtime.commands.handle_text(f"add-feed {url} news", ROOM)
    source_id = chat_source_id("console:room-1", url)
    assert reply.ok, reply.text
    lines = reply.text.splitlines()
    assert lines[0] == f"Added feed {source_id} (127.0.0.1) for this room."
    assert lines[1] == "It lists 3 items now:"
    # Newest first; the stranger's title is one neutral line: no bidi override, and
    # the mass mention is broken (the platforms' replies mention no one either).
    assert lines[2] == "- @\u200beveryone click here"  # markup: the feed reader drops it
    assert lines[3:5] == ["- Item b", "- Item a"]
    assert server.hits["room"] == 1

    # Dry run: nothing stored as seen, nothing sent.
    assert await runtime.store.load_items(source_id) == {}
    assert sink(runtime).sent == []
    [added] = await runtime.store.list_chat_sources("console:room-1")
    assert (added.url, added.topic, added.added_by) == (url, "news", "@mod:hs")
    [sub] = await runtime.store.list_subscriptions("console:room-1")
    assert sub.source == source_id

    # The running scheduler has it, and the store's active set: no restart.
    assert runtime.scheduler.specs[source_id].url == url
    assert runtime.scheduler.specs[source_id].topics == ()  # it feeds no topic
    assert source_id in {r.source_id for r in await runtime.store.list_sources()}

    # The status page lists it with the configured sources.
    page = await status_snapshot(
        store=runtime.store, config=runtime.polled_config, now=utcnow(), instance="t"
    )
    [shown] = [v for v in page.sources if v.id == source_id]
    assert (shown.kind, shown.label, shown.topics) == ("feed", url, ())

    baseline = await runtime.scheduler.poll_now(source_id)
    assert baseline.ok and baseline.baseline and baseline.events == ()
    server.add("room", "d")
    later = await runtime.scheduler.poll_now(source_id)
    assert [e.title for e in later.events] == ["Item d"]
    await runtime.dispatcher.drain(timeout_s=10)
    [delivered] = sink(runtime).sent
    assert (delivered.destination.id, delivered.event.title) == ("console:room-1", "Item d")
    # The config's console route (topic news) does not get a room's feed.
    assert sink(runtime).titles("console") == []

    listed = await runtime.commands.handle_text("feeds", MEMBER)
    assert listed.ok
    assert f"- {source_id} {url} topic=news (added by @mod:hs on " in listed.text

    settings = runtime.settings
    argv = ["--config", str(settings.config_dir), "--database-url", settings.database_url]
    code = await cli(*argv, "sources")
    out = capsys.readouterr().out
    assert code == 0
    assert f"{source_id}  feed (chat)" in out
    assert "Added from chat" in out
    assert f"{source_id}  console:room-1  @mod:hs" in out


async def test_quota_then_remove_feed(runtime: Runtime, server: FeedServer) -> None:
    urls = [server.feed(name, "x") for name in ("one", "two", "three")]
    for url in urls[:2]:
        assert (await runtime.commands.handle_text(f"add-feed {url}", ROOM)).ok
    over = await runtime.commands.handle_text(f"add-feed {urls[2]}", ROOM)
    assert (over.ok, over.text) == (
        False,
        "This room has added 2 feeds, its quota; remove one first (remove-feed ID).",
    )
    again = await runtime.commands.handle_text(f"add-feed {urls[0]}", ROOM)
    assert not again.ok and "already has that feed" in again.text
    other = CommandContext(sink="console", target="room-2", user="@other:hs", may_manage=True)
    assert (await runtime.commands.handle_text(f"add-feed {urls[2]}", other)).ok

    first = chat_source_id("console:room-1", urls[0])
    refused = await runtime.commands.handle_text(f"remove-feed {first}", MEMBER)
    assert not refused.ok
    not_ours = await runtime.commands.handle_text(
        f"remove-feed {chat_source_id('console:room-2', urls[2])}", ROOM
    )
    assert not not_ours.ok and "This room has no feed" in not_ours.text

    secret = server.url("one") + "?token=hunter2"
    with_token = await runtime.commands.handle_text(f"add-feed {secret}", other)
    assert with_token.ok
    listed = await runtime.commands.handle_text("feeds", other)
    assert "token=***" in listed.text and "hunter2" not in listed.text  # others read it too
    gone = await runtime.commands.handle_text(f"remove-feed {urls[0]}", ROOM)  # by URL
    assert gone.ok and gone.text.startswith(f"Removed feed {first} ")
    assert first not in runtime.scheduler.specs
    assert first not in {r.source_id for r in await runtime.store.list_sources()}
    assert [s.source for s in await runtime.store.list_subscriptions("console:room-1")] == [
        chat_source_id("console:room-1", urls[1])
    ]
    assert (await runtime.commands.handle_text(f"add-feed {urls[2]}", ROOM)).ok  # room again

    # unsubscribe all stops the room's topics; its feeds stay until remove-feed.
    assert (await runtime.commands.handle_text("subscribe news", ROOM)).ok
    dropped = await runtime.commands.handle_text("unsubscribe all", ROOM)
    assert dropped.text == "Unsubscribed from all (1 subscription)."
    kept = {s.source for s in await runtime.store.list_subscriptions("console:room-1")}
    assert kept == {s.id for s in await runtime.store.list_chat_sources("console:room-1")}
    assert len(kept) == 2


async def test_removed_feed_parks_pending_alerts_and_operator_removes(
    runtime: Runtime, server: FeedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.url("room")
    assert (await runtime.commands.handle_text(f"add-feed {url}", ROOM)).ok
    source_id = chat_source_id("console:room-1", url)
    await runtime.scheduler.poll_now(source_id)
    server.add("room", "d")
    assert len((await runtime.scheduler.poll_now(source_id)).events) == 1
    # Not dispatched yet: the room removes the feed; its pending alert is kept, dead.
    assert (await runtime.commands.handle_text(f"remove-feed {source_id}", ROOM)).ok
    [dead] = await runtime.store.list_deliveries(state=DeliveryState.DEAD)
    assert dead.last_error == "feed removed by @mod:hs"
    await runtime.dispatcher.drain(timeout_s=5)
    assert sink(runtime).sent == []

    assert (await runtime.commands.handle_text(f"add-feed {url}", ROOM)).ok
    settings = runtime.settings
    argv = ["--config", str(settings.config_dir), "--database-url", settings.database_url]
    assert await cli(*argv, "remove-source", source_id) == 0
    assert f"removed {source_id}" in capsys.readouterr().out
    assert await runtime.store.list_chat_sources() == []
    assert await cli(*argv, "remove-source", source_id) == 1
    assert "no source" in capsys.readouterr().err
    assert await runtime.refresh_chat_sources()  # the running service lets it go
    assert source_id not in runtime.scheduler.specs
