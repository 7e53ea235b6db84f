"""Value types shared by the operator config and every adapter's and sink's
``Options`` model, validated where they are declared.

* ``DurationS`` — seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``:
  finite, never negative, at most ``MAX_DURATION_S`` (a year).
* ``PositiveDurationS`` — the same, and more than zero (timeouts, leases).
* ``IntervalS`` — a poll interval: at least ``MIN_INTERVAL_S``.
* ``HttpUrl`` — an absolute ``http://`` or ``https://`` URL with a host.

Kept apart from ``alerts.config`` so that adapters and sinks use them without
importing the config loader. Messages never repeat a URL (it may hold a secret).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator
from yarl import URL

MIN_INTERVAL_S = 30.0
MAX_DURATION_S = 366 * 86400.0
MAX_URL_CHARS = 4096

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_EXPECTED = "expected a duration like 90, '90s', '15m' or '1h'"


def parse_duration_s(value: Any) -> float:
    """Seconds from ``90``, ``90.5``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``.

    Raises ``ValueError`` for anything else, and for values that are not finite,
    negative or longer than a year.
    """
    seconds = _seconds(value)
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, not {seconds}")
    if seconds < 0:
        raise ValueError("must not be negative")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"must be at most {MAX_DURATION_S / 86400:.0f} days")
    return seconds


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(_EXPECTED)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and len(value) <= 64:
        text = value.strip().replace(" ", "")
        if _NUMBER.fullmatch(text):
            return float(text)
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts).lower() == text.lower():
            return sum(float(n) * _UNIT_S[u.lower()] for n, u in parts)
    raise ValueError(f"{_EXPECTED}, not {_shown(value)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be more than 0 s")
    return seconds


def at_least_s(minimum: float) -> AfterValidator:
    """A validator for durations that may not be shorter than ``minimum`` seconds."""

    def check(seconds: float) -> float:
        if seconds < minimum:
            raise ValueError(f"must be at least {minimum:g} s")
        return seconds

    return AfterValidator(check)


DurationS = Annotated[float, BeforeValidator(parse_duration_s)]
PositiveDurationS = Annotated[DurationS, AfterValidator(_positive)]
IntervalS = Annotated[DurationS, at_least_s(MIN_INTERVAL_S)]


def check_http_url(value: Any) -> str:
    """``value`` if it is an absolute http(s) URL with a host, else ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError("must be a URL (a string)")
    if not value:
        raise ValueError("must not be empty")
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        parsed = URL(value)
    except ValueError as exc:
        reason = str(exc) if value not in str(exc) else ""
        raise ValueError("is not a valid URL" + (f" ({reason})" if reason else "")) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise ValueError("must be an absolute URL starting with https:// or http://")
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme {scheme!r} is not allowed: only http and https")
    if not parsed.host or not parts.hostname:
        raise ValueError("has no host name")
    return value


HttpUrl = Annotated[str, BeforeValidator(check_http_url)]
