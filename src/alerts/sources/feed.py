"""The ``feed`` source adapter: RSS 0.9x/1.0/2.0, Atom 0.3/1.0, CDF and JSON Feed 1.0/1.1.

Reading a document takes three separable steps (so that a poll can later do only the
cheap ones for items it already knows):

1. **raw entries** (``_feed_xml`` / ``_feed_json``): fields as written, links resolved;
   parsing stops after ``max_items`` entries;
2. **identity** (``item_keys``): each entry's key, from the raw fields;
3. **items** (``ItemBuilder``): plain text, dates, author, categories.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import ClassVar, NamedTuple

import xxhash
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from alerts.canonical import canonical_text, canonical_url
from alerts.errors import ParseError
from alerts.model import Entry, Item, Listing, Observation
from alerts.sources import SourceState
from alerts.sources._feed_bytes import WINDOWS_1252, charset_of
from alerts.sources._feed_dates import parse_date
from alerts.sources._feed_json import read_json
from alerts.sources._feed_raw import RawEntry, RawText
from alerts.sources._feed_text import html_to_text, looks_like_html, plain_text, shorten
from alerts.sources._feed_xml import read_xml
from alerts.sources.http import HttpClient

__all__ = ["FeedSource", "html_to_text", "item_keys", "parse_date", "parse_feed", "shorten"]

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
_HEADERS = {"Accept": ACCEPT}
TITLE_CHARS = 120
BODY_KEY = "body"  # the cursor's hash of the last body read
MAX_CATEGORIES = 20


class FeedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_items: int = Field(
        default=200, ge=1, le=10_000, description="entries read per poll, in feed order"
    )
    summary_chars: int = Field(
        default=500, ge=0, le=20_000, description="longest summary, cut at a word"
    )


class FeedSource:
    """Reads a syndication feed: RSS 0.9x, 1.0 (RDF) and 2.0, Atom 0.3 and 1.0, JSON Feed 1.0/1.1.

    Each entry becomes an item. Its **key** (what makes an entry "the same" across
    polls) is the entry's ``guid`` / ``id`` (``rdf:about`` in RSS 1.0); else its
    link in canonical form, so a tracking parameter (``utm_*``, ``fbclid``…), the
    scheme, ``www.``, the host's case, a default port, a trailing ``/`` or a
    ``#fragment`` never make an entry new; else a hash of its title and parsed date
    (``+0000`` and ``GMT`` are the same date). Entries without a guid that share a
    link (press releases pointing at one listing page) stay distinct items. Keys of
    older versions are still recognised, so upgrading never re-alerts a feed.

    What an item shows:

    * **title**: ``<title>`` (or ``dc:title``; ``media:title`` when there is none),
      as plain text. Text the feed marks as plain keeps its ``<`` and ``&``
      (``List<String>``); HTML and XHTML lose their tags; an RSS title is HTML only
      when it looks like HTML. Entries with no title (Bluesky, Mastodon) get one from
      the start of their text.
    * **summary**: the first of ``description``, ``summary``, ``itunes:summary``,
      ``media:description`` (YouTube); else the content (``content:encoded``, Atom
      ``content``, including Atom 0.3 base64); plain text, scripts and styles
      dropped, trimmed to ``summary_chars``.
    * **url**: the alternate link (never a ``self``, ``related`` or ``enclosure``
      link), resolved against ``xml:base`` and the feed's own address; else a guid
      that is a permalink. **author**: the first author's name. **published** (UTC):
      ``pubDate`` / ``published``, else ``updated`` / ``dc:date``; RFC 822 with any
      zone name or offset, ISO 8601 (partial dates mean the first day), and the
      variants feeds really write. ``categories`` go in the item's fields.

    Encodings: a byte order mark, then bytes that are valid UTF-8, then the HTTP
    ``charset``, then the XML prolog, each read as the superset browsers use
    (ISO-8859-1 as windows-1252, GB2312 as GB18030, Shift_JIS as cp932). HTML
    entities and bare ``&`` that XML forbids are repaired. Polls are conditional
    (ETag / Last-Modified). A body that is not a feed (an HTML page, truncated XML,
    binary data, a document declaring XML entities, items that yield nothing)
    fails the poll with the reason; it never counts as an empty feed.

    Options:

    * ``max_items`` (default 200): read at most this many entries, newest as the
      feed orders them; the rest of the document is not even parsed.
    * ``summary_chars`` (default 500): longest summary kept, cut at a word.

    A body identical to the last one read (many servers send no ``ETag`` or
    ``Last-Modified``, or change them without changing the feed) is not parsed
    again: the poll counts as unchanged. The adapter keeps a 128-bit xxh3 hash of
    that body (with its address, content type and the options) in its cursor.
    """

    kind: ClassVar[str] = "feed"
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("title", "summary", "url")
    item_fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "summary", "url", "author", "published", "categories"}
    )
    default_url: ClassVar[str | None] = None
    Options: ClassVar[type[BaseModel]] = FeedOptions
    # Bumped when items are read differently: the detector then records their state
    # again on the next poll instead of alerting the difference as an update.
    item_format: ClassVar[int] = 2

    def __init__(self, *, source_id: str, url: str, options: FeedOptions, http: HttpClient) -> None:
        self.source_id = source_id
        self.url = url
        self.options = options
        self._http = http
        self._url = URL(url)  # parsed once, not at every poll

    async def fetch(self, state: SourceState) -> Observation:
        found = await self.fetch_entries(state)
        if isinstance(found, Observation):
            return found
        items = tuple(entry.read() for entry in found.entries)
        return Observation(items=items, validators=found.validators, cursor=found.cursor)

    async def fetch_entries(self, state: SourceState) -> Observation | Listing:
        """The entries of a modified feed, each read (text, dates) only on demand."""
        resp = await self._http.get(self._url, validators=state.validators, headers=_HEADERS)
        if resp.not_modified:
            return Observation(not_modified=True, validators=resp.validators)
        content_type = resp.headers.get("content-type")
        digest = self._digest(resp.body, resp.url, content_type)
        if state.cursor.get(BODY_KEY) == digest:  # the body last read: nothing to parse
            return Observation(not_modified=True, validators=resp.validators)
        entries, utf8 = read_entries(
            resp.body,
            base_url=resp.url,
            charset=charset_of(content_type),
            max_items=self.options.max_items,
        )
        builder = ItemBuilder(summary_chars=self.options.summary_chars, repair_utf8=utf8)
        salt = f"{self.item_format}\x1f{self.options.summary_chars}\x1f{int(utf8)}"
        listed = tuple(
            Entry(
                key=key.key,
                former_keys=key.former,
                url=raw.link or raw.permalink,
                digest=entry_digest(raw, key, salt),
                read=partial(builder.build, raw, key),
            )
            for raw, key in zip(entries, item_keys(entries), strict=True)
        )
        return Listing(listed, validators=resp.validators, cursor={BODY_KEY: digest})

    def _digest(self, body: bytes, url: str, content_type: str | None) -> str:
        """What a body read as items depends on: the bytes, where they came from,
        their declared type and how this source reads them."""
        hasher = xxhash.xxh3_128(body)
        options = self.options
        hasher.update(
            f"\x00{url}\x00{content_type}\x00{self.item_format}"
            f"\x00{options.max_items}\x00{options.summary_chars}".encode()
        )
        return hasher.hexdigest()


def parse_feed(
    body: bytes,
    *,
    base_url: str,
    content_type: str | None = None,
    charset: str | None = None,
    max_items: int = 200,
    summary_chars: int = 500,
) -> tuple[Item, ...]:
    """Items of a feed document; ``ParseError`` if ``body`` is not a usable feed.

    ``content_type`` is the response's ``Content-Type`` (its ``charset`` counts);
    ``charset`` overrides it.
    """
    entries, utf8 = read_entries(
        body, base_url=base_url, charset=charset or charset_of(content_type), max_items=max_items
    )
    builder = ItemBuilder(summary_chars=summary_chars, repair_utf8=utf8)
    return tuple(
        builder.build(entry, key) for entry, key in zip(entries, item_keys(entries), strict=True)
    )


def read_entries(
    body: bytes, *, base_url: str, charset: str | None, max_items: int
) -> tuple[list[RawEntry], bool]:
    """Raw entries of a feed document, and whether it was read as UTF-8."""
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise ParseError(f"empty response from {base_url}: expected a feed")
    if stripped[:1] in (b"{", b"["):
        entries, utf8 = read_json(body, url=base_url, max_items=max_items), True
    else:
        entries, utf8 = read_xml(body, url=base_url, charset=charset, max_items=max_items)
        if not entries and _has_entries(body):
            raise ParseError(f"no entries could be read from {base_url}, yet it lists some")
    return entries, utf8


_ENTRY_MARK = re.compile(rb"<(?:[\w.\-]+:)?(?:item|entry)[\s>/]", re.IGNORECASE)


def _has_entries(body: bytes) -> bool:
    return _ENTRY_MARK.search(body) is not None


# --- identity --------------------------------------------------------------------------------


class ItemKey(NamedTuple):
    """An entry's key, and the keys older versions stored the same entry under.

    A named tuple, like ``RawText``: immutable, and cheaper to build than a frozen
    dataclass (one per entry of every modified body).
    """

    key: str
    former: tuple[str, ...] = ()


def item_keys(entries: Sequence[RawEntry]) -> list[ItemKey]:
    """The key of every entry: guid, else canonical link, else title and date.

    Two entries of one document never share a key unless they are the same to a
    reader: entries without a guid whose link (or title and date) collide get a
    suffix from their title, date and text, and keep the plain key as a former one
    (the key the entry had while it was alone).
    """
    bases = [_base_key(entry) for entry in entries]
    counts = Counter(key for key, _ in bases)
    keys = []
    for entry, (key, by_id) in zip(entries, bases, strict=True):
        former: list[str] = []
        if not by_id and counts[key] > 1:
            former.append(key)
            key = f"{key}#{_digest(_distinction(entry), 16)}"
        legacy = legacy_key(entry)
        if legacy is not None and legacy != key and legacy not in former:
            former.append(legacy)
        keys.append(ItemKey(key, tuple(former)))
    return keys


def _base_key(entry: RawEntry) -> tuple[str, bool]:
    if entry.id:
        return entry.id, True
    if entry.link:
        return canonical_url(entry.link), False
    title = canonical_text(_title_text(entry))
    when = _published(entry)
    return "sha256:" + _digest(f"{title}\x1f{when.isoformat() if when else ''}", 32), False


def _distinction(entry: RawEntry) -> str:
    when = _published(entry)
    text = _plain(entry.summary or entry.content)
    return "\x1f".join((canonical_text(_title_text(entry)), when.isoformat() if when else "", text))


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def legacy_key(entry: RawEntry) -> str | None:
    """The key alerts 0.1 gave this entry (the guid, the link as written, or a hash).

    Only the usual cases are reproduced; an entry alerts 0.1 misread may alert once.
    """
    if entry.id and entry.id != (entry.link or ""):
        return entry.id
    link = entry.link or entry.permalink
    if link:
        return html.unescape(link) if "&" in link else link
    title = _legacy_text(entry.title.value if entry.title else "")
    if not title:
        body = _legacy_text((entry.summary or entry.content or RawText("", True)).value)
        title = shorten(body.split("\n", 1)[0].strip(), TITLE_CHARS)
    dates = entry.dates()
    date = dates[0] if dates else ""
    return "sha256:" + _digest(f"{title}\x1f{date.strip()}", 32)


def _legacy_text(value: str) -> str:
    return html_to_text(value)


def entry_digest(entry: RawEntry, key: ItemKey, salt: str) -> str:
    """A 128-bit hash of everything an item is read from: its key, raw fields, and
    ``salt`` (how they are read). Equal digests read into equal items.

    Every part is written with its length first (``_part``, ``_text_part``,
    ``_list_part``), so no text can pass for a separator or a neighbouring field.
    One f-string per entry: this runs for every entry of every modified body. Stored
    digests must keep matching: the formula is pinned by a test.
    """
    blob = (
        f"{len(salt)}:{salt}{len(key.key)}:{key.key}{_list_part(key.former)}"
        f"{_text_part(entry.title)}{_text_part(entry.title_fallback)}"
        f"{_text_part(entry.summary)}{_text_part(entry.content)}"
        f"{_part(entry.id)}{_part(entry.link)}{_part(entry.permalink)}{_part(entry.author)}"
        f"{_list_part(entry.published)}{_list_part(entry.updated)}"
        f"{_list_part(entry.created)}{_list_part(entry.categories)}"
    )
    return xxhash.xxh3_128_hexdigest(blob.encode("utf-8", "surrogatepass"))


def _part(value: str | None) -> str:
    return "-" if value is None else f"{len(value)}:{value}"


def _text_part(text: RawText | None) -> str:
    if text is None:
        return "-"
    value = text.value
    return f"{len(value)}{'h' if text.html else 't'}{value}"


def _list_part(values: Sequence[str]) -> str:
    # Most lists are empty or hold one date or one category: no join for those.
    if not values:
        return "0["
    if len(values) == 1:
        return f"1[{len(values[0])}:{values[0]}"
    return f"{len(values)}[" + "".join([f"{len(v)}:{v}" for v in values])


# --- text, dates, items ----------------------------------------------------------------------

_C1 = re.compile("[\x80-\x9f]")
_AUTHOR_EMAIL = re.compile(r"^\S+@\S+\s*\((.+)\)$")
_AUTHOR_ANGLE = re.compile(r"^(.+?)\s*(?:<\S+@\S+>|\(\S+@\S+\))$")


def _repair(text: str, utf8: bool) -> str:
    """Mis-encoded text as meant: cp1252 in C1 controls, UTF-8 read as Latin-1."""
    if text.isascii():
        return text
    if utf8:
        with contextlib.suppress(UnicodeError):
            text = text.encode("latin-1").decode("utf-8")
    if _C1.search(text):
        text = text.translate(WINDOWS_1252)
    return text


def _plain(raw: RawText | None, *, keep_lines: bool = False, utf8: bool = False) -> str:
    if raw is None:
        return ""
    value = _repair(raw.value, utf8)
    if raw.html:
        return html_to_text(value, keep_lines=keep_lines)
    return plain_text(value, keep_lines=keep_lines)


def _title_text(entry: RawEntry) -> str:
    return _plain(entry.title or entry.title_fallback)


def _published(entry: RawEntry) -> datetime | None:
    for value in entry.dates():
        when = parse_date(value)
        if when is not None:
            return when
    return None


class ItemBuilder:
    """Items from raw entries: plain text, dates, author and categories."""

    __slots__ = ("repair_utf8", "summary_chars")

    def __init__(self, *, summary_chars: int, repair_utf8: bool = False) -> None:
        self.summary_chars = summary_chars
        self.repair_utf8 = repair_utf8

    def build(self, entry: RawEntry, key: ItemKey) -> Item:
        utf8 = self.repair_utf8
        text = _plain(entry.summary or entry.content, keep_lines=True, utf8=utf8)
        title = _plain(entry.title or entry.title_fallback, utf8=utf8) or _title_from(text)
        link = entry.link or entry.permalink
        return Item(
            key=key.key,
            title=title or link or key.key,
            url=link,
            summary=shorten(text, self.summary_chars),
            published=_published(entry),
            author=_author(entry.author, utf8),
            fields=_fields(entry.categories, utf8),
            former_keys=key.former,
        )


def _title_from(text: str) -> str:
    first = text.split("\n", 1)[0].strip()
    return shorten(first, TITLE_CHARS)


def _author(value: str | None, utf8: bool) -> str | None:
    if not value:
        return None
    author = _plain(RawText(value, looks_like_html(value)), utf8=utf8)
    named = _AUTHOR_EMAIL.match(author) or _AUTHOR_ANGLE.match(author)
    if named:
        author = named.group(1).strip()
    return author or None


def _fields(categories: list[str], utf8: bool) -> dict[str, list[str]]:
    labels: list[str] = []
    for term in categories:
        if "<" in term or "&" in term or not term.isascii():
            term = _plain(RawText(term, looks_like_html(term)), utf8=utf8)
        else:
            term = " ".join(term.split())
        if term and term not in labels:
            labels.append(term)
    return {"categories": labels[:MAX_CATEGORIES]} if labels else {}
