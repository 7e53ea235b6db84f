"""The ``feed`` source adapter: RSS 0.9x/1.0/2.0, Atom and JSON Feed 1.1."""

from __future__ import annotations

import codecs
import email.utils
import hashlib
import html
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

import fastfeedparser
from dateutil import parser as dateutil_parser
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from alerts.errors import ParseError
from alerts.model import Item, Observation
from alerts.sources import SourceState
from alerts.sources.http import HttpClient

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
_HEADERS = {"Accept": ACCEPT}
TITLE_CHARS = 120
MAX_CATEGORIES = 20
MAX_HTML_CHARS = 20_000


class FeedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_items: int = Field(default=200, ge=1, le=10_000)
    summary_chars: int = Field(default=500, ge=0, le=20_000)


class FeedSource:
    """Reads a syndication feed: RSS 0.9x, 1.0 (RDF) and 2.0, Atom 1.0, JSON Feed 1.1.

    Each entry becomes an item:

    * **key** (what makes an entry "the same" across polls): the entry's
      ``guid`` / ``id``; else its link; else a hash of its title and date.
    * **title**: plain text (HTML tags removed, entities decoded). Feeds whose
      entries have no title (Bluesky, Mastodon) get one made from the start of
      the text.
    * **summary**: the description (or the content when there is none), as plain
      text trimmed to ``summary_chars``.
    * **url**: absolute (relative links are resolved against ``xml:base`` or the
      feed's own address); **author** and **published** (UTC) when the feed says;
      ``categories`` in the item's fields.

    Polls are conditional (ETag / Last-Modified), so an unchanged feed costs one
    small request. Wrongly declared encodings are repaired (bytes that are valid
    UTF-8 are read as UTF-8 whatever the prolog or ``Content-Type`` claims).
    A body that is not a feed (an HTML page, truncated XML, binary data, a
    document declaring XML entities) fails the poll with the reason; it never
    counts as an empty feed.

    Options:

    * ``max_items`` (default 200): read at most this many entries, newest as the
      feed orders them.
    * ``summary_chars`` (default 500): longest summary kept, cut at a word.
    """

    kind: ClassVar[str] = "feed"
    fingerprint_fields: ClassVar[tuple[str, ...]] = ("title", "summary", "url")
    item_fields: ClassVar[frozenset[str]] = frozenset(
        {"title", "summary", "url", "author", "published", "categories"}
    )
    default_url: ClassVar[str | None] = None
    Options: ClassVar[type[BaseModel]] = FeedOptions

    def __init__(self, *, source_id: str, url: str, options: FeedOptions, http: HttpClient) -> None:
        self.source_id = source_id
        self.url = url
        self.options = options
        self._http = http
        self._url = URL(url)  # parsed once, not at every poll

    async def fetch(self, state: SourceState) -> Observation:
        resp = await self._http.get(self._url, validators=state.validators, headers=_HEADERS)
        if resp.not_modified:
            return Observation(not_modified=True, validators=resp.validators)
        items = parse_feed(
            resp.body,
            base_url=resp.url,
            charset=resp.charset,
            max_items=self.options.max_items,
            summary_chars=self.options.summary_chars,
        )
        return Observation(items=items, validators=resp.validators)


def parse_feed(
    body: bytes,
    *,
    base_url: str,
    charset: str | None = None,
    max_items: int = 200,
    summary_chars: int = 500,
) -> tuple[Item, ...]:
    """Items of a feed document; ``ParseError`` if ``body`` is not a usable feed."""
    stripped = body.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped:
        raise ParseError(f"empty response from {base_url}: expected a feed")
    if stripped[:1] in (b"{", b"["):
        parsed, raw_dates = _parse_json_feed(body, base_url), None
        base = base_url
    else:
        xml = _prepare_xml(body, charset, base_url)
        parsed = _run_parser(xml.data, base_url)
        raw_dates = _raw_dates(xml.text, len(parsed.get("entries", ())))
        base = urljoin(base_url, xml.base) if xml.base else base_url
    entries = parsed.get("entries") or []
    builder = _ItemBuilder(base=base, summary_chars=summary_chars)
    if raw_dates is None:
        return tuple(
            builder.build(entry, _from_iso(entry.get("published"))) for entry in entries[:max_items]
        )
    return tuple(
        builder.build(entry, parse_date(raw), raw or "")
        for entry, raw in zip(entries[:max_items], raw_dates, strict=False)
    )


# --- XML preparation: encoding, hostile and broken documents ---------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_PROLOG_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_PROLOG_PART = re.compile(
    r"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE(?:[^\[>]|\[.*?\])*>)", re.DOTALL | re.IGNORECASE
)
_ROOT_TAG = re.compile(r"\s*<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)([^>]*)>")
_XML_BASE = re.compile(r"""xml:base\s*=\s*["']([^"']*)["']""")
_CHANNEL_TAG = re.compile(r"<channel\b([^>]*)>")
_FEED_ROOTS = frozenset({"rss", "feed", "rdf", "channel"})
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


class _Xml:
    __slots__ = ("base", "data", "text")

    def __init__(self, text: str, base: str | None) -> None:
        self.text = text
        self.base = base
        self.data = _XML_DECL.sub("", text, count=1).encode("utf-8")


def _prepare_xml(body: bytes, charset: str | None, url: str) -> _Xml:
    text = _decode(body, charset)
    if "\x00" in text[:4096] or len(_CONTROL.findall(text[:4096])) > 8:
        raise ParseError(f"not a feed: binary data from {url} ({body[:16]!r}…)")
    pos = 0
    while (part := _PROLOG_PART.match(text, pos)) is not None and part.end() > pos:
        pos = part.end()
    head = text[:pos]
    if re.search(r"<!ENTITY", head, re.IGNORECASE):
        raise ParseError(
            f"refused the document from {url}: it declares XML entities "
            "(entity expansion and external entities are never processed)"
        )
    root = _ROOT_TAG.match(text, pos)
    if root is None:
        snippet = text.lstrip()[:40]
        raise ParseError(f"not a feed: {url} sent neither XML nor JSON (starts {snippet!r})")
    name = root.group(1)
    local = name.rpartition(":")[2].lower()
    if local == "html" or "<!doctype html" in head.lower():
        raise ParseError(f"not a feed: {url} sent an HTML page")
    if local not in _FEED_ROOTS:
        raise ParseError(f"not a feed: the document from {url} has root element <{name}>")
    close = text.rfind("</" + name)
    if close < root.end() or not re.match(r"\s*>", text[close + len(name) + 2 :]):
        raise ParseError(f"truncated XML from {url}: the document ends before </{name}>")
    return _Xml(text, _xml_base(root.group(2), text, root.end()))


def _decode(body: bytes, charset: str | None) -> str:
    """Text of ``body``: BOM, then valid UTF-8, then the declared encodings."""
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(encoding, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    declared = _PROLOG_ENCODING.match(body[:256])
    candidates = (declared.group(1).decode() if declared else "", charset or "", "windows-1252")
    for encoding in candidates:
        if not encoding or encoding.lower().replace("-", "") in ("utf8", "utf16", "utf32"):
            continue
        try:
            return body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("latin-1")


def _xml_base(root_attrs: str, text: str, after_root: int) -> str | None:
    found = _XML_BASE.search(root_attrs)
    if found is None:
        channel = _CHANNEL_TAG.search(text, after_root, after_root + 2048)
        found = _XML_BASE.search(channel.group(1)) if channel else None
    return html.unescape(found.group(1)) if found else None


def _run_parser(data: bytes, url: str) -> Mapping[str, Any]:
    try:
        parsed: Mapping[str, Any] = fastfeedparser.parse(data)
    except Exception as exc:  # hostile input: any parser failure is this feed's fault
        raise ParseError(f"not a readable feed from {url}: {exc}") from exc
    return parsed


def _parse_json_feed(body: bytes, url: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"invalid JSON from {url}: {exc}") from exc
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise ParseError(f"not a feed: {url} sent JSON that is not a JSON Feed")
    if not isinstance(doc.get("items"), list):
        raise ParseError(f"invalid JSON Feed from {url}: no 'items' list")
    return _run_parser(body, url)


# --- dates ------------------------------------------------------------------------------

_MARKS = re.compile(
    r"<(/?)(?:[A-Za-z][\w.\-]{0,15}:)?"
    r"(item|entry|pubDate|published|date|issued|created|updated|modified)[\s>]"
)
_DATE_PRIORITY = ("pubDate", "published", "date", "issued", "created", "updated", "modified")
_ZONES = {
    "UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "WET": 0, "BST": 1, "CET": 1, "MET": 1, "WEST": 1,
    "CEST": 2, "MEST": 2, "EET": 2, "EEST": 3, "MSK": 3, "IST": 5.5, "JST": 9, "KST": 9,
    "AEST": 10, "AEDT": 11, "NZST": 12, "NZDT": 13, "EST": -5, "EDT": -4, "CST": -6,
    "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7, "AKST": -9, "HST": -10,
}  # fmt: skip
_TZINFOS = {name: int(hours * 3600) for name, hours in _ZONES.items()}
_RFC822 = re.compile(
    r"^(?:[A-Za-z]{3,9},?\s*)?\d{1,2}[\s-][A-Za-z]{3,9}[\s-]\d{2,4}\s+\d{1,2}:\d\d(?::\d\d)?"
    r"(?:\s*(?:[A-Za-z]{1,5}|[+-]\d{4}))?$"
)
_RFC822_COMMON = re.compile(
    r"^(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{1,2}):(\d\d)(?::(\d\d))?"
    r"\s+(GMT|UTC|UT|Z|[+-]\d{4})$"
)
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
)}  # fmt: skip
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|2\d\d\d)(?!\d)")


def _raw_dates(text: str, count: int) -> list[str | None] | None:
    """The date text of each entry, in order; None when entries cannot be matched up.

    One regex pass over the document marks entry boundaries and date elements.
    """
    entries: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for mark in _MARKS.finditer(text):
        closing, name = mark.group(1), mark.group(2)
        if name in ("item", "entry"):
            current = None if closing else {}
            if current is not None:
                entries.append(current)
        elif current is not None and not closing and name not in current:
            current[name] = _element_text(text, mark.end() - 1)
    if len(entries) != count:
        return None
    return [next((e[k] for k in _DATE_PRIORITY if e.get(k)), None) for e in entries]


def _element_text(text: str, pos: int) -> str:
    start = text.find(">", pos) + 1
    end = text.find("<", start)
    if text.startswith("<![CDATA[", end):
        close = text.find("]]>", end)
        return text[end + 9 : close] if close > 0 else ""
    return text[start:end] if end > 0 else ""


def parse_date(value: str | None) -> datetime | None:
    """An aware UTC datetime from the date formats feeds use; None if not a date."""
    if not value or len(value) > 100:
        return None
    value = " ".join(html.unescape(value).split())
    if _YEAR.search(value) is None and not re.search(r"\d{1,2}-\w{3}-\d\d\b", value):
        return None
    when = _parse_date_strict(value) or _parse_date_loose(value)
    if when is None or not 1900 <= when.year <= datetime.now(UTC).year + 1:
        return None
    return when


def _parse_date_strict(value: str) -> datetime | None:
    common = _RFC822_COMMON.match(value)
    if common is not None:
        day, month, year, hour, minute, second, zone = common.groups()
        try:
            when = datetime(
                int(year),
                _MONTHS[month.lower()],
                int(day),
                int(hour),
                int(minute),
                int(second or 0),
                tzinfo=UTC,
            )
        except (ValueError, KeyError):
            return None
        if zone[0] in "+-":
            sign = -1 if zone[0] == "+" else 1
            when += sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        return when
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        if not _RFC822.match(value):
            return None
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    return _as_utc(when, value)


def _parse_date_loose(value: str) -> datetime | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            when = dateutil_parser.parse(value, tzinfos=_TZINFOS, dayfirst=False)
        except (ValueError, OverflowError, TypeError, ArithmeticError):
            return None
    return _as_utc(when, value)


def _as_utc(when: datetime, text: str) -> datetime:
    if when.tzinfo is None:
        zone = text.rsplit(" ", 1)[-1].upper()
        offset = _ZONES.get(zone, 0)
        when = when.replace(tzinfo=timezone(timedelta(hours=offset)))
    return when.astimezone(UTC)


# --- text -------------------------------------------------------------------------------

_ATTRS = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
_BLOCK_TAG = re.compile(
    r"(?i)</?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|blockquote|pre|tr|table|section|article"
    r"|header|footer|aside|figure|figcaption)(?=[\s/>])" + _ATTRS + ">"
)
_ANY_TAG = re.compile(r"</?[A-Za-z][^\s/>]*" + _ATTRS + ">")
_HIDDEN = re.compile(r"(?is)<(script|style|template)\b.*?</\1\s*>|<!--.*?-->")
_AUTHOR_EMAIL = re.compile(r"^\S+@\S+\s*\((.+)\)$")


def html_to_text(value: str, *, keep_lines: bool = False) -> str:
    """Plain text of an HTML fragment (tags dropped, entities decoded, spaces collapsed).

    With ``keep_lines``, paragraphs and line breaks become new lines.
    """
    if not value:
        return ""
    if "<" in value:
        value = " ".join(value[:MAX_HTML_CHARS].split())
        if "<!--" in value or "<script" in value or "<style" in value:
            value = _HIDDEN.sub(" ", value)
        value = _ANY_TAG.sub("", _BLOCK_TAG.sub("\n", value))
    if "&" in value:
        value = html.unescape(value)
    if not keep_lines:
        return " ".join(value.split())
    out: list[str] = []
    for line in value.split("\n"):
        line = " ".join(line.split())
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" \n,;:.-") + "…"


class _ItemBuilder:
    __slots__ = ("base", "summary_chars")

    def __init__(self, *, base: str, summary_chars: int) -> None:
        self.base = base
        self.summary_chars = summary_chars

    def build(
        self, entry: Mapping[str, Any], published: datetime | None, raw_date: str = ""
    ) -> Item:
        link = self._absolute(entry.get("link"))
        raw_id = (entry.get("id") or "").strip()
        text = html_to_text(self._body(entry), keep_lines=True)
        title = html_to_text(entry.get("title") or "") or _title_from(text)
        if not link and raw_id.startswith(("http://", "https://")):
            link = raw_id
        if not raw_date and published is not None:
            raw_date = published.isoformat()
        key = self._key(raw_id, entry.get("link"), link, title, raw_date)
        return Item(
            key=key,
            title=title or (link or key),
            url=link,
            summary=shorten(text, self.summary_chars),
            published=published,
            author=_author(entry),
            fields=_fields(entry),
        )

    def _key(
        self, raw_id: str, raw_link: str | None, link: str | None, title: str, date: str
    ) -> str:
        if raw_id and raw_id != (raw_link or "").strip():
            return raw_id
        if link:
            return link
        digest = hashlib.sha256(f"{title}\x1f{date.strip()}".encode()).hexdigest()
        return f"sha256:{digest[:32]}"

    @staticmethod
    def _body(entry: Mapping[str, Any]) -> str:
        description = entry.get("description") or ""
        if description:
            return str(description)
        for content in entry.get("content") or ():
            if isinstance(content, Mapping) and content.get("value"):
                return str(content["value"])
        return ""

    def _absolute(self, raw: Any) -> str | None:
        if not isinstance(raw, str) or not raw.strip():
            return None
        link: str = raw.strip()
        if link.startswith(("https://", "http://")) and "&" not in link:
            return link
        url = urljoin(self.base, html.unescape(link))
        return url if urlsplit(url).scheme in ("http", "https") else None


def _title_from(text: str) -> str:
    first = text.split("\n", 1)[0].strip()
    return shorten(first, TITLE_CHARS)


def _from_iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError:
        return None


def _author(entry: Mapping[str, Any]) -> str | None:
    author = html_to_text(str(entry.get("author") or ""))
    named = _AUTHOR_EMAIL.match(author)
    if named:
        author = named.group(1).strip()
    return author or None


def _fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    tags: Iterable[Any] = entry.get("tags") or ()
    categories: list[str] = []
    for tag in tags:
        term = tag.get("term") if isinstance(tag, Mapping) else None
        label = html_to_text(str(term or "")) if term else ""
        if label and label not in categories:
            categories.append(label)
    return {"categories": categories[:MAX_CATEGORIES]} if categories else {}
