"""A poll reads only the entries whose key or digest the store does not hold (issue 17):
the real feed adapter, scheduler, detector and SQLite store against a feed server on
loopback. Reading (plain text, dates) is counted at ``ItemBuilder.build``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from alerts.detect import entries_to_read, skips_known, stored_digest
from alerts.model import Entry, Item
from alerts.runtime import Runtime
from alerts.sources import feed
from alerts.sources.feed import FeedSource

from .support import T0, FeedServer, FeedState, feed_server, runtime_on, write_config

Story = tuple[str, str, str, int]  # guid, title, summary, minutes before T0


def rss(stories: list[Story], channel: str = "wire") -> bytes:
    entries = "".join(
        f"<item><guid>{escape(g)}</guid><title>{escape(t)}</title>"
        f"<link>https://example.org/{escape(g)}</link>"
        f"<pubDate>{format_datetime(T0 - timedelta(minutes=m))}</pubDate>"
        f"<description>{escape(s)}</description></item>"
        for g, t, s, m in stories
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>{channel}</title><link>https://example.org/</link>"
        f"<description>x</description>{entries}</channel></rss>"
    ).encode()


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keys of the entries read, in order (the real builder still does the reading)."""
    seen: list[str] = []
    build = feed.ItemBuilder.build

    def counting(self: feed.ItemBuilder, entry: object, key: feed.ItemKey) -> Item:
        seen.append(key.key)
        return build(self, entry, key)  # type: ignore[arg-type]

    monkeypatch.setattr(feed.ItemBuilder, "build", counting)
    return seen


async def polled(rt: Runtime, body: bytes, server: FeedServer, reads: list[str]) -> list[str]:
    server.feeds["wire"].body = body
    reads.clear()
    report = await rt.scheduler.poll_now("wire")
    assert report.ok, report.error
    return [f"{e.kind.value}:{e.key}" for e in report.events]


BASE: list[Story] = [("c", "Item c", "About c", 1), ("b", "Item b", "About b", 2)]


async def test_only_new_or_changed_entries_are_read(
    server: FeedServer, reads: list[str], tmp_path: Path
) -> None:
    server.feeds["wire"] = FeedState()
    config = write_config(tmp_path, {"wire": server.url("wire")})
    async with runtime_on(tmp_path, config) as rt:
        assert await polled(rt, rss([*BASE, ("a", "Item a", "About a", 3)]), server, reads) == []
        assert reads == ["c", "b", "a"]  # the baseline reads everything
        stored = await rt.store.load_items("wire")
        assert all(state.digest for state in stored.values())

        later = [
            ("d", "Item d", "About d", 0),  # new
            ("c", "Item c", "About c", 1),  # as it was: not read
            ("b", "Item b, corrected", "About b", 2),  # rewritten
            ("a", "Item a", "About a", 30),  # another date only: read, no event
        ]
        assert await polled(rt, rss(later), server, reads) == ["updated:b", "new:d"]  # oldest first
        assert reads == ["d", "b", "a"]
        after = await rt.store.load_items("wire")
        assert after["a"].fingerprint == stored["a"].fingerprint  # a reader sees no change
        assert after["a"].digest != stored["a"].digest  # but its digest follows the entry

        # another body (the channel's title), the same entries: nothing read, no event
        assert await polled(rt, rss(later, channel="Wire"), server, reads) == []
        assert reads == []

        # an entry that drops out and comes back is known: not read, not new
        assert await polled(rt, rss(later[:2]), server, reads) == []
        assert await polled(rt, rss(later), server, reads) == []
        assert reads == []


@pytest.mark.parametrize(
    "former",
    [
        None,  # what a store migrated from before 0008 holds: no digest
        "0123456789abcdef0123456789abcdef.9f3c2a1b",  # a digest of an earlier form
    ],
    ids=["no-digest", "earlier-digest-form"],
)
async def test_items_stored_before_digests_are_read_once_and_never_alert(
    server: FeedServer, reads: list[str], tmp_path: Path, former: str | None
) -> None:
    server.feeds["wire"] = FeedState()
    config = write_config(tmp_path, {"wire": server.url("wire")})
    async with runtime_on(tmp_path, config) as rt:
        await polled(rt, rss(BASE), server, reads)
        fresh = {k: s.digest for k, s in (await rt.store.load_items("wire")).items()}
        await asyncio.to_thread(_set_digests, tmp_path / "alerts.db", former)
        assert {s.digest for s in (await rt.store.load_items("wire")).values()} == {former}
        assert await polled(rt, rss(BASE, channel="one"), server, reads) == []
        assert reads == ["c", "b"]
        refreshed = {k: s.digest for k, s in (await rt.store.load_items("wire")).items()}
        assert refreshed == fresh
        assert await polled(rt, rss(BASE, channel="two"), server, reads) == []
        assert reads == []


def _set_digests(path: Path, digest: str | None) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE items SET digest = ?", (digest,))


def entry(key: str, digest: str = "d") -> Entry:
    return Entry(key=key, former_keys=(), url=None, digest=digest, read=lambda: Item(key=key))


def test_entries_to_read_are_unknown_changed_or_repeated_keys() -> None:
    salt = "s1"
    listed = [entry("new"), entry("same"), entry("edited", "d2"), entry("twice"), entry("twice")]
    stored = {k: stored_digest(entry(k), salt) for k in ("same", "edited", "twice")}
    assert [e.key for e in entries_to_read(listed, stored, salt)] == [
        "new",
        "edited",
        "twice",
        "twice",
    ]
    # another salt (fingerprint fields, versions): every stored digest is stale
    assert len(entries_to_read(listed, stored, "s2")) == len(listed)


def test_every_entry_is_read_when_the_detector_needs_all_items() -> None:
    adapter = FeedSource
    fmt = [2, adapter.item_format]
    state = {"item_format": fmt, "flood": {"seen": ""}}
    assert skips_known(True, state, adapter)
    assert not skips_known(False, state, adapter)  # the baseline
    assert not skips_known(True, {**state, "item_format": [1, 1]}, adapter)  # a format change
    assert not skips_known(True, {"item_format": fmt, "flood": {}}, adapter)  # no flood memory


def test_entry_digest_tells_every_field_and_boundary_apart() -> None:
    """Equal raw entries give equal digests; a change in any field, a text moved
    across a field or list boundary, None against "", and HTML against plain text
    each give another digest (a stale digest would hide an edit)."""
    from alerts.sources._feed_raw import RawEntry, RawText
    from alerts.sources.feed import ItemKey, entry_digest

    def raw(**changes: object) -> RawEntry:
        base: dict[str, object] = {
            "id": "g1",
            "link": "https://example.org/1",
            "permalink": None,
            "title": RawText("Title", False),
            "title_fallback": None,
            "summary": RawText("<p>Body</p>", True),
            "content": None,
            "published": ["Mon, 30 Nov 2026 10:00:00 GMT"],
            "updated": [],
            "created": [],
            "author": "ann",
            "categories": ["a", "b"],
        }
        return RawEntry(**{**base, **changes})  # type: ignore[arg-type]

    key = ItemKey("g1")
    first = entry_digest(raw(), key, "s")
    assert entry_digest(raw(), ItemKey("g1"), "s") == first
    variants = [
        entry_digest(raw(), key, "t"),
        entry_digest(raw(), ItemKey("g2"), "s"),
        entry_digest(raw(), ItemKey("g1", ("old",)), "s"),
        entry_digest(raw(id="g1 "), key, "s"),
        entry_digest(raw(link=None), key, "s"),
        entry_digest(raw(permalink=""), key, "s"),
        entry_digest(raw(title=RawText("Title", True)), key, "s"),
        entry_digest(
            raw(title=RawText("Titl", False), title_fallback=RawText("e", False)), key, "s"
        ),
        entry_digest(raw(summary=None, content=RawText("<p>Body</p>", True)), key, "s"),
        entry_digest(raw(author=None), key, "s"),
        entry_digest(raw(author=""), key, "s"),
        entry_digest(raw(published=[], updated=["Mon, 30 Nov 2026 10:00:00 GMT"]), key, "s"),
        entry_digest(raw(categories=["ab"]), key, "s"),
        entry_digest(raw(categories=["a", "b", ""]), key, "s"),
        entry_digest(raw(categories=["b", "a"]), key, "s"),
        entry_digest(raw(title=RawText("Title", False), author="a1:n"), key, "s"),
        entry_digest(raw(title=RawText("Title\ud800", False)), key, "s"),  # lone surrogate
    ]
    assert len({first, *variants}) == len(variants) + 1


def test_json_of_fingerprints_and_rows_is_what_json_dumps_writes() -> None:
    """The encoders built once write the bytes ``json.dumps`` wrote: fingerprints
    stored by earlier versions still match, rows read back the same."""
    import hashlib
    import json
    from datetime import UTC, datetime

    from alerts.detect import fingerprint
    from alerts.store.codec import dumps

    value = {"z": 1, "a": ["é", None, 2.5, True], "when": datetime(2026, 12, 1, tzinfo=UTC)}
    assert dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    assert '"é"' in dumps(value) and '"z":1' in dumps(value)
    item = Item(
        key="k", title="  Le   café ", url="https://Example.org/a?utm_source=x", summary="s"
    )
    fields = ("title", "url", "summary")
    from alerts.detect import _normalise

    values = [_normalise(item.value(name), name) for name in fields]
    blob = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    assert fingerprint(item, fields) == hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()
