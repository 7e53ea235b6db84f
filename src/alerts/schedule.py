"""Digests and quiet hours: when an alert for a room is held, and until when.

A room (a config destination) and each of its subscriptions may set::

    digest = "hourly" | "daily@09:00" | "off"
    quiet  = "22:00-07:00" | "off"
    tz     = "Europe/Paris"          (an IANA name; UTC when none is given)
    urgent = "milestone"             (event kinds that are never held)

A subscription's setting wins over its room's, one setting at a time
(``Schedule.over``). ``release_at`` is the whole rule, pure and clock-free: given
the settings, an event's kind and the instant it was detected, it returns when the
alert may be shown (``None``: now). Held alerts wait in the outbox until then and
are shown together as one digest message (``alerts.digest``).

Times are wall-clock times in ``tz``, computed with ``zoneinfo``, so they stay right
across daylight-saving changes: ``daily@09:00`` is 09:00 local on both sides of a
change, and quiet hours that span a change end at the local end time (a night that
loses an hour is an hour shorter). A local time that a change skips (02:30 on the
night clocks go forward) is read with the offset before the change, i.e. an hour
later on the new clock; one that happens twice is its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.model import EventKind

OFF = "off"
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DAILY = re.compile(r"^daily@(.+)$")
SETTINGS = ("digest", "quiet", "tz", "urgent")
"""The names of the settings, in chat commands and in ``[destinations.NAME]``."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """Digest and quiet-hours settings, each normalised text or ``None`` (not set
    here: the room's, or nothing). ``urgent`` holds event kind names."""

    digest: str | None = None
    quiet: str | None = None
    tz: str | None = None
    urgent: tuple[str, ...] | None = None

    def over(self, base: Schedule | None) -> Schedule:
        """These settings, falling back to ``base``'s one by one."""
        if base is None:
            return self
        return Schedule(
            self.digest if self.digest is not None else base.digest,
            self.quiet if self.quiet is not None else base.quiet,
            self.tz if self.tz is not None else base.tz,
            self.urgent if self.urgent is not None else base.urgent,
        )

    @property
    def holds(self) -> bool:
        """Does anything here ever hold an alert?"""
        return self.digest not in (None, OFF) or self.quiet not in (None, OFF)

    @property
    def empty(self) -> bool:
        return self == Schedule()

    def describe(self) -> str:
        """``digest=daily@09:00 quiet=22:00-07:00 tz=Europe/Paris urgent=milestone``."""
        parts = [
            f"{name}={value}"
            for name, value in (("digest", self.digest), ("quiet", self.quiet), ("tz", self.tz))
            if value is not None
        ]
        if self.urgent is not None:
            parts.append("urgent=" + (",".join(self.urgent) or "none"))
        return " ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name in SETTINGS
            if (value := getattr(self, name)) is not None
        }

    @classmethod
    def from_json(cls, data: object) -> Schedule | None:
        if not isinstance(data, dict) or not data:
            return None
        urgent = data.get("urgent")
        return cls(
            data.get("digest"),
            data.get("quiet"),
            data.get("tz"),
            None if urgent is None else tuple(urgent),
        )


def parse_schedule(
    *,
    digest: str | None = None,
    quiet: str | None = None,
    tz: str | None = None,
    urgent: str | Iterable[str] | None = None,
) -> Schedule | None:
    """Checked, normalised settings (``None`` when none is given); a bad one raises
    ``ValueError`` saying which and why."""
    schedule = Schedule(
        None if not digest else parse_digest(digest),
        None if not quiet else parse_quiet(quiet),
        None if not tz else parse_tz(tz),
        None if urgent is None or urgent == "" else parse_urgent(urgent),
    )
    return None if schedule.empty else schedule


def parse_digest(value: str) -> str:
    text = value.strip().lower()
    if text in (OFF, "hourly"):
        return text
    daily = _DAILY.match(text)
    if daily is not None:
        return f"daily@{_clock(daily.group(1), 'digest')}"
    raise ValueError(f"digest must be hourly, daily@HH:MM or off, not {value!r}")


def parse_quiet(value: str) -> str:
    text = value.strip().lower()
    if text == OFF:
        return text
    start, dash, end = text.partition("-")
    if not dash:
        raise ValueError(f"quiet must be HH:MM-HH:MM (e.g. 22:00-07:00) or off, not {value!r}")
    first, last = _clock(start, "quiet"), _clock(end, "quiet")
    if first == last:
        raise ValueError(f"quiet hours {value!r} start and end at the same time")
    return f"{first}-{last}"


def parse_tz(value: str) -> str:
    name = value.strip()
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as Europe/Paris or UTC"
        ) from None
    return name


def parse_urgent(value: str | Iterable[str]) -> tuple[str, ...]:
    names = value.split(",") if isinstance(value, str) else list(value)
    kinds: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if name in ("", "none"):
            continue
        try:
            kinds.append(EventKind(name).value)
        except ValueError:
            known = ", ".join(k.value for k in EventKind)
            raise ValueError(f"urgent: unknown event kind {raw!r}; kinds are: {known}") from None
    return tuple(sorted(set(kinds)))


def _clock(text: str, what: str) -> str:
    match = _CLOCK.match(text.strip())
    if match is None:
        raise ValueError(f"{what}: {text!r} is not a time of day HH:MM (00:00 to 23:59)")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _time(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


# --- the rule --------------------------------------------------------------------------


def release_at(schedule: Schedule | None, kind: EventKind, instant: datetime) -> datetime | None:
    """When an alert of ``kind`` detected at ``instant`` may be shown: ``None`` for
    now, else a later UTC instant (the next digest time, or the end of quiet hours,
    whichever is later)."""
    if schedule is None or not schedule.holds or kind.value in (schedule.urgent or ()):
        return None
    zone = ZoneInfo(schedule.tz or "UTC")
    at = instant.astimezone(UTC)
    release: datetime | None = None
    if schedule.digest == "hourly":
        release = next_hour(at, zone)
    elif schedule.digest and schedule.digest.startswith("daily@"):
        release = next_local(at, _time(schedule.digest.removeprefix("daily@")), zone)
    quiet = _quiet(schedule.quiet)
    if quiet is not None:
        check = release or at
        if in_quiet(check, quiet, zone):
            release = next_local(check, quiet[1], zone)
    return release


def hold_key(schedule: Schedule) -> str:
    """What holds alerts under ``schedule``: its digest, else ``quiet``."""
    digest = schedule.digest
    return digest if digest is not None and digest != OFF else "quiet"


def _quiet(value: str | None) -> tuple[time, time] | None:
    if value in (None, OFF):
        return None
    start, end = value.split("-")
    return _time(start), _time(end)


def in_quiet(instant: datetime, quiet: tuple[time, time], zone: ZoneInfo) -> bool:
    """Is ``instant`` inside the quiet hours [start, end) on the local clock?"""
    start, end = quiet
    now = instant.astimezone(zone).time().replace(tzinfo=None)
    if start < end:
        return start <= now < end
    return now >= start or now < end  # the window spans midnight


def local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at ``at`` on the clock of ``zone``, as a UTC instant."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def next_local(instant: datetime, at: time, zone: ZoneInfo) -> datetime:
    """The first instant strictly after ``instant`` whose local time is ``at``."""
    day = instant.astimezone(zone).date()
    for offset in range(3):
        candidate = local(day + timedelta(days=offset), at, zone)
        if candidate > instant:
            return candidate
    raise AssertionError("a local time recurs within three days")  # pragma: no cover


def next_hour(instant: datetime, zone: ZoneInfo) -> datetime:
    """The first instant strictly after ``instant`` at a full hour of the local clock."""
    offset = instant.astimezone(zone).utcoffset() or timedelta()
    wall = (instant + offset).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    candidate = wall - offset
    return candidate if candidate > instant else candidate + timedelta(hours=1)
