"""JSON Feed 1.0 and 1.1 (https://www.jsonfeed.org/version/1.1/) to ``RawEntry`` objects.

The spec's rules for readers are followed: an ``id`` that is a number is read as a
string; ``content_text`` is plain text, ``content_html`` HTML, and ``title`` and ``summary``
plain text unless they look like HTML (publishers escape ``&`` as ``&amp;``); ``authors`` (1.1) or ``author`` (1.0) of the item, else
of the feed. A field of the wrong type is ignored, never a crash.
"""

from __future__ import annotations

import json
from typing import Any

from alerts.errors import ParseError
from alerts.sources._feed_raw import RawEntry, RawText, http_url
from alerts.sources._feed_text import looks_like_html


def read_json(body: bytes, *, url: str, max_items: int) -> list[RawEntry]:
    """The first ``max_items`` items of a JSON Feed; ``ParseError`` if it is not one."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"invalid JSON from {url}: {exc}") from exc
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or "jsonfeed.org/version/" not in version:
        raise ParseError(f"not a feed: {url} sent JSON that is not a JSON Feed")
    items = doc.get("items")
    if not isinstance(items, list):
        raise ParseError(f"invalid JSON Feed from {url}: no 'items' list")
    feed_author = _author(doc)
    return [_entry(item, url, feed_author) for item in items[:max_items] if isinstance(item, dict)]


def _string(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _scalar(value: Any) -> str | None:
    """An id: strings as they are, numbers as their text (the spec's coercion)."""
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip() or None


def _text(value: Any, html: bool | None) -> RawText | None:
    """Text of a field; ``html=None``: plain text unless it looks like HTML (titles)."""
    text = _string(value)
    if not text:
        return None
    return RawText(text, looks_like_html(text) if html is None else html)


def _author(obj: dict[str, Any]) -> str | None:
    authors = obj.get("authors")
    candidates = authors if isinstance(authors, list) else [obj.get("author")]
    for author in candidates:
        if isinstance(author, dict) and (name := _string(author.get("name"))):
            return name
    return None


def _entry(item: dict[str, Any], base: str, feed_author: str | None) -> RawEntry:
    url = _string(item.get("url"))
    link = http_url(url, lambda: base) if url else None
    content = _text(item.get("content_html"), True) or _text(item.get("content_text"), False)
    tags = item.get("tags")
    return RawEntry(
        id=_scalar(item.get("id")),
        link=link,
        title=_text(item.get("title"), None),
        summary=_text(item.get("summary"), None),
        content=content,
        published=[d] if (d := _string(item.get("date_published"))) else [],
        updated=[d] if (d := _string(item.get("date_modified"))) else [],
        author=_author(item) or feed_author,
        categories=[t.strip() for t in tags if isinstance(t, str) and t.strip()]
        if isinstance(tags, list)
        else [],
    )
