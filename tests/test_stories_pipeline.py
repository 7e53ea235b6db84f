"""One story, one message, through the real service (issue 15): the real feed and
Bluesky adapters polling a loopback server, the scheduler, detector, router, SQLite
outbox and dispatcher, into a sink that keeps its messages (``RoomSink``).

The shapes are the campaign's: next.ink's article in its RSS feed and its Bluesky post
sharing it (RSS 2.0 items; ``app.bsky.feed.getAuthorFeed`` with an
``app.bsky.embed.external`` card, as in ``campaign/fixtures/bluesky/shared_links.json``),
a French and an English headline linking one document, and two different stories
with similar headlines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from alerts.config import Settings, load_config
from alerts.fixture_server import FixtureServer, Reply
from alerts.runtime import Runtime
from alerts.scheduler import Timing

from .edits_world import RoomSink
from .support import LOOPBACK_OPT_IN

ARTICLE = "https://next.ink/167245/ice-palantir-immigrationos/"
DOCUMENT = "https://www.ice.gov/doclib/foia/contracts/70CTD022FR0000170.pdf"


def rss(items: Sequence[tuple[str, str, str]]) -> Reply:
    """RSS 2.0 (www.rssboard.org/rss-specification): guid, title, link per item."""
    body = "".join(
        f"<item><guid>{escape(guid)}</guid><title>{escape(title)}</title>"
        f"<link>{escape(link)}</link></item>"
        for guid, title, link in items
    )
    return Reply(
        body=(
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>x</title><link>https://example.org/</link><description>x</description>{body}"
            "</channel></rss>"
        ).encode(),
        content_type="application/rss+xml",
    )


def bluesky(posts: Sequence[tuple[str, str, str | None]]) -> Reply:
    """``getAuthorFeed``: each post (rkey, text, link card URI or None)."""
    did = "did:plc:z72i7hdynmk6r22z27h6tvur"
    feed = []
    for rkey, text, card in posts:
        record: dict[str, object] = {
            "$type": "app.bsky.feed.post",
            "createdAt": "2026-02-03T16:00:00.000Z",
            "text": text,
        }
        if card:
            record["embed"] = {
                "$type": "app.bsky.embed.external",
                "external": {"uri": card, "title": text, "description": ""},
            }
        feed.append(
            {
                "post": {
                    "uri": f"at://{did}/app.bsky.feed.post/{rkey}",
                    "cid": f"bafy{rkey}",
                    "author": {"did": did, "handle": "next.example.org", "displayName": "Next"},
                    "record": record,
                    "indexedAt": "2026-02-03T16:00:01.000Z",
                }
            }
        )
    return Reply.json({"feed": feed, "cursor": "x"})


CONFIG = """
[service]
contact = "tests@example.org"
jitter = 0.0
[topics.news]
[destinations.room]
sink = "console"
[[routes]]
destination = "room"
topics = ["news"]
"""


def source(sid: str, name: str, kind: str, url: str, extra: str = "") -> str:
    return (
        f'[[sources]]\nid = "{sid}"\nname = "{name}"\nkind = "{kind}"\nurl = "{url}"\n'
        f'topics = ["news"]\n{LOOPBACK_OPT_IN}{extra}\n'
    )


@pytest.fixture
async def server() -> AsyncIterator[FixtureServer]:
    async with FixtureServer() as srv:
        yield srv


@pytest.fixture
async def runtime(server: FixtureServer, tmp_path: Path) -> AsyncIterator[tuple[Runtime, RoomSink]]:
    config = tmp_path / "config"
    config.mkdir()
    base = server.base_url
    (config / "alerts.toml").write_text(
        CONFIG
        + source("next-ink", "Next", "feed", f"{base}/next.xml")
        + source("next-bluesky", "Next (Bluesky)", "bluesky", base, 'actor = "next.example.org"\n')
        + source("lemonde", "Le Monde", "feed", f"{base}/lemonde.xml")
        + source("guardian", "The Guardian", "feed", f"{base}/guardian.xml")
    )
    for path in ("/next.xml", "/lemonde.xml", "/guardian.xml"):
        server.route("GET", path, rss([]))
    server.route("GET", "/xrpc/app.bsky.feed.getAuthorFeed", bluesky([]))
    settings = Settings(
        config_dir=config, database_url=f"sqlite:///{tmp_path / 'alerts.db'}", data_dir=tmp_path
    )
    sink = RoomSink()
    rt = await Runtime.open(
        settings,
        load_config(config),
        sink_overrides={"console": sink},  # type: ignore[dict-item]
        timing=Timing(jitter=0.0, first_spread_s=0.0, idle_s=0.05),
    )
    await rt._start_sinks()
    for sid in rt.config.sources:  # the baseline: nothing is alerted
        assert (await rt.scheduler.poll_now(sid)).ok
    try:
        yield rt, sink
    finally:
        await rt.close()


async def poll(rt: Runtime, *sources: str) -> None:
    for sid in sources:
        report = await rt.scheduler.poll_now(sid)
        assert report.ok, report.error
        await rt.dispatcher.drain()


async def test_the_same_story_through_rss_and_bluesky_is_one_message(
    server: FixtureServer, runtime: tuple[Runtime, RoomSink]
) -> None:
    rt, sink = runtime
    server.route(
        "GET", "/next.xml", rss([("a1", "Palantir's ImmigrationOS: what ICE is buying", ARTICLE)])
    )
    server.route(
        "GET",
        "/xrpc/app.bsky.feed.getAuthorFeed",
        bluesky(
            [
                (
                    "3lgya1aaaaa2a",
                    "Our investigation into ICE's new platform",
                    ARTICLE + "?utm_source=bluesky",
                )
            ]
        ),
    )
    await poll(rt, "next-ink", "next-bluesky")
    [message] = sink.messages
    assert message.view.event.source_id == "next-ink"
    assert [(a.source, a.url) for a in message.view.also] == [
        ("Next (Bluesky)", "https://bsky.app/profile/next.example.org/post/3lgya1aaaaa2a")
    ]


async def test_a_french_and_an_english_headline_linking_one_document_merge_by_link(
    server: FixtureServer, runtime: tuple[Runtime, RoomSink]
) -> None:
    rt, sink = runtime
    server.route(
        "GET", "/lemonde.xml", rss([("fr", "L'ICE étend son contrat avec Palantir", DOCUMENT)])
    )
    server.route(
        "GET", "/guardian.xml", rss([("en", "ICE extends its contract with Palantir", DOCUMENT)])
    )
    await poll(rt, "lemonde", "guardian")
    [message] = sink.messages
    assert message.view.event.title == "L'ICE étend son contrat avec Palantir"
    assert [a.source for a in message.view.also] == ["The Guardian"]


async def test_two_different_stories_with_similar_headlines_stay_two_messages(
    server: FixtureServer, runtime: tuple[Runtime, RoomSink]
) -> None:
    rt, sink = runtime
    server.route(
        "GET",
        "/lemonde.xml",
        rss(
            [
                (
                    "x",
                    "Palantir wins $30 million ICE contract for ImmigrationOS",
                    "https://lemonde.fr/x",
                )
            ]
        ),
    )
    server.route(
        "GET",
        "/guardian.xml",
        rss(
            [
                (
                    "y",
                    "Palantir wins $96 million ICE contract for ImmigrationOS",
                    "https://theguardian.com/y",
                )
            ]
        ),
    )
    await poll(rt, "lemonde", "guardian")
    assert len(sink.messages) == 2 and all(m.view.also == () for m in sink.messages)
