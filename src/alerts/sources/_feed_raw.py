"""One feed entry as the document wrote it, before any text or date is interpreted.

Reading a feed has separable steps, kept apart so that a poll can do only what it
needs: the XML or JSON reader fills a ``RawEntry`` (cheap: strings as written, links
resolved); the item builder then derives the key, and the plain text and dates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

_SPACE = re.compile(r"\s")


def _is_http(href: str) -> bool:
    return href[:8].lower().startswith(("http://", "https://"))


def http_url(href: str, base: Callable[[], str]) -> str | None:
    """``href`` made absolute against ``base()``; None unless it is an http(s) URL.

    ``base`` is called only for a relative ``href``. The scheme comes out in lower
    case; a value that is not a URL (spaces, a broken IPv6 host) is None, never an
    exception.
    """
    href = href.strip()
    if not href or _SPACE.search(href):
        return None
    try:
        if not _is_http(href):
            href = urljoin(base(), href)
            if not _is_http(href):
                return None
        parts = urlsplit(href)
        if not parts.hostname:
            return None
    except ValueError:  # "http://example.c[o.test/": not a URL
        return None
    return href if href.startswith(parts.scheme) else parts.scheme + href[len(parts.scheme) :]


class RawText(NamedTuple):
    """Text as the feed carries it: ``value`` is HTML when ``html``, else plain text.

    A named tuple rather than a frozen dataclass: as immutable and hashable, and built
    in half the time (a frozen dataclass sets each field through ``object.__setattr__``);
    a feed read builds two for every entry.
    """

    value: str
    html: bool


@dataclass(slots=True)
class RawEntry:
    """An entry's fields, as written; links are absolute (or None)."""

    id: str | None = None
    link: str | None = None  # the alternate link, absolute http(s)
    permalink: str | None = None  # an RSS guid that is a permalink, absolute http(s)
    title: RawText | None = None
    title_fallback: RawText | None = None  # media:title: used when there is no title
    summary: RawText | None = None
    content: RawText | None = None
    published: list[str] = field(default_factory=list)  # pubDate, published, issued
    updated: list[str] = field(default_factory=list)  # updated, modified, dc:date
    created: list[str] = field(default_factory=list)
    author: str | None = None
    categories: list[str] = field(default_factory=list)

    def dates(self) -> list[str]:
        """Every date the entry gives, most telling first (of one kind, the last given)."""
        return [*self.published[::-1], *self.updated[::-1], *self.created[::-1]]
