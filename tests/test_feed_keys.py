"""Item identity: what makes a feed entry "the same" across polls, and what never does.

Each row of issue 12's table has a test: an entry keeps its key when its link gains
tracking parameters, changes scheme, moves to ``www.``, gains a trailing slash or a
fragment; an entry without guid or link keeps its key when its date is written
another way, and when a new entry carries ``<item>`` in its CDATA; entries that share
a link stay distinct. Keys go through the real parser and the real detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import pytest

from alerts.config import SourceSpec
from alerts.detect import Detection, detect, fingerprint, keys_to_load, snapshot
from alerts.model import EventKind, Item, Observation
from alerts.records import ItemState
from alerts.sources.feed import FeedSource, parse_feed

NOW = datetime(2024, 11, 26, 12, tzinfo=UTC)
BASE = "https://news.example.org/feed.xml"


def rss(*items: str) -> bytes:
    """An RSS 2.0 document (https://www.rssboard.org/rss-specification) with ``items``."""
    body = "".join(f"<item>{item}</item>" for item in items)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        f"<title>News</title><link>https://news.example.org/</link>{body}</channel></rss>"
    ).encode()


def entry(
    title: str,
    *,
    link: str | None = None,
    guid: str | None = None,
    date: str | None = None,
    text: str = "",
    content: str | None = None,
) -> str:
    parts = [f"<title>{escape(title)}</title>"]
    if link is not None:
        parts.append(f"<link>{escape(link)}</link>")
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{escape(guid)}</guid>')
    if date is not None:
        parts.append(f"<pubDate>{date}</pubDate>")
    if text:
        parts.append(f"<description>{escape(text)}</description>")
    if content is not None:
        parts.append(f"<content:encoded><![CDATA[{content}]]></content:encoded>")
    return "".join(parts)


def keys(*items: str) -> list[str]:
    return [it.key for it in parse_feed(rss(*items), base_url=BASE)]


def spec() -> SourceSpec:
    return SourceSpec(
        id="news",
        kind="feed",
        url=BASE,
        interval_s=600,
        topics=("news",),
        options=FeedSource.Options(),
        fingerprint=FeedSource.fingerprint_fields,
        backfill=0,
        max_events=50,
        name="",
        origin="test",
    )


class Store:
    """The detector's view of a store: item states by key, written after each poll."""

    def __init__(self) -> None:
        self.items: dict[str, ItemState] = {}
        self.detector: dict[str, Any] = {}
        self.baselined = False

    def poll(self, body: bytes) -> Detection:
        items = parse_feed(body, base_url=BASE)
        known = {k: self.items[k] for k in keys_to_load(items) if k in self.items}
        found = detect(
            spec=spec(),
            observation=Observation(items=items),
            known=known,
            baselined=self.baselined,
            detector_state=self.detector,
            adapter=FeedSource,
            now=NOW,
        )
        self.items.update(found.items)
        self.detector = dict(found.detector)
        self.baselined = True
        return found


def kinds(found: Detection) -> list[tuple[str, str]]:
    return [(e.kind.value, e.title) for e in found.events]


# --- links: one item however its link is spelled --------------------------------------------

SPELLINGS = [
    pytest.param("https://news.example.org/a?utm_source=rss&utm_medium=feed", id="utm"),
    pytest.param("https://news.example.org/a?fbclid=IwAR0x&gclid=abc", id="click-ids"),
    pytest.param("http://news.example.org/a", id="scheme"),
    pytest.param("https://www.news.example.org/a", id="www"),
    pytest.param("https://NEWS.Example.ORG/a", id="host-case"),
    pytest.param("https://news.example.org:443/a", id="default-port"),
    pytest.param("https://news.example.org/a/", id="trailing-slash"),
    pytest.param("https://news.example.org/a#comments", id="fragment"),
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_link_spelt_another_way_keeps_the_key(spelling: str) -> None:
    before = keys(entry("A", link="https://news.example.org/a"))
    after = keys(entry("A", link=spelling))
    assert before == after


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_respelt_links_raise_no_alert(spelling: str) -> None:
    store = Store()
    store.poll(rss(entry("A", link="https://news.example.org/a", text="Body")))
    again = store.poll(rss(entry("A", link=spelling, text="Body")))
    assert kinds(again) == []


@pytest.mark.parametrize(
    "other",
    [
        "https://news.example.org/a?id=2",
        "https://news.example.org/a?page=2",
        "https://news.example.org/a?ref=feed",
        "https://news.example.org/b",
        "https://news.example.org:8443/a",
        "https://blog.example.org/a",
    ],
)
def test_links_that_select_other_content_are_other_items(other: str) -> None:
    assert keys(entry("A", link="https://news.example.org/a?id=1")) != keys(entry("A", link=other))


def test_a_guid_item_whose_link_gains_tracking_is_not_updated() -> None:
    store = Store()
    store.poll(rss(entry("A", guid="a-1", link="https://news.example.org/a", text="Body")))
    again = store.poll(
        rss(entry("A", guid="a-1", link="https://www.news.example.org/a?utm_campaign=x"))
    )
    assert kinds(again) == [("updated", "A")]  # the text went away: that is a change
    moved = store.poll(
        rss(entry("A", guid="a-1", link="http://news.example.org/a/?utm_source=y#top"))
    )
    assert kinds(moved) == []


def test_a_guid_item_whose_link_really_moves_is_updated() -> None:
    store = Store()
    store.poll(rss(entry("A", guid="a-1", link="https://news.example.org/a")))
    again = store.poll(rss(entry("A", guid="a-1", link="https://news.example.org/b")))
    [event] = again.events
    assert event.kind is EventKind.UPDATED
    assert event.changes == {"url": ("https://news.example.org/a", "https://news.example.org/b")}


# --- no guid, no link: title and parsed date ----------------------------------------------------


@pytest.mark.parametrize(
    "date",
    [
        "Tue, 26 Nov 2024 09:00:00 GMT",
        "Tue, 26 Nov 2024 09:00:00 UT",
        "26 Nov 2024 10:00:00 +0100",
        "Tue, 26 Nov 2024 04:00:00 EST",
        "2024-11-26T09:00:00Z",
    ],
)
def test_a_date_written_another_way_keeps_the_key(date: str) -> None:
    before = keys(entry("Statement", date="Tue, 26 Nov 2024 09:00:00 +0000"))
    assert keys(entry("Statement", date=date)) == before


def test_title_case_and_spacing_keep_the_key() -> None:
    assert keys(entry("A  Statement ")) == keys(entry("a statement"))


def test_a_new_entry_with_item_markup_in_cdata_leaves_other_keys_alone() -> None:
    old = [entry(f"Post {n}", date=f"Mon, {n:02} Nov 2024 09:00:00 +0000") for n in (1, 2, 3)]
    tricky = entry(
        "How to write an RSS item",
        date="Tue, 26 Nov 2024 09:00:00 +0000",
        content="<pre><item><pubDate>Fri, 01 Jan 1999 00:00:00 GMT</pubDate></item></pre>",
    )
    before = keys(*old)
    after = keys(tricky, *old)
    assert after[1:] == before
    assert after[0] not in before

    store = Store()
    store.poll(rss(*old))
    found = store.poll(rss(tricky, *old))
    assert kinds(found) == [("new", "How to write an RSS item")]


def test_a_different_date_is_a_different_item() -> None:
    assert keys(entry("Weekly update", date="Mon, 18 Nov 2024 09:00:00 GMT")) != keys(
        entry("Weekly update", date="Mon, 25 Nov 2024 09:00:00 GMT")
    )


# --- distinct items never share a key ------------------------------------------------------------


def test_entries_sharing_a_link_stay_distinct() -> None:
    listing = "https://agency.example.gov/press-releases"
    found = keys(
        entry("Release one", link=listing, date="Mon, 25 Nov 2024 09:00:00 GMT"),
        entry("Release two", link=listing, date="Tue, 26 Nov 2024 09:00:00 GMT"),
        entry("Elsewhere", link="https://agency.example.gov/other"),
    )
    assert len(set(found)) == 3


def test_a_second_entry_on_a_known_link_is_new_and_the_first_is_not() -> None:
    listing = "https://agency.example.gov/press-releases"
    first = entry("Release one", link=listing, date="Mon, 25 Nov 2024 09:00:00 GMT")
    second = entry("Release two", link=listing, date="Tue, 26 Nov 2024 09:00:00 GMT")
    store = Store()
    store.poll(rss(entry("Baseline", link="https://agency.example.gov/b")))
    assert kinds(store.poll(rss(first))) == [("new", "Release one")]
    assert kinds(store.poll(rss(second, first))) == [("new", "Release two")]
    assert kinds(store.poll(rss(second, first))) == []
    assert kinds(store.poll(rss(first))) == []  # alone again: still known


def test_entries_with_equal_titles_and_no_date_stay_distinct_by_their_text() -> None:
    found = keys(entry("Notice", text="Office closed Monday"), entry("Notice", text="Open again"))
    assert len(set(found)) == 2


def test_a_guid_shared_by_two_entries_is_one_item() -> None:
    """Atom and RSS say an id names one entry: the first copy wins, the second is a repeat."""
    found = parse_feed(rss(entry("A", guid="g"), entry("A (again)", guid="g")), base_url=BASE)
    assert [it.key for it in found] == ["g", "g"]
    store = Store()
    store.poll(rss(entry("Baseline", guid="b")))
    assert kinds(store.poll(rss(entry("A", guid="g"), entry("A (again)", guid="g")))) == [
        ("new", "A")
    ]


def test_keys_are_unique_in_every_fixture(fixture_items: Sequence[Sequence[Item]]) -> None:
    for items in fixture_items:
        seen: dict[str, Item] = {}
        for item in items:
            twin = seen.setdefault(item.key, item)
            assert twin is item or (twin.title, twin.url) == (item.title, item.url)


@pytest.fixture
def fixture_items() -> list[tuple[Item, ...]]:
    from pathlib import Path

    root = Path(__file__).parent / "fixtures" / "feeds"
    feeds = [*root.glob("real/*"), *root.glob("*.xml"), *root.glob("*.rdf")]
    out = []
    for path in sorted(feeds):
        try:
            out.append(parse_feed(path.read_bytes(), base_url=BASE))
        except Exception:  # the malformed fixtures: their own tests cover them
            continue
    assert len(out) > 15
    return out


def test_fingerprints_ignore_url_noise_but_not_text() -> None:
    fields = FeedSource.fingerprint_fields
    a = Item(key="k", title="T", url="https://x.example/a?utm_source=1", summary="S")
    b = Item(key="k", title="T", url="http://www.x.example/a/", summary="S")
    c = Item(key="k", title="T", url="https://x.example/a", summary="S2")
    assert fingerprint(a, fields) == fingerprint(b, fields)
    assert fingerprint(a, fields) != fingerprint(c, fields)
    assert snapshot(a, fields)["url"] == "https://x.example/a?utm_source=1"  # shown as given


def test_entry_digests_stored_by_earlier_versions_still_match() -> None:
    """``entry_digest`` is stored with each item: a new formula would make every stored
    item be read again after an upgrade. These values were written by the first
    version; a faster way to compute the digest must give the same ones."""
    from alerts.sources._feed_raw import RawEntry, RawText
    from alerts.sources.feed import ItemKey, entry_digest

    full = RawEntry(
        id="g1",
        link="https://example.org/1",
        title=RawText("Title", False),
        summary=RawText("<p>Body</p>", True),
        published=["Mon, 30 Nov 2026 10:00:00 GMT"],
        author="ann",
        categories=["a", "b"],
    )
    other = RawEntry(
        link="https://example.org/2",
        permalink="https://example.org/p",
        title_fallback=RawText("é", True),
        content=RawText("x", False),
        updated=["2026-11-30"],
        created=["a", "bc", ""],
        categories=["só"],
    )
    former = ItemKey("example.org/2#abc", ("example.org/2", "https://example.org/2"))
    assert entry_digest(full, ItemKey("g1"), "2\x1f500\x1f1") == "e4c2f4f76eeb83f02af87b895a90188e"
    assert entry_digest(other, former, "2\x1f0\x1f0") == "e561c27da355b3ee66bd24d2c351504d"
    assert entry_digest(RawEntry(), ItemKey(""), "") == "1b666e129cdc7280ae9fbf104b8ef87e"
