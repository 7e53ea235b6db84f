"""RSS 0.9x/1.0/2.0, Atom 0.3/1.0 and CDF documents to ``RawEntry`` objects.

A body of up to 512 KB is first parsed into one tree (faster than pull events, and
bounded by that size); a larger one, or one that is not well-formed, goes through
lxml's pull parser a slice at a time, and parsing stops once ``max_items`` entries
are read: a huge feed costs what it keeps. Entity
declarations are refused before parsing (``_feed_bytes``); the parser itself never
loads a DTD, never touches the network and never expands an entity.

**Ill-formed documents.** Feeds in the wild carry HTML entities (``&nbsp;``) and bare
ampersands that XML forbids. When the strict parse fails, HTML entities are turned
into character references, bare ``&`` into ``&amp;``, and the document is parsed
again in lxml's recovering mode. A document that simply stops (it does not end with
its root's closing tag) is refused as truncated, never read as a shorter feed.

**What an entry yields** (element names as feedparser matches them: case-insensitive,
namespaces by URI, so ``atom:link`` in RSS is an Atom link):

* ``id``: ``guid`` / ``id``, else ``rdf:about`` (RSS 1.0);
* ``link``: the first alternate link (RSS ``<link>``, or an Atom ``<link>`` whose
  ``rel`` is ``alternate`` or absent and whose type is HTML), resolved against
  ``xml:base`` and the feed's address; a ``self``, ``related``, ``enclosure`` link is
  never the item's link. Else a permalink ``guid`` / ``id`` that is an http(s) URL;
* ``title``: ``title`` or ``dc:title`` (the first), else ``media:title``;
* ``summary``: the first of ``description``, ``summary``, ``dc:description``,
  ``itunes:summary``, ``media:description`` (in ``media:group`` too, as YouTube
  writes it); ``content``: ``content:encoded``, Atom ``content``, ``xhtml:body``;
* dates: ``pubDate``, ``published``, ``issued``; then ``updated``, ``modified``,
  ``dc:date``; then ``created``;
* ``author``: the first ``author`` (an Atom person's name), ``dc:creator``,
  ``itunes:author``; ``categories``: ``category`` (text or ``term``), ``dc:subject``.

Text constructs keep their type: Atom ``text`` stays plain text (``List<String>``
keeps its brackets), ``html`` and ``xhtml`` are HTML, Atom 0.3 ``base64`` content is
decoded; an RSS title is HTML only when it looks like HTML.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Callable, Iterable
from html.entities import html5
from typing import Any, TypeVar

from lxml import etree

from alerts.errors import ParseError
from alerts.sources._feed_bytes import (
    CHUNK_BYTES,
    Encoding,
    NoFeedRoot,
    Prolog,
    check_prolog,
    choose_encoding,
    decode_all,
    past_leading_junk,
    utf8_chunks,
)
from alerts.sources._feed_raw import RawEntry, RawText, http_url
from alerts.sources._feed_text import looks_like_html

_ATOM = frozenset({"http://www.w3.org/2005/atom", "http://purl.org/atom/ns#"})
# Lower-cased namespace URI → the prefix feedparser files it under ("" = the feed's own).
_PREFIXES = {
    "": "",
    "http://backend.userland.com/rss": "",
    "http://backend.userland.com/rss2": "",
    "http://blogs.law.harvard.edu/tech/rss": "",
    "http://purl.org/rss/1.0/": "",
    "http://my.netscape.com/rdf/simple/0.9/": "",
    "http://purl.org/rss/1.0/modules/rss091#": "",
    "http://purl.org/net/rss1.1#": "",
    "http://example.com/newformat#": "",
    "http://example.com/necho": "",
    "http://purl.org/echo/": "",
    "uri/of/echo/namespace#": "",
    "http://purl.org/pie/": "",
    "http://purl.org/atom/ns#": "",
    "http://www.w3.org/2005/atom": "",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://purl.org/dc/elements/1.0/": "dc",
    "http://purl.org/dc/terms/": "dcterms",
    "http://purl.org/rss/1.0/modules/content/": "content",
    "http://search.yahoo.com/mrss": "media",
    "http://search.yahoo.com/mrss/": "media",
    "http://www.itunes.com/dtds/podcast-1.0.dtd": "itunes",
    "http://example.com/dtds/podcast-1.0.dtd": "itunes",
    "http://www.w3.org/1999/xhtml": "xhtml",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#": "rdf",
}
_ENTRY_NAMES = frozenset({"item", "entry"})
_ENTRY_TAGS = ["{*}item", "{*}entry", "{*}ITEM", "{*}Item", "{*}Entry", "{*}ENTRY"]
_XHTML_DIV = "{http://www.w3.org/1999/xhtml}div"
_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(?::\d{1,5})?(?:[/?#]\S*)?\Z")
HTML, HTML_IF_IT_LOOKS = True, None  # what text without a type is: HTML, or HTML if it looks so
_HTML_TYPES = frozenset({"html", "text/html", "xhtml", "application/xhtml+xml"})
_PLAIN_TYPES = frozenset({"text", "text/plain"})

# What each element of an entry is, by feedparser's name for it. SUMMARY is HTML unless
# it says otherwise (RSS descriptions); NOTE may be either, so its look decides.
(SKIP, ID, LINK, TITLE, TITLE_FALLBACK, SUMMARY, NOTE, CONTENT, PUBLISHED, UPDATED, CREATED,
 AUTHOR, CATEGORY, GROUP) = range(14)  # fmt: skip
_KIND_OF = {
    "guid": ID, "id": ID, "link": LINK, "title": TITLE, "dc:title": TITLE,
    "media:title": TITLE_FALLBACK, "description": SUMMARY, "dc:description": SUMMARY,
    "summary": NOTE, "itunes:summary": NOTE, "media:description": NOTE, "abstract": NOTE,
    "content:encoded": CONTENT, "content": CONTENT, "xhtml:body": CONTENT, "body": CONTENT,
    "fullitem": CONTENT, "pubdate": PUBLISHED, "published": PUBLISHED, "issued": PUBLISHED,
    "dcterms:issued": PUBLISHED, "updated": UPDATED, "modified": UPDATED, "dc:date": UPDATED,
    "dcterms:modified": UPDATED, "created": CREATED, "dcterms:created": CREATED,
    "author": AUTHOR, "dc:creator": AUTHOR, "dc:author": AUTHOR, "itunes:author": AUTHOR,
    "category": CATEGORY, "dc:subject": CATEGORY, "media:group": GROUP,
}  # fmt: skip
# Caches by tag (Clark notation), for known namespaces only: an unknown namespace's
# elements are named by their prefix, which may differ from one document to the next.
# (kind, whether the element is Atom's): every entry of a feed has the same few tags, so
# both are decided once per tag, not once per element.
_kinds: dict[object, tuple[int, bool]] = {}
_entry_tags: dict[object, bool] = {}
_names: dict[object, str] = {}
_NOTHING = (SKIP, False)
T = TypeVar("T")
# Each cache stops growing at this many tags: a hostile feed that makes up new element
# names (without a namespace) at every poll must not grow the process for ever.
_CACHE_MAX = 1024


def _remember(cache: dict[object, T], tag: str, value: T) -> None:
    if len(cache) < _CACHE_MAX:
        cache[tag] = value


def _name(tag: str, prefix: str | None) -> str:
    """feedparser's name for an element: its namespace's usual prefix, lower case."""
    uri, _, local = tag[1:].rpartition("}") if tag[:1] == "{" else ("", "", tag)
    known = _PREFIXES.get(uri.lower())
    prefix = known if known is not None else (prefix or uri)
    return f"{prefix}:{local.lower()}" if prefix else local.lower()


def _kind(el: etree._Element) -> tuple[int, bool]:
    """What an element of an entry is (SKIP for comments and the unknown), and whether
    it is in an Atom namespace."""
    found = _kinds.get(el.tag)
    if found is not None:
        return found
    tag = el.tag
    if not isinstance(tag, str):
        return _NOTHING  # processing instructions, entity references
    uri = tag[1:].partition("}")[0].lower() if tag[:1] == "{" else ""
    found = (_KIND_OF.get(_name(tag, el.prefix), SKIP), uri in _ATOM)
    if uri in _PREFIXES:  # the same for every document: cache it
        _remember(_kinds, tag, found)
    return found


def _name_of(el: etree._Element) -> str:
    """feedparser's name for an element (``_name``), "" for comments and the like."""
    name = _names.get(el.tag)
    if name is None:
        tag = _tag(el)
        name = _name(tag, el.prefix) if tag else ""
        if tag and (tag[:1] != "{" or tag[1:].partition("}")[0].lower() in _PREFIXES):
            _remember(_names, tag, name)  # a known namespace: the same in every document
    return name


def _tag(el: etree._Element) -> str:
    """An element's tag in Clark notation (``{uri}local``); "" for comments and the like."""
    tag = el.tag
    return tag if isinstance(tag, str) else ""


# --- the document ------------------------------------------------------------------------


class _IllFormed(Exception):
    """The strict parse failed before the end of the document."""


def read_xml(
    body: bytes, *, url: str, charset: str | None, max_items: int
) -> tuple[list[RawEntry], bool]:
    """The first ``max_items`` entries of an XML feed, and whether it was read as UTF-8.

    ``ParseError`` when the body is not a feed, is truncated, or is refused.
    """
    prolog, encoding = _checked(body, choose_encoding(body, charset), url)
    utf8 = encoding.codec == "utf-8"
    if not prolog.doctype:
        if len(body) <= WHOLE_MAX_BYTES:
            found = _parse_whole(utf8_chunks(body, encoding), url, max_items)
            if found is not None:
                return found, utf8
        try:
            return _parse(utf8_chunks(body, encoding), url, prolog, max_items, body, encoding), utf8
        except _IllFormed:
            if not _ends_with_root(body, encoding, prolog.root):
                raise _truncated(url, prolog) from None
    repaired = _repair(decode_all(body, encoding)).encode("utf-8")
    chunks = (repaired[i : i + CHUNK_BYTES] for i in range(0, len(repaired), CHUNK_BYTES))
    try:
        return _parse(chunks, url, prolog, max_items, body, encoding, recover=True), utf8
    except _IllFormed as exc:
        raise ParseError(f"not a readable feed from {url}: {exc}") from None


def _checked(body: bytes, encoding: Encoding, url: str) -> tuple[Prolog, Encoding]:
    """The document's prolog, past any junk a server printed before the feed."""
    try:
        return check_prolog(_head(body, encoding), url), encoding
    except NoFeedRoot:  # never past a refusal (entities, an HTML page, binary data)
        past = past_leading_junk(body, encoding)
        if past is None:
            raise
        return check_prolog(_head(body, past), url), past


def _head(body: bytes, encoding: Encoding) -> str:
    return decode_all(body[: encoding.offset + CHUNK_BYTES], encoding, errors="replace")


# What both parsers (pull and whole) are built with: never an entity, a DTD, the network
# or a huge tree; comments and processing instructions dropped.
_SAFE: dict[str, Any] = {
    "encoding": "utf-8",
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


def _parser(url: str, recover: bool) -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("end",), tag=_ENTRY_TAGS, base_url=url, recover=recover, **_SAFE
    )


WHOLE_MAX_BYTES = 1 << 19
"""Bodies up to this size are first parsed whole (``_parse_whole``)."""


def _parse_whole(chunks: Iterable[bytes], url: str, max_items: int) -> list[RawEntry] | None:
    """The entries of a well-formed document parsed into one tree, or None if it is
    not well-formed (``_parse`` then reads it, and says why if it cannot).

    The same parser without pull events: lxml builds the tree of a 60 KB feed in about
    half the time, because no event is queued for each element. Only small bodies go
    this way, so the whole tree's memory stays bounded; a well-formed document yields
    exactly the entries ``_parse`` reads from it (what lies past ``max_items`` is
    parsed, but a body with an error there falls back to ``_parse``, which stops
    before it as it always did).
    """
    parser = etree.XMLParser(recover=False, **_SAFE)
    try:
        root = etree.fromstring(b"".join(chunks), parser, base_url=url)
    except etree.XMLSyntaxError:
        return None
    entries: list[RawEntry] = []
    for el in root.iter(*_ENTRY_TAGS):
        if _is_entry(el):
            entries.append(_read_entry(el, url))
            if len(entries) >= max_items:
                break
    return entries


def _parse(
    chunks: Iterable[bytes],
    url: str,
    prolog: Prolog,
    max_items: int,
    body: bytes,
    encoding: Encoding,
    *,
    recover: bool = False,
) -> list[RawEntry]:
    parser = _parser(url, recover)
    entries: list[RawEntry] = []
    for chunk in chunks:
        try:
            parser.feed(chunk)
            events = parser.read_events()
            for _, el in events:
                if _is_entry(el):
                    entries.append(_read_entry(el, url))
                    el.clear(keep_tail=True)
                    if len(entries) >= max_items:
                        return entries
        except etree.XMLSyntaxError as exc:
            raise _IllFormed(str(exc)) from None
    try:
        parser.close()
    except etree.XMLSyntaxError as exc:
        if not _ends_with_root(body, encoding, prolog.root):
            raise _truncated(url, prolog) from None
        raise _IllFormed(str(exc)) from None
    return entries


def _truncated(url: str, prolog: Prolog) -> ParseError:
    return ParseError(f"truncated XML from {url}: the document ends before </{prolog.root}>")


def _read_entry(el: etree._Element, url: str) -> RawEntry:
    try:
        return _entry(el)
    except UnicodeDecodeError as exc:  # libxml2 let through what Python cannot decode
        raise ParseError(f"not a readable feed from {url}: undecodable text ({exc})") from None


def _is_entry(el: etree._Element) -> bool:
    """An RSS item or Atom entry (not a same-named element of another vocabulary)."""
    if not _entry_name(el):
        return False
    parent = el.getparent()
    return parent is None or not _entry_name(parent)


def _entry_name(el: etree._Element) -> bool:
    found = _entry_tags.get(el.tag)
    if found is None:
        tag = _tag(el)
        found = _name(tag, el.prefix) in _ENTRY_NAMES
        if tag[1:].partition("}")[0].lower() in _PREFIXES or tag[:1] != "{":
            _remember(_entry_tags, tag, found)  # a known namespace: the same everywhere
    return found


def _ends_with_root(body: bytes, encoding: Encoding, root: str) -> bool:
    codec = encoding.codec if encoding.codec.startswith("utf-") else "ascii"
    needle = f"</{root}".encode(codec.replace("utf-8", "ascii"), errors="replace")
    return body.rfind(needle) != -1


def _xml_char(reference: str) -> bool:
    """Whether ``#65`` / ``#x41`` names a character XML allows (XML 1.0, production 2)."""
    hexadecimal = reference[1:2] in ("x", "X")
    try:
        code = int(reference[2:], 16) if hexadecimal else int(reference[1:])
    except ValueError:
        return False
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


_ENTITY_OR_AMP = re.compile(r"&(?:(#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?)?")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})


def _repair(text: str) -> str:
    """HTML entities as character references, bare ``&`` as ``&amp;``."""
    return _ENTITY_OR_AMP.sub(_repair_one, text)


def _repair_one(found: re.Match[str]) -> str:
    whole, name = found.group(0), found.group(1)
    if name is None:
        return "&amp;"  # a bare ampersand
    if not whole.endswith(";"):
        return "&amp;" + name  # "&b=2" in a link, "&copy 2024": kept as written
    if name.startswith("#"):
        if not _xml_char(name):
            return "&#xFFFD;"
        return "&#x" + name[2:] + ";" if name[1] == "X" else whole  # XML wants a lower-case x
    if name in _XML_ENTITIES:
        return whole
    replacement = html5.get(f"{name};")
    if replacement is None:
        return "&amp;" + whole[1:]
    return "".join(f"&#{ord(c)};" for c in replacement)


# --- one entry ---------------------------------------------------------------------------


def _entry(el: etree._Element) -> RawEntry:
    raw = RawEntry()
    for child in el:
        kind, atom = _kinds.get(child.tag) or _kind(child)
        if kind:
            _TAKE[kind](raw, child, atom)
    if el.keys():
        _entry_attributes(raw, el)
    return raw


def _entry_attributes(raw: RawEntry, el: etree._Element) -> None:
    if raw.id is None and (about := (el.get(_RDF_ABOUT) or "").strip()):
        raw.id = about  # RSS 1.0: <item rdf:about="…">
    if raw.link is None and (href := el.get("HREF") or el.get("href")):
        parent = el.getparent()  # CDF: <CHANNEL BASE="…"><ITEM HREF="…" LASTMOD="…">
        raw.link = _absolute(el, href, parent.get("BASE") if parent is not None else None)
    if lastmod := el.get("LASTMOD") or el.get("lastmod"):
        raw.updated.append(lastmod)


# A taker files one child element into the entry; ``atom``: the element is Atom's.
Taker = Callable[[RawEntry, etree._Element, bool], None]


def _take_link(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    if raw.link is None:
        raw.link = _link(child, atom)


# The text takers keep a field's first text construct (an empty one leaves the field to
# the next). One function per field, not getattr/setattr by name: two of them run for
# every entry.
def _take_title(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    if raw.title is None:
        raw.title = _text(child, HTML_IF_IT_LOOKS, atom)


def _take_title_fallback(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    if raw.title_fallback is None:
        raw.title_fallback = _text(child, HTML_IF_IT_LOOKS, atom)


def _take_summary(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    if raw.summary is None:
        raw.summary = _text(child, HTML, atom)


def _take_note(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    if raw.summary is None:
        raw.summary = _text(child, HTML_IF_IT_LOOKS, atom)


def _take_content(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    if raw.content is None:
        raw.content = _text(child, HTML, atom)


def _every_date(name: str) -> Taker:
    """A taker that adds each date of one kind (``published``…) to its list."""

    def take(raw: RawEntry, child: etree._Element, atom: bool) -> None:
        if value := (child.text or "").strip():
            getattr(raw, name).append(value)

    return take


def _take_author(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    if raw.author is None:
        raw.author = _person(child)


def _take_category(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    term = (child.get("term") or child.text or "").strip()
    if term:
        raw.categories.append(term)


def _take_group(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    """``media:group`` (YouTube): its title and description, as fallbacks."""
    for part in child:
        kind, part_atom = _kind(part)
        if kind in (TITLE, TITLE_FALLBACK):
            _take_title_fallback(raw, part, part_atom)
        elif kind in (SUMMARY, NOTE):
            _take_note(raw, part, part_atom)


def _take_id(raw: RawEntry, child: etree._Element, atom: bool) -> None:
    value = (child.text or "").strip()
    if not value or raw.id is not None:
        return
    raw.id = value
    if atom:  # an Atom id is a name, a link only when it is an http(s) URL
        raw.permalink = _absolute(child, value) if value[:8].lower().startswith("http") else None
    else:  # an RSS guid is a permalink unless it says it is not
        flag = child.get("isPermaLink")
        if flag is None:
            flag = child.get("ispermalink", "true")
        if flag.strip().lower() == "true":
            raw.permalink = _absolute(child, value)


def _link(child: etree._Element, atom: bool) -> str | None:
    href = child.get("href")
    if href is None and not atom:
        return _absolute(child, child.text or "")  # RSS: <link>URL</link>
    rel = (child.get("rel") or "alternate").strip().lower()
    kind = (child.get("type") or "text/html").strip().lower()
    if rel != "alternate" or kind not in ("text/html", "application/xhtml+xml"):
        return None
    return _absolute(child, href if href is not None else child.text or "")


def _absolute(el: etree._Element, href: str, base: str | None = None) -> str | None:
    """``href`` resolved against the element's ``xml:base``; None unless http(s)."""
    href = href.strip()
    if _PLAIN_URL.match(href):
        return href
    return http_url(href, lambda: base or el.base or "")


def _person(child: etree._Element) -> str | None:
    if len(child):
        parts = {name: (p.text or "").strip() for p in child if (name := _name_of(p))}
        return parts.get("name") or parts.get("email") or None
    value = (child.text or "").strip()
    return value or None


# --- text constructs ---------------------------------------------------------------------


def _text(child: etree._Element, untyped: bool | None, atom: bool) -> RawText | None:
    """A text construct: plain text or HTML, as its type (or its look) says."""
    if child.keys():
        return _typed_text(child, untyped, atom)
    if len(child):
        return _markup(_inner_markup(child))
    value = child.text
    if not value or value.isspace():
        return None
    if atom:
        return RawText(value, False)  # Atom's default type is text
    return RawText(value, looks_like_html(value) if untyped is None else untyped)


def _typed_text(child: etree._Element, untyped: bool | None, atom: bool) -> RawText | None:
    kind = (child.get("type") or "").strip().lower()
    mode = (child.get("mode") or "").strip().lower()
    if len(child) and kind in ("html", "text/html"):  # escaped HTML inside a <div>
        return _markup("".join(child.itertext()))
    if kind in ("xhtml", "application/xhtml+xml") or len(child):
        return _markup(_inner_markup(child))
    value = child.text or ""
    if mode == "base64" or (atom and kind and _is_binary(kind)):
        value = _unbase64(value)
    if not value or value.isspace():
        return None
    if kind in _HTML_TYPES or mode == "escaped":
        return RawText(value, True)
    if atom or kind in _PLAIN_TYPES:
        return RawText(value, not atom and looks_like_html(value))
    return RawText(value, looks_like_html(value) if untyped is None else untyped)


def _markup(value: str) -> RawText | None:
    return RawText(value, True) if value and not value.isspace() else None


def _is_binary(kind: str) -> bool:
    if kind in _HTML_TYPES or kind in _PLAIN_TYPES or kind.startswith("text/"):
        return False
    return not kind.endswith(("+xml", "/xml"))


def _unbase64(value: str) -> str:
    try:
        return base64.b64decode(value.encode("ascii"), validate=False).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return value


def _inner_markup(child: etree._Element) -> str:
    """The markup inside an element (inside its XHTML ``div`` wrapper, if it has one)."""
    inner = list(child)
    if (
        len(inner) == 1
        and inner[0].tag == _XHTML_DIV
        and not (child.text or "").strip()
        and not (inner[0].tail or "").strip()
    ):
        child = inner[0]
    parts = [html.escape(child.text or "", quote=False)]
    parts += [etree.tostring(part, encoding="unicode", with_tail=True) for part in child]
    return "".join(parts)


_TAKE: tuple[Taker, ...] = (
    lambda raw, child, atom: None,  # SKIP
    _take_id,
    _take_link,
    _take_title,
    _take_title_fallback,
    _take_summary,
    _take_note,
    _take_content,
    _every_date("published"),
    _every_date("updated"),
    _every_date("created"),
    _take_author,
    _take_category,
    _take_group,
)
