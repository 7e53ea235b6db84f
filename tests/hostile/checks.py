"""What must hold of every message alerts posts, per platform, whatever the source wrote.

``matrix_problems(content, link=…)`` reads an ``m.room.message`` content the way a
client would: ``formatted_body`` through html5lib (a WHATWG-conformant parser),
checked against the allow-list of the Matrix spec (client-server API, section
"m.room.message msgtypes": tags, per-tag attributes, href schemes, ``mxc://``
images, nesting at most 100) and against the renderer's own skeleton, and both
bodies for mentions, controls and bidi characters.

``discord_problems(payload, link=…)`` reads a message payload the way Discord's
markdown does (a subset of simple-markdown, as documented in "Markdown Text 101"
and the developer docs' "Message Formatting"): after dropping escape pairs
(``\\`` + punctuation, which Discord shows as the punctuation itself), no markdown
delimiter, autolink, mention or timestamp token may be left, and the payload must
parse nothing in ``allowed_mentions``.

Each returns a list of problems (empty when the message is inert); the tests
assert it is empty, so a failure names every rule a message broke.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import html5lib

# Spec: client-server API, "m.room.message msgtypes" (v1.16): the tags to permit and
# the attributes permitted per tag; every other attribute is forbidden.
SPEC_TAGS = frozenset(
    [
        "del",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "p",
        "a",
        "ul",
        "ol",
        "sup",
        "sub",
        "li",
        "b",
        "i",
        "u",
        "strong",
        "em",
        "s",
        "code",
        "hr",
        "br",
        "div",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "caption",
        "pre",
        "span",
        "img",
        "details",
        "summary",
    ]
)
SPEC_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "span": frozenset({"data-mx-bg-color", "data-mx-color", "data-mx-spoiler", "data-mx-maths"}),
    "a": frozenset({"target", "href"}),
    "img": frozenset({"width", "height", "alt", "title", "src"}),
    "ol": frozenset({"start"}),
    "code": frozenset({"class"}),
    "div": frozenset({"data-mx-maths"}),
}
SPEC_HREF_SCHEMES = frozenset({"https", "http", "ftp", "mailto", "magnet"})
SPEC_MAX_DEPTH = 100
# What alerts' renderer writes, and nothing else.
RENDERER_TAGS = frozenset({"p", "strong", "a", "br", "em", "ul", "li", "blockquote", "sub"})

BIDI = frozenset(
    [
        *map(chr, range(0x202A, 0x202F)),
        *map(chr, range(0x2066, 0x206A)),
        "\u200e",
        "\u200f",
        "\u061c",
    ]
)
# A Matrix user id (spec: appendices, "User Identifiers", historical ids included).
USER_ID = re.compile(r"@[^\s:\u2060]+:[A-Za-z0-9.\-\[\]]+")
ROOM_MENTION = re.compile(r"@room\b", re.IGNORECASE)
MATRIX_EVENT_MAX_BYTES = 65_536


def _parse(fragment: str) -> ElementTree.Element:
    return html5lib.parseFragment(fragment, treebuilder="etree", namespaceHTMLElements=False)


def _serialise(root: ElementTree.Element) -> str:
    return "".join(ElementTree.tostring(child, encoding="unicode") for child in root) + (
        root.text or ""
    )


def _walk(node: ElementTree.Element, depth: int = 0) -> Iterator[tuple[ElementTree.Element, int]]:
    for child in node:
        yield child, depth + 1
        yield from _walk(child, depth + 1)


def _text(node: ElementTree.Element) -> str:
    return "".join(node.itertext())


def text_problems(where: str, text: str, *, multiline: bool) -> list[str]:
    """Controls (a line break only where ``multiline``) and bidi characters."""
    problems = []
    for ch in set(text):
        if ch == "\n" and multiline:
            continue
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in ("\u2028", "\u2029", "\x85"):
            problems.append(f"{where}: control character U+{ord(ch):04X}")
        if ch in BIDI:
            problems.append(f"{where}: bidi character U+{ord(ch):04X}")
    return problems


def _spec_problems(root: ElementTree.Element) -> list[str]:
    problems = []
    for element, depth in _walk(root):
        tag = str(element.tag)
        if depth > SPEC_MAX_DEPTH:
            problems.append(f"formatted_body: nested {depth} deep")
        if tag not in SPEC_TAGS:
            problems.append(f"formatted_body: <{tag}> is not in the spec's allow-list")
        for name, value in element.attrib.items():
            if name not in SPEC_ATTRIBUTES.get(tag, frozenset()):
                problems.append(f"formatted_body: <{tag} {name}> is not allowed by the spec")
            elif name == "href" and urlsplit(value).scheme not in SPEC_HREF_SCHEMES:
                problems.append(f"formatted_body: href {value!r} is relative or a bad scheme")
            elif name == "src" and not value.startswith("mxc://"):
                problems.append(f"formatted_body: img src {value!r} is not mxc://")
            elif name == "class" and not value.startswith("language-"):
                problems.append(f"formatted_body: code class {value!r}")
    return problems


def _renderer_problems(root: ElementTree.Element, link: str | None) -> list[str]:
    problems = []
    tags = [str(e.tag) for e, _ in _walk(root)]
    extra = set(tags) - RENDERER_TAGS
    if extra:
        problems.append(f"formatted_body: markup the renderer does not write: {sorted(extra)}")
    hrefs = [e.get("href") for e, _ in _walk(root) if e.tag == "a"]
    if hrefs != ([link] if link else []):
        problems.append(f"formatted_body: links {hrefs}, expected {[link] if link else []}")
    if any(urlsplit(h or "").hostname in ("matrix.to",) for h in hrefs):
        problems.append("formatted_body: a matrix.to link (a pill)")
    heads = root.findall("./p/strong")
    if not heads or "\n" in _text(heads[0]):
        problems.append("formatted_body: the headline is missing or not one line")
    return problems


def _mention_problems(where: str, text: str) -> list[str]:
    problems = []
    if ROOM_MENTION.search(text):
        problems.append(f"{where}: @room survives")
    for match in USER_ID.finditer(text):
        problems.append(f"{where}: user id {match.group()!r} survives")
    if re.search(r"matrix\.to", text, re.IGNORECASE):
        problems.append(f"{where}: a matrix.to link in text")
    return problems


def matrix_problems(content: Mapping[str, Any], *, link: str | None) -> list[str]:
    """Everything wrong with a Matrix alert's content (see the module docstring)."""
    problems = []
    if content.get("msgtype") != "m.notice":
        problems.append(f"msgtype {content.get('msgtype')!r}")
    if content.get("m.mentions") != {}:
        problems.append(f"m.mentions {content.get('m.mentions')!r}")
    if content.get("format") != "org.matrix.custom.html":
        problems.append(f"format {content.get('format')!r}")
    size = len(json.dumps(content, ensure_ascii=False).encode())
    if size > MATRIX_EVENT_MAX_BYTES:
        problems.append(f"content of {size} bytes")
    body, html = str(content.get("body", "")), str(content.get("formatted_body", ""))
    root = _parse(html)
    again = _parse(_serialise(root))
    if _serialise(again) != _serialise(root):
        problems.append("formatted_body: not stable under re-parsing")
    problems += _spec_problems(root)
    problems += _renderer_problems(root, link)
    problems += text_problems("body", body, multiline=True)
    problems += text_problems("formatted_body", _text(root), multiline=False)
    body_lines = body.split("\n")
    problems += _mention_problems("body", "\n".join(body_lines))
    problems += _mention_problems("formatted_body", _text(root))
    return problems


# --- Discord ------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\[^0-9A-Za-z\s]")
_DELIMITERS = re.compile(r"[*_~`|<>\[\]]")
_LINE_MARKUP = re.compile(r"^\s*(#|>|-|\+|\d+[.)]\s)", re.MULTILINE)
# Discord's formats (developer docs, Reference, "Message Formatting") and autolinks.
_TOKENS = re.compile(
    r"@everyone|@here|<@[!&]?\d+>|<#\d+>|</[^>]+:\d+>|<a?:\w+:\d+>|<t:-?\d+(:\w)?>"
    r"|<id:\w+>|\w+://",
    re.IGNORECASE,
)
_OPENERS = re.compile(r"<[@#:/a-z]|\w+:/", re.IGNORECASE)
DISCORD_LIMITS = {"title": 256, "description": 4096, "name": 256, "value": 1024, "footer": 2048}


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def markdown_problems(where: str, text: str) -> list[str]:
    """What Discord's markdown would still find in ``text`` once escapes are read."""
    literal = _ESCAPE.sub("\u00a4", text)  # an escaped character is a plain one: "¤"
    problems = [f"{where}: markdown {m.group()!r}" for m in _DELIMITERS.finditer(literal)]
    problems += [
        f"{where}: line starts with {m.group(1)!r}" for m in _LINE_MARKUP.finditer(literal)
    ]
    problems += [f"{where}: {m.group()!r} (mention, token or link)" for m in _TOKENS.finditer(text)]
    problems += [f"{where}: {m.group()!r} once unescaped" for m in _OPENERS.finditer(literal)]
    return problems


def discord_problems(payload: Mapping[str, Any], *, link: str | None) -> list[str]:
    """Everything wrong with a Discord alert payload (bot message or webhook execute)."""
    problems = []
    if payload.get("allowed_mentions") != {"parse": []}:
        problems.append(f"allowed_mentions {payload.get('allowed_mentions')!r}")
    if payload.get("content"):
        problems.append("content is set (only the embed may carry text)")
    embeds = payload.get("embeds") or []
    if len(embeds) != 1:
        return [*problems, f"{len(embeds)} embeds"]
    embed = embeds[0]
    if embed.get("url") != link:
        problems.append(f"embed url {embed.get('url')!r}, expected {link!r}")
    title, description = embed.get("title", ""), embed.get("description", "")
    if "\n" in title:
        problems.append("title: more than one line")
    parts = [("title", title, False), ("description", description, True)]
    for field in embed.get("fields", []):
        parts += [("name", field["name"], False), ("value", field["value"], False)]
    for where, text, multiline in parts:
        problems += markdown_problems(where, text)
        problems += text_problems(where, text, multiline=multiline)
        if utf16(text) > DISCORD_LIMITS[where]:
            problems.append(f"{where}: {utf16(text)} characters")
    footer = embed.get("footer", {}).get("text", "")
    problems += text_problems("footer", footer, multiline=False)
    if len(embed.get("fields", [])) > 25:
        problems.append("more than 25 fields")
    total = sum(utf16(text) for _, text, _ in parts) + utf16(footer)
    if total > 6000:
        problems.append(f"embed of {total} characters")
    return problems
