"""Plain text from what feeds carry: HTML fragments, plain text that may look like HTML.

A feed's text is either plain text (an Atom ``type="text"`` construct, most RSS
titles) or HTML (RSS descriptions, Atom ``type="html"``/``"xhtml"``). Plain text is
kept as written — ``List<String>`` keeps its brackets — and only HTML loses its
tags. RSS does not say which a title is, so a title is read as HTML only when it
looks like HTML: a closing tag or an entity, every tag a known HTML element and every
entity a known HTML entity (feedparser's rule, so both read the same titles alike).
"""

from __future__ import annotations

import html
import re
from html.entities import entitydefs

MAX_HTML_CHARS = 20_000  # HTML read per field; a summary needs far less text than that

# The HTML elements a title may contain and still be read as HTML (feedparser's list).
HTML_ELEMENTS = frozenset(
    """a abbr acronym address area article aside audio b big blockquote br button canvas
    caption center cite code col colgroup command datagrid datalist dd del details dfn dialog
    dir div dl dt em event-source fieldset figcaption figure font footer form h1 h2 h3 h4 h5
    h6 header hr i img input ins kbd keygen label legend li m map menu meter multicol nav
    nextid noscript ol optgroup option output p pre progress q s samp section select small
    sound source spacer span strike strong sub sup table tbody td textarea tfoot th thead
    time tr tt u ul var video""".split()  # noqa: SIM905
)

_ATTRS = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
_BLOCK_TAG = re.compile(
    r"(?i)</?(?:p|div|br|hr|li|ul|ol|dl|dt|dd|h[1-6]|blockquote|pre|tr|table|section|article"
    r"|header|footer|aside|figure|figcaption)(?=[\s/>])" + _ATTRS + ">"
)
_ANY_TAG = re.compile(r"</?[A-Za-z][^\s/>]*" + _ATTRS + ">")
_HIDDEN = re.compile(
    r"(?is)<(script|style|template)\b.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)|<![^>]*>|<\?[^>]*>"
)
_PARTIAL_TAG = re.compile(r"<[A-Za-z/!][^>]*\Z")
_CLOSE_TAG = re.compile(r"</\w+>")
_ENTITY = re.compile(r"&#?\w+;")
_TAG_NAME = re.compile(r"</?(\w+)")
_NAMED_ENTITY = re.compile(r"&(\w+);")


def looks_like_html(text: str) -> bool:
    """Whether text of unknown type is HTML (feedparser's ``looks_like_html``)."""
    if "<" not in text and "&" not in text:
        return False
    if not (_CLOSE_TAG.search(text) or _ENTITY.search(text)):
        return False
    if any(t.lower() not in HTML_ELEMENTS for t in _TAG_NAME.findall(text)):
        return False
    return all(e in entitydefs for e in _NAMED_ENTITY.findall(text))


def html_to_text(value: str, *, keep_lines: bool = False) -> str:
    """Plain text of an HTML fragment (tags dropped, entities decoded, spaces collapsed).

    Scripts, styles and comments are dropped with their content. With
    ``keep_lines``, paragraphs and line breaks become new lines.
    """
    if not value:
        return ""
    tidy = False  # only spaces and new lines left, never two spaces in a row
    if "<" in value:
        if len(value) > MAX_HTML_CHARS:
            value = _PARTIAL_TAG.sub("", value[:MAX_HTML_CHARS])
        value = " ".join(value.split())
        value = _HIDDEN.sub(" ", value)
        value = _ANY_TAG.sub("", _BLOCK_TAG.sub("\n", value))
        tidy = True
    if "&" in value:
        value = html.unescape(value)  # may bring tabs, no-break spaces, new lines
        tidy = False
    if not keep_lines:
        return " ".join(value.split())
    if not tidy:
        return _tidy_lines(value.split("\n"))
    while "  " in value:
        value = value.replace("  ", " ")
    value = value.replace(" \n", "\n").replace("\n ", "\n")
    while "\n\n\n" in value:
        value = value.replace("\n\n\n", "\n\n")
    return value.strip()


def plain_text(value: str, *, keep_lines: bool = False) -> str:
    """Plain text as written, its whitespace tidied the way ``html_to_text`` does."""
    if not keep_lines:
        return " ".join(value.split())
    return _tidy_lines(value.splitlines())


def _tidy_lines(lines: list[str]) -> str:
    """Spaces collapsed in each line, at most one empty line in a row, none at the ends."""
    out: list[str] = []
    for line in lines:
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
