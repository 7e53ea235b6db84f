"""Keyword filters and operator regexes, one engine for every place that matches text.

Routes, chat subscriptions, a source's own ``include``/``exclude``, the petition
adapter's watched companies and titles and the webpage adapter's ``noise`` all match
here, so they agree on what "matches" means:

* a plain keyword matches **whole words**, case-insensitively and ignoring accents
  and punctuation: ``ICE`` matches "ICE contract" and "Ice, again" but not "police",
  "device" or "iPhone price"; ``cafe`` matches "Café";
* a keyword written ``re:PATTERN`` is a regular expression, searched in the text
  case-folded and without accents (so ``re:palantir|anduril`` needs no flags).

Every regular expression runs on RE2 (``google-re2``), whose matching time is linear in
the text whatever the pattern, so a room or an operator cannot stall the service
with ``(a+)+$``. Patterns are compiled where they are declared (config load, chat
command), and a bad one is refused there with the engine's reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import re2  # google-re2: linear-time regular expressions
from pydantic import AfterValidator

REGEX_PREFIX = "re:"
MAX_PATTERN_CHARS = 1000
_NON_WORD = re.compile(r"[^\w]+")


def fold(text: str) -> str:
    """Case-folded, accents removed (NFKD without combining marks); punctuation kept."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> str:
    """``fold`` with every run of non-word characters turned into one space."""
    return " ".join(_NON_WORD.sub(" ", fold(text)).split())


@dataclass(frozen=True, slots=True)
class Text:
    """A text prepared once for matching many keywords against it."""

    folded: str
    padded_words: str

    @classmethod
    def of(cls, *parts: object) -> Text:
        raw = " ".join(str(p) for p in parts if p is not None and p != "")
        folded = fold(raw)
        return cls(folded, f" {' '.join(_NON_WORD.sub(' ', folded).split())} ")


def _options(*, case_sensitive: bool) -> Any:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False  # the reason goes into our error, not to stderr
    return options


def compile_regex(pattern: str, *, case_sensitive: bool = True, multiline: bool = False) -> Any:
    """An RE2 pattern, or ``ValueError`` naming what is wrong with it."""
    if not pattern:
        raise ValueError("empty regular expression (it would match everywhere)")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"regular expression longer than {MAX_PATTERN_CHARS} characters")
    source = f"(?m){pattern}" if multiline else pattern
    try:
        compiled = re2.compile(source, options=_options(case_sensitive=case_sensitive))
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        reason = str(reason).replace(source, pattern)
        raise ValueError(f"regular expression {pattern!r}: {reason}") from None
    return compiled


@dataclass(frozen=True, slots=True)
class Keyword:
    """One compiled keyword: a whole-word phrase or an RE2 regex."""

    raw: str
    phrase: str = ""
    regex: Any = None

    def found_in(self, text: Text) -> bool:
        if self.regex is not None:
            return self.regex.search(text.folded) is not None
        return f" {self.phrase} " in text.padded_words


@lru_cache(maxsize=4096)
def keyword(raw: str) -> Keyword:
    """Compile one keyword; ``ValueError`` with a reason a person can act on."""
    if raw.startswith(REGEX_PREFIX):
        pattern = raw[len(REGEX_PREFIX) :]
        compiled = compile_regex(pattern, case_sensitive=False)
        if compiled.search("") is not None:
            raise ValueError(f"regular expression {pattern!r} matches empty text, so everything")
        return Keyword(raw, regex=compiled)
    phrase = words(raw)
    if not phrase:
        what = (
            "an empty keyword"
            if not raw.strip()
            else f"keyword {raw!r} has no letters or digits and"
        )
        raise ValueError(f"{what} would match everything; remove it")
    return Keyword(raw, phrase=phrase)


def check_keywords(values: Iterable[str]) -> tuple[str, ...]:
    """Validate keywords (as given); raises ``ValueError`` on the first bad one."""
    out = tuple(values)
    for raw in out:
        keyword(raw)
    return out


def any_found(keywords: Iterable[str], text: Text) -> bool:
    """True when at least one keyword (already validated) occurs in ``text``."""
    return any(keyword(k).found_in(text) for k in keywords)


def has_words(text: object, phrase: str) -> bool:
    """``phrase`` (a keyword) occurs in ``text``: the petition's watched words."""
    return keyword(phrase).found_in(Text.of(text))


def check_regexes(patterns: list[str]) -> list[str]:
    """Validate operator regexes (webpage ``noise``): compiled by RE2, multiline."""
    for pattern in patterns:
        compile_regex(pattern, multiline=True)
    return patterns


Keywords = Annotated[tuple[str, ...], AfterValidator(check_keywords)]
"""A config list of keywords, each checked where it is declared."""

Regexes = Annotated[list[str], AfterValidator(check_regexes)]
"""A config list of RE2 regular expressions (multiline), checked where declared."""
