"""The schedule rule (``alerts.schedule.release_at``) at fixed instants around the
daylight-saving changes of 2026: Europe/Paris changes on 2026-03-29 (01:00 UTC, 02:00
CET becomes 03:00 CEST) and 2026-10-25 (01:00 UTC, 03:00 CEST becomes 02:00 CET);
America/New_York on 2026-03-08 (07:00 UTC) and 2026-11-01 (06:00 UTC). The dates are
those of the IANA tz database (``tzdata``) that ``zoneinfo`` reads."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.model import EventKind
from alerts.schedule import Schedule, hold_key, parse_schedule, release_at

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
NEW = EventKind.NEW


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def sched(**settings: str) -> Schedule:
    parsed = parse_schedule(**settings)
    assert parsed is not None
    return parsed


# --- daily digests: the same local time on both sides of a change ---------------------


@pytest.mark.parametrize(
    ("detected", "release"),
    [
        # the day before the spring change: 09:00 CET is 08:00 UTC
        pytest.param(utc(2026, 3, 27, 10), utc(2026, 3, 28, 8), id="paris-before-spring"),
        # the night of the change: 09:00 CEST is 07:00 UTC
        pytest.param(utc(2026, 3, 28, 10), utc(2026, 3, 29, 7), id="paris-spring-change"),
        pytest.param(utc(2026, 3, 29, 6, 59), utc(2026, 3, 29, 7), id="paris-just-before"),
        pytest.param(utc(2026, 3, 29, 7), utc(2026, 3, 30, 7), id="paris-on-the-minute"),
        # autumn: 09:00 CEST (07:00 UTC) before, 09:00 CET (08:00 UTC) after
        pytest.param(utc(2026, 10, 23, 10), utc(2026, 10, 24, 7), id="paris-before-autumn"),
        pytest.param(utc(2026, 10, 24, 10), utc(2026, 10, 25, 8), id="paris-autumn-change"),
    ],
)
def test_daily_digest_is_nine_local_on_both_sides_of_a_change(
    detected: datetime, release: datetime
) -> None:
    schedule = sched(digest="daily@09:00", tz="Europe/Paris")
    got = release_at(schedule, NEW, detected)
    assert got == release
    assert got is not None and got.astimezone(PARIS).strftime("%H:%M") == "09:00"


@pytest.mark.parametrize(
    ("detected", "release"),
    [
        pytest.param(utc(2026, 3, 6, 15), utc(2026, 3, 7, 14), id="est"),
        pytest.param(utc(2026, 3, 7, 15), utc(2026, 3, 8, 13), id="spring-change-edt"),
        pytest.param(utc(2026, 10, 31, 14), utc(2026, 11, 1, 14), id="autumn-change-est"),
    ],
)
def test_daily_digest_in_a_us_zone(detected: datetime, release: datetime) -> None:
    schedule = sched(digest="daily@09:00", tz="America/New_York")
    got = release_at(schedule, NEW, detected)
    assert got == release
    assert got is not None and got.astimezone(NEW_YORK).hour == 9


def test_a_daily_time_the_spring_change_skips_is_read_with_the_old_offset() -> None:
    """02:30 does not exist in Paris on 2026-03-29: it is 01:30 UTC (03:30 CEST)."""
    schedule = sched(digest="daily@02:30", tz="Europe/Paris")
    assert release_at(schedule, NEW, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 30)
    assert release_at(schedule, NEW, utc(2026, 3, 29, 12)) == utc(2026, 3, 30, 0, 30)


def test_a_daily_time_the_autumn_change_repeats_is_its_first_occurrence() -> None:
    schedule = sched(digest="daily@02:30", tz="Europe/Paris")
    assert release_at(schedule, NEW, utc(2026, 10, 24, 12)) == utc(2026, 10, 25, 0, 30)


# --- quiet hours across a change --------------------------------------------------------


def test_quiet_hours_over_the_spring_change_end_at_seven_local() -> None:
    """22:00 CET (21:00 UTC) to 07:00 CEST (05:00 UTC): a night an hour shorter."""
    schedule = sched(quiet="22:00-07:00", tz="Europe/Paris")
    assert release_at(schedule, NEW, utc(2026, 3, 28, 20, 59)) is None  # 21:59 CET
    assert release_at(schedule, NEW, utc(2026, 3, 28, 21)) == utc(2026, 3, 29, 5)
    assert release_at(schedule, NEW, utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 5)  # 01:30 CET
    assert release_at(schedule, NEW, utc(2026, 3, 29, 4, 59)) == utc(2026, 3, 29, 5)  # 06:59 CEST
    # 05:30 UTC is 07:30 CEST: quiet hours are over (a fixed +01:00 would say 06:30)
    assert release_at(schedule, NEW, utc(2026, 3, 29, 5, 30)) is None


def test_quiet_hours_over_the_autumn_change_end_at_seven_local() -> None:
    """22:00 CEST (20:00 UTC) to 07:00 CET (06:00 UTC): a night an hour longer; both
    passes through 02:30 are quiet."""
    schedule = sched(quiet="22:00-07:00", tz="Europe/Paris")
    assert release_at(schedule, NEW, utc(2026, 10, 24, 19, 59)) is None
    assert release_at(schedule, NEW, utc(2026, 10, 24, 20)) == utc(2026, 10, 25, 6)
    assert release_at(schedule, NEW, utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 25, 6)  # CEST
    assert release_at(schedule, NEW, utc(2026, 10, 25, 1, 30)) == utc(2026, 10, 25, 6)  # CET
    assert release_at(schedule, NEW, utc(2026, 10, 25, 5, 30)) == utc(2026, 10, 25, 6)  # 06:30
    assert release_at(schedule, NEW, utc(2026, 10, 25, 6)) is None


def test_quiet_hours_in_a_us_zone_over_the_autumn_change() -> None:
    schedule = sched(quiet="22:00-07:00", tz="America/New_York")
    # 23:00 EDT on 31 October; 07:00 EST on 1 November is 12:00 UTC
    assert release_at(schedule, NEW, utc(2026, 11, 1, 3)) == utc(2026, 11, 1, 12)
    assert release_at(schedule, NEW, utc(2026, 11, 1, 12)) is None


def test_daytime_quiet_hours_do_not_span_midnight() -> None:
    schedule = sched(quiet="12:00-14:00")  # UTC
    assert release_at(schedule, NEW, utc(2026, 6, 1, 11, 59)) is None
    assert release_at(schedule, NEW, utc(2026, 6, 1, 12)) == utc(2026, 6, 1, 14)
    assert release_at(schedule, NEW, utc(2026, 6, 1, 14)) is None


# --- hourly digests, digests with quiet hours, urgent kinds ------------------------------


def test_hourly_digest_follows_the_local_clock() -> None:
    paris = sched(digest="hourly", tz="Europe/Paris")
    # 01:30 CET on the night of the change: the next full hour is 03:00 CEST
    assert release_at(paris, NEW, utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1)
    kolkata = sched(digest="hourly", tz="Asia/Kolkata")  # UTC+05:30
    assert release_at(kolkata, NEW, utc(2026, 6, 1, 10, 10)) == utc(2026, 6, 1, 10, 30)
    assert release_at(kolkata, NEW, utc(2026, 6, 1, 10, 30)) == utc(2026, 6, 1, 11, 30)


def test_a_digest_due_in_quiet_hours_waits_for_their_end() -> None:
    schedule = sched(digest="hourly", quiet="22:00-07:00", tz="Europe/Paris")
    assert release_at(schedule, NEW, utc(2026, 6, 1, 12, 10)) == utc(2026, 6, 1, 13)
    # 23:00 CEST falls in quiet hours: 07:00 CEST (05:00 UTC)
    assert release_at(schedule, NEW, utc(2026, 6, 1, 20, 30)) == utc(2026, 6, 2, 5)


def test_urgent_kinds_are_never_held() -> None:
    schedule = sched(quiet="22:00-07:00", tz="Europe/Paris", urgent="milestone")
    night = utc(2026, 3, 28, 23)
    assert release_at(schedule, EventKind.MILESTONE, night) is None
    assert release_at(schedule, EventKind.NEW, night) == utc(2026, 3, 29, 5)
    assert release_at(schedule, EventKind.DELTA, night) == utc(2026, 3, 29, 5)


def test_off_and_nothing_hold_nothing() -> None:
    assert release_at(None, NEW, utc(2026, 1, 1)) is None
    assert release_at(sched(digest="off", quiet="off"), NEW, utc(2026, 1, 1, 23)) is None
    assert release_at(sched(tz="Europe/Paris"), NEW, utc(2026, 1, 1, 23)) is None


# --- settings: parsing, errors, a subscription's over its room's --------------------------


def test_settings_are_normalised_and_described() -> None:
    schedule = sched(digest="Daily@9:05", quiet="22:00-7:00", tz="Europe/Paris", urgent="milestone")
    assert schedule == Schedule("daily@09:05", "22:00-07:00", "Europe/Paris", ("milestone",))
    assert schedule.describe() == (
        "digest=daily@09:05 quiet=22:00-07:00 tz=Europe/Paris urgent=milestone"
    )
    assert Schedule.from_json(schedule.to_json()) == schedule
    assert hold_key(schedule) == "daily@09:05"
    assert hold_key(sched(quiet="22:00-07:00", digest="off")) == "quiet"
    assert parse_schedule() is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tz": "Mars/Olympus_Mons"}, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"tz": "../../etc/passwd"}, "unknown time zone"),
        ({"digest": "weekly"}, "digest must be hourly, daily@HH:MM or off"),
        ({"digest": "daily@25:00"}, "not a time of day"),
        ({"quiet": "22:00"}, "quiet must be HH:MM-HH:MM"),
        ({"quiet": "07:00-07:00"}, "start and end at the same time"),
        ({"urgent": "milestone,loud"}, "unknown event kind 'loud'"),
    ],
)
def test_bad_settings_say_what_is_wrong(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(**settings)


def test_a_subscription_setting_wins_over_its_rooms_one_by_one() -> None:
    room = sched(digest="daily@09:00", quiet="22:00-07:00", tz="Europe/Paris")
    sub = sched(digest="off", urgent="milestone")
    merged = sub.over(room)
    assert merged == Schedule("off", "22:00-07:00", "Europe/Paris", ("milestone",))
    assert release_at(merged, NEW, utc(2026, 6, 1, 12)) is None  # no digest by day
    assert release_at(merged, NEW, utc(2026, 6, 1, 21)) == utc(2026, 6, 2, 5)
