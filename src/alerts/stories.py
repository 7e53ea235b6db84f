"""Which reports are one story, so that a room gets one message for it.

Two reports of different sources are one story when they share a link, or when
their headlines are near-identical:

* **Links** are compared in canonical form (``alerts.canonical``): the item's own
  link, and the links its adapter lists in the field ``links`` (a Bluesky post's
  link card and the links in its text, say). A French and an English headline that
  link the same document are one story; so are an article in a feed and the post
  that shares it.
* **Headlines** are compared word by word after canonical folding (case, Unicode
  forms, punctuation), without a trailing publisher name (``… - Wired``, ``… |
  404 Media``). They are near-identical when both have at least
  ``MIN_TITLE_WORDS`` words, they name the same numbers, and at least
  ``TITLE_SIMILARITY`` of their words line up (``difflib``'s ratio): one word in ten
  may differ. Short headlines (a person's name, "Statement") never match this way,
  and "Palantir wins $30M ICE deal" is not "Palantir wins $96M ICE deal".

A story is looked for only among messages the room was shown within its merge
window, and only for a source that is not already part of it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import regex

from alerts.canonical import canonical_text, canonical_url
from alerts.model import JSON, Event

MIN_TITLE_WORDS = 5
TITLE_SIMILARITY = 0.9
SITE_SUFFIX_WORDS = 4
MAX_LINKS = 20

_SEPARATORS = regex.compile(r"\s+[-|\u2013\u2014\u00b7:]\s+")
_NOT_WORD = regex.compile(r"[^\p{L}\p{N}]+")
_DIGIT = regex.compile(r"\p{N}")


def story_links(event: Event) -> list[str]:
    """Canonical forms of the event's link and of the links its adapter lists."""
    found = [event.url] if isinstance(event.url, str) else []
    extra = event.fields.get("links")
    if isinstance(extra, list):
        found += [link for link in extra if isinstance(link, str)]
    return list(dict.fromkeys(canonical_url(link) for link in found if _is_web(link)))[:MAX_LINKS]


def _is_web(link: str) -> bool:
    return link.lower().startswith(("http://", "https://"))


def title_words(title: str) -> list[str]:
    """The headline's words for comparison: folded, punctuation gone, and without a
    trailing publisher name."""
    text = canonical_text(title)
    parts = _SEPARATORS.split(text)
    if len(parts) > 1:
        head = " ".join(parts[:-1])
        if len(_words(parts[-1])) <= SITE_SUFFIX_WORDS and len(_words(head)) >= MIN_TITLE_WORDS:
            text = head
    return _words(text)


def _words(text: str) -> list[str]:
    return _NOT_WORD.sub(" ", text).split()


def same_headline(a: Sequence[str], b: Sequence[str]) -> bool:
    """Near-identical word lists (see the module docstring)."""
    if len(a) < MIN_TITLE_WORDS or len(b) < MIN_TITLE_WORDS:
        return False
    if _numbers(a) != _numbers(b):
        return False
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= TITLE_SIMILARITY


def _numbers(words: Iterable[str]) -> set[str]:
    return {w for w in words if _DIGIT.search(w)}


def same_story(event: Event, story: Mapping[str, Any]) -> bool:
    """Is ``event`` a report of the story whose identity is ``story`` (``first``, then
    ``merged`` with each later report)?"""
    links = set(story_links(event))
    if links & set(story.get("links") or ()):
        return True
    words = title_words(event.title)
    return any(same_headline(words, other) for other in story.get("headlines") or ())


def merged(story: Mapping[str, Any], event: Event) -> dict[str, JSON]:
    """The identity of ``story`` once ``event`` is one of its reports."""
    links = list(dict.fromkeys([*(story.get("links") or ()), *story_links(event)]))
    headlines = [*(story.get("headlines") or ()), title_words(event.title)]
    return {"links": links[:MAX_LINKS], "headlines": headlines[-MAX_LINKS:]}


def first(event: Event) -> dict[str, JSON]:
    """The identity of a story ``event`` is the first report of."""
    return merged({}, event)
