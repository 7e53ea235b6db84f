"""Small parsing helpers shared by the campaign adapters.

Numbers as pages print them (``1,234``, ``1.234``, ``1 234``, ``12k``), dotted JSON
paths (``data.petition.signatures[0].name``), and the
normalisation used for keys built from names.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from alerts.errors import ParseError
from alerts.redact import is_secret_param

_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d(?:[\d.,'\u00a0\u202f ]*\d)?(?:\s*([kKmM])(?![A-Za-z]))?")
_SEPARATORS = re.compile(r"[.,'\u00a0\u202f ]")
_NOT_A_COUNT_AFTER = re.compile(r"[eE][+-]?\d|[xX][0-9A-Fa-f]|[.,]\d")
_SIGNS = "-+\u2212"
_SCALE = {"k": 1_000, "m": 1_000_000}
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_count(text: str) -> int:
    """The first count in ``text``, whatever the locale's grouping; strict otherwise.

    Accepted: ``1234``, ``1,234``, ``1.234``, ``1 234`` (also with no-break spaces),
    ``1'234``, and ``12k`` / ``1.2k`` / ``1,5M`` (a decimal only with a suffix). A
    separator must group thousands (exactly three digits after each). Anything that
    could be read two ways is a ``ParseError``, never a guess: a sign (``-5``), an
    exponent (``1e3``), hex (``0x10``), a decimal without suffix (``2.5``), odd
    grouping (``12,34``).
    """
    first = _DIGIT.search(text)
    if first is None:
        raise ParseError(f"no number in {text[:80]!r}")
    start = first.start()
    match = _NUMBER.match(text, start)
    assert match is not None  # a digit always matches
    if start and text[start - 1] in _SIGNS:
        raise ParseError(f"a count cannot be signed: {text[:80]!r}")
    if start and (text[start - 1].isalnum() or text[start - 1] in "._"):
        raise ParseError(f"no clear count in {text[:80]!r}")
    if _NOT_A_COUNT_AFTER.match(text, match.end()):
        raise ParseError(f"not a plain count: {text[:80]!r}")
    raw = match.group(0)
    suffix = (match.group(1) or "").lower()
    digits = raw[: len(raw) - len(suffix)].rstrip() if suffix else raw
    return round(_grouped(digits, bool(suffix), text) * _SCALE.get(suffix, 1))


def _grouped(digits: str, scaled: bool, text: str) -> float:
    groups = _SEPARATORS.split(digits)
    if len(groups) == 1:
        return float(digits)
    if scaled and len(groups) == 2 and len(groups[1]) != 3:
        return float(f"{groups[0]}.{groups[1]}")  # 1,2k / 1.5M: a decimal point
    if scaled:
        raise ParseError(f"ambiguous count (grouping or decimal?): {text[:80]!r}")
    if len(groups[0]) > 3 or any(len(g) != 3 for g in groups[1:]):
        raise ParseError(f"not a count (odd digit grouping): {text[:80]!r}")
    return float("".join(groups))


def public_url(url: str | None) -> str | None:
    """``url`` fit to post in a public room: no ``user:pass@``, no secret parameters.

    Query parameters whose name looks like a credential (``key``, ``token``,
    ``api_key``, ``sig``, ``password``…) are dropped; the rest stay in order. A URL
    that cannot be parsed, or is not http(s), gives ``None`` (no link at all).
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_secret_param(k)
    ]
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, urlencode(query), ""))


def check_selector(selector: str) -> str:
    """``selector`` if the CSS engine (selectolax/lexbor) can compile it, else ValueError."""
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError as exc:
        raise ValueError(f"CSS selector {selector!r} cannot be parsed: {exc}") from None
    return selector


def json_path(data: Any, path: str) -> Any:
    """Follow a dotted path with ``[n]`` indexes (``$.a.b[0].c``) or raise ParseError."""
    current = data
    walked = "$"
    for name, index in _PATH_TOKEN.findall(path.removeprefix("$").lstrip(".")):
        if index:
            if not isinstance(current, list) or int(index) >= len(current):
                raise ParseError(f"{walked} has no element [{index}] (path {path!r})")
            current = current[int(index)]
            walked += f"[{index}]"
        else:
            if not isinstance(current, dict) or name not in current:
                raise ParseError(f"{walked} has no key {name!r} (path {path!r})")
            current = current[name]
            walked += f".{name}"
    return current


def normalise(text: str | None) -> str:
    """Case-, accent- and punctuation-insensitive form used in keys and matching."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", plain).split())


def squash(text: str) -> str:
    """Collapse runs of whitespace inside each line and drop empty lines."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)
