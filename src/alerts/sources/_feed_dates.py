"""Dates as feeds write them, read to an aware UTC ``datetime`` or ``None``.

Never guesses from the clock: a date with no day (``2003``, ``2003-12``) is the
first day of its year or month, the same at every poll, and text that is not a date
is ``None``. The formats, in the order tried:

* ISO 8601 / W3C-DTF, extended or basic (``2024-01-02T03:04:05Z``,
  ``20240102T030405Z``), partial dates, no zone meaning UTC;
* RFC 822 and its real-world variants: any weekday word (``Tue``, ``Di.``, ``mar.``)
  or none, two-digit years (``< 90`` is 20xx), no seconds or no time, month and day
  swapped, zones as offsets (``+0000``, ``+01:00``), ``GMT+01:00`` (as written),
  ``Etc/GMT-1`` (tz database sign: UTC+1), and names (``PST``, ``PT``, ``CET``,
  ``IST`` = India; an unknown name is UTC);
* ``asctime`` and JavaScript ``Date.toString()`` (``Tue Nov 05 2024 07:03:00
  GMT-0800 (Pacific Standard Time)``);
* anything else ``dateutil`` reads when it contains a four-digit year.
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta

from dateutil import parser as dateutil_parser

_ZONES: dict[str, float] = {
    "ut": 0, "utc": 0, "gmt": 0, "z": 0, "wet": 0, "bst": 1, "cet": 1, "met": 1, "west": 1,
    "cest": 2, "mest": 2, "eet": 2, "eest": 3, "msk": 3, "ist": 5.5, "sgt": 8, "hkt": 8,
    "awst": 8, "jst": 9, "kst": 9, "acst": 9.5, "aest": 10, "aedt": 11, "nzst": 12,
    "nzdt": 13, "nst": -3.5, "ndt": -2.5, "ast": -4, "adt": -3, "at": -4, "est": -5,
    "edt": -4, "et": -5, "cst": -6, "cdt": -5, "ct": -6, "mst": -7, "mdt": -6, "mt": -7,
    "pst": -8, "pdt": -7, "pt": -8, "akst": -9, "akdt": -8, "hst": -10,
}  # fmt: skip
_TZINFOS = {name.upper(): int(hours * 3600) for name, hours in _ZONES.items()}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_ISO = re.compile(
    r"(\d{4})(?:-?(\d\d)(?:-?(\d\d)(?:[T ](\d\d)(?::?(\d\d)(?::?(\d\d)(?:[.,](\d+))?)?)?)?)?)?"
    r"\s*(Z|[+-]\d\d(?::?\d\d)?)?",
    re.IGNORECASE,
)
_RFC822 = re.compile(
    r"(?:[^\W\d_]{2,}\.?(?:,\s*|\s+))?"  # a weekday in any language, or none
    r"(?:(?P<day>\d{1,2})[\s-]+(?P<month>[^\W\d_]{3,})\.?"  # 5 Nov
    r"|(?P<month2>[^\W\d_]{3,})\.?\s+(?P<day2>\d{1,2}),?)"  # Nov 5,
    r"[\s-]+(?P<year>\d{4}|\d{2})"
    r"(?:[\sT,]+(?P<hour>\d{1,2}):(?P<minute>\d\d)(?::(?P<second>\d\d)(?:\.\d+)?)?"
    r"(?:\s*(?P<ampm>[AaPp])\.?[Mm]\.?)?)?"
    r"(?:\s*(?P<etc>Etc/)?(?:GMT|UTC|UT)?\s*(?P<offset>[+-]\d{1,2}(?::?\d\d)?)"
    r"|\s+(?:Etc/)?(?P<zone>[A-Za-z]{1,5}))?"
    r"(?:\s*\(.*\))?",
)
_ASCTIME = re.compile(
    r"[^\W\d_]{3,}\.?\s+([^\W\d_]{3,})\s+(\d{1,2})\s+(?:(\d{4})\s+)?(\d{1,2}):(\d\d)(?::(\d\d))?"
    r"(?:\s+(?:GMT|UTC)?([+-]\d{4})?)?(?:\s+(\d{4}))?(?:\s*\(.*\))?"
)
_USUAL = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d?) "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d\d):(\d\d):(\d\d) "
    r"(GMT|UTC|UT|Z|[+-]\d{4})"
)
_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|2\d\d\d)(?!\d)")
_GMT_OFFSET = re.compile(r"\b(?:GMT|UTC)\s*([+-])", re.IGNORECASE)
_DEFAULT = datetime(2000, 1, 1)
_SEEN_YEAR = datetime.now(UTC).year  # a year that has begun: dates before its end are fine


def parse_date(value: str | None) -> datetime | None:
    """An aware UTC datetime from the date formats feeds use; None if not a date."""
    if not value or len(value) > 100:
        return None
    text = " ".join(value.split())
    when = _usual(text) or _iso(text) or _rfc822(text) or _asctime(text) or _loose(text)
    if when is None or when.year < 1900:
        return None
    if when.year > _SEEN_YEAR + 1 and when.year > datetime.now(UTC).year + 1:
        return None  # the future: a typo, or a clock gone wrong
    return when


def _usual(text: str) -> datetime | None:
    """The RFC 822 date nearly every RSS feed writes, read quickly."""
    found = _USUAL.fullmatch(text)
    if found is None:
        return None
    day, month, year, hour, minute, second, zone = found.groups()
    offset = 0 if zone[0] not in "+-" else _offset_minutes(zone)
    return _utc(
        int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second), 0,
        offset,
    )  # fmt: skip


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    micro: int = 0, offset_min: float = 0,
) -> datetime | None:  # fmt: skip
    try:
        when = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        return when - timedelta(minutes=offset_min) if offset_min else when
    except (ValueError, OverflowError):
        return None


def _offset_minutes(text: str) -> int:
    """``+0100``, ``+01:00``, ``-5`` as minutes east of UTC."""
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (digits, "0") if len(digits) <= 2 else (digits[:-2], digits[-2:])
    return sign * (int(hours) * 60 + int(minutes))


def _iso(text: str) -> datetime | None:
    found = _ISO.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    if hour is None and zone is not None:
        return None  # "2003+01" is not a date
    offset = 0 if zone is None or zone.upper() == "Z" else _offset_minutes(zone)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return _utc(
        int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
        int(second or 0), micro, offset,
    )  # fmt: skip


def _rfc822(text: str) -> datetime | None:
    found = _RFC822.fullmatch(text)
    if found is None:
        return None
    part = found.groupdict()
    month = _MONTHS.get((part["month"] or part["month2"])[:3].lower())
    if month is None:
        return None
    year = int(part["year"])
    if len(part["year"]) == 2:
        year += 2000 if year < 90 else 1900
    hour = int(part["hour"] or 0)
    if part["ampm"] is not None:
        hour = hour % 12 + (12 if part["ampm"] in "Pp" else 0)
    if part["offset"] is not None:
        minutes = _offset_minutes(part["offset"])
        if part["etc"]:  # tz database names invert the sign: Etc/GMT-1 is UTC+1
            minutes = -minutes
    else:
        minutes = int(_ZONES.get((part["zone"] or "").lower(), 0) * 60)
    day = int(part["day"] or part["day2"])
    return _utc(
        year, month, day, hour, int(part["minute"] or 0), int(part["second"] or 0), 0, minutes
    )


def _asctime(text: str) -> datetime | None:
    found = _ASCTIME.fullmatch(text)
    if found is None:
        return None
    month_name, day, year, hour, minute, second, offset, year_after = found.groups()
    month = _MONTHS.get(month_name[:3].lower())
    if month is None or not (year or year_after):
        return None
    return _utc(
        int(year or year_after), month, int(day), int(hour), int(minute), int(second or 0),
        0, _offset_minutes(offset) if offset else 0,
    )  # fmt: skip


def _loose(text: str) -> datetime | None:
    if _YEAR.search(text) is None:
        return None
    text = _GMT_OFFSET.sub(r"\1", text)  # "GMT+1" as written, not POSIX's inverted sign
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            when = dateutil_parser.parse(text, tzinfos=_TZINFOS, default=_DEFAULT)
        except (ValueError, OverflowError, TypeError, ArithmeticError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)
