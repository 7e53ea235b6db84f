"""Small parsing helpers shared by the campaign adapters.

Numbers as pages print them (``1,234``, ``1.234``, ``1 234``, ``12k``), dotted JSON
paths (``data.petition.signatures[0].name``), and the
normalisation used for keys built from names.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from alerts.errors import ParseError

_NUMBER = re.compile(r"(\d(?:[\d.,'\u00a0\u202f ]*\d)?)\s*([kKmM])?(?![A-Za-z])")
_SEPARATORS = re.compile(r"[.,'\u00a0\u202f ]")
_SCALE = {"k": 1_000, "m": 1_000_000}
_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_count(text: str) -> int:
    """The first count in ``text``, whatever the locale's grouping.

    A separator followed by exactly three digits groups thousands (``1,234``,
    ``1.234``, ``1 234``); otherwise it is a decimal point, which only makes
    sense with a ``k``/``m`` suffix (``1,2k`` = 1200).
    """
    match = _NUMBER.search(text)
    if match is None:
        raise ParseError(f"no number in {text[:80]!r}")
    raw, suffix = match.group(1).strip(), (match.group(2) or "").lower()
    groups = _SEPARATORS.split(raw)
    if len(groups) == 1:
        value = float(raw)
    elif suffix or len(groups[-1]) != 3:
        value = float(f"{''.join(groups[:-1])}.{groups[-1]}")
    else:
        value = float("".join(groups))
    return round(value * _SCALE.get(suffix, 1))


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
