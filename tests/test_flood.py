"""The flood breaker through the detector (pure): identity rotation and rate jumps are
held, counted and summarised once the source settles; rows stay bounded; ordinary
polls, bursts and sources whose items share one link are left alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerts.detect import Detection, detect, fingerprint, snapshot
from alerts.flood import status
from alerts.model import JSON, EventKind, Item, Observation
from alerts.store import ItemState

from .test_detect import NOW, spec

FIELDS = ("title", "amount")


def story(n: int, key: str, *, day: int = 0, url: str | None = "") -> Item:
    """Story ``n`` as a feed lists it under ``key``: its link and title and date do
    not depend on the key."""
    link = f"https://news.example/story/{n}?utm_source=feed" if url == "" else url
    return Item(
        key=key,
        title=f"Story {n}",
        url=link,
        published=datetime(2026, 11, 1 + day, 9, 0, tzinfo=NOW.tzinfo) + timedelta(minutes=n),
    )


@dataclass
class Source:
    """A source's stored state across polls, as the store would keep it."""

    items: dict[str, ItemState] = field(default_factory=dict)
    detector: Mapping[str, JSON] = field(default_factory=dict)
    baselined: bool = False

    def poll(self, items: Sequence[Item], now: datetime = NOW, **kw: object) -> Detection:
        found = detect(
            spec=spec(fingerprint=FIELDS, max_events=100, **kw),
            observation=Observation(items=tuple(items)),
            known={k: v for k, v in self.items.items() if k in {it.key for it in items}},
            baselined=self.baselined,
            detector_state=self.detector,
            now=now,
        )
        self.items.update(found.items)
        self.detector, self.baselined = found.detector, True
        return found


def rotated(round_no: int, n: int = 10) -> list[Item]:
    return [story(i, f"guid-{round_no}-{i}") for i in range(n)]


def test_rotating_ids_are_held_not_recorded_and_summarised_once_settled() -> None:
    src = Source()
    src.poll(rotated(0))  # baseline
    rows = len(src.items)
    for round_no in range(1, 6):
        found = src.poll(rotated(round_no))
        assert found.events == [], round_no  # held: 10 would-be alerts per poll
        assert found.flood is not None and found.flood.holding
        assert found.flood.started == (round_no == 1)
        assert found.flood.held_now == 10
    assert len(src.items) == rows  # ids that change on every poll are never written
    assert "held since 2026-11-29 12:00:00: 50 alerts" in (status(src.detector) or "")
    assert "10 of 10 new items look like items already seen" in (status(src.detector) or "")

    calm = src.poll(rotated(0))  # the source went back to its real ids: calm once
    assert calm.events == [] and calm.flood is not None and calm.flood.holding
    settled = src.poll(rotated(0))
    assert settled.flood is not None and settled.flood.settled
    [summary] = settled.events
    assert summary.kind is EventKind.SUMMARY
    assert summary.fields["count"] == 50 and summary.fields["repeats"] == 50
    assert "50 alerts from Source were held" in summary.title
    assert "nothing new among them" in summary.summary
    assert status(src.detector) is None
    assert src.poll(rotated(0)).events == []  # and no second summary


def test_a_one_time_change_of_ids_is_recorded_on_its_second_poll_and_settles() -> None:
    src = Source()
    src.poll([story(i, f"old-{i}") for i in range(8)])
    new_ids = [story(i, f"new-{i}") for i in range(8)]
    first = src.poll(new_ids)
    assert first.events == [] and not set(first.items) & {f"new-{i}" for i in range(8)}
    second = src.poll(new_ids)  # the same new ids again: a lasting change, recorded
    assert second.events == [] and set(second.items) == {f"new-{i}" for i in range(8)}
    assert src.poll(new_ids).events == []  # known now: calm
    [summary] = src.poll(new_ids).events
    assert summary.fields == {"count": 16, "repeats": 16, "titles": []}


def test_real_news_among_a_rotation_is_listed_in_the_summary() -> None:
    src = Source()
    src.poll(rotated(0))
    src.poll([*rotated(1), story(99, "scoop")])
    src.poll(rotated(0))
    [summary] = src.poll(rotated(0)).events
    assert summary.fields["titles"] == ["Story 99"]
    assert "1 new: Story 99" in summary.summary


def test_a_few_look_alikes_among_real_news_are_alerted_as_before() -> None:
    src = Source()
    src.poll(rotated(0))
    fresh = [story(100 + i, f"fresh-{i}") for i in range(8)]
    found = src.poll([*rotated(0)[2:], story(0, "rekeyed-0"), story(1, "rekeyed-1"), *fresh])
    assert len(found.events) == 10 and found.flood is not None and not found.flood.holding


def test_items_that_share_one_link_are_told_apart_by_title_and_date() -> None:
    """A petition's signatories all link to the petition: a shared link names nothing."""
    page = "https://petition.example/letter"
    src = Source()
    src.poll([story(i, f"s{i}", url=page) for i in range(10)])
    signers = [story(100 + i, f"s{100 + i}", url=page) for i in range(10)]
    found = src.poll([*[story(i, f"s{i}", url=page) for i in range(10)], *signers])
    assert len(found.events) == 10  # new signatories, not look-alikes


def learnt(per_hour: int = 1, days: int = 2) -> tuple[Source, datetime]:
    """A source polled hourly for ``days``, with ``per_hour`` new stories each time."""
    src, now, n = Source(), NOW, 0
    src.poll([story(n, f"k{n}")], now)
    for _ in range(days * 24):
        now += timedelta(hours=1)
        n += per_hour
        found = src.poll([story(n - i, f"k{n - i}") for i in range(per_hour)], now)
        assert found.flood is not None and not found.flood.holding
    return src, now


def test_a_rate_jump_far_beyond_the_history_is_held() -> None:
    src, now = learnt()
    burst = [story(1000 + i, f"burst-{i}", day=20) for i in range(30)]
    found = src.poll(burst, now + timedelta(hours=1))
    assert found.events == [] and found.flood is not None and found.flood.started
    assert "30 alerts in one poll where its history predicts 1.0" in found.flood.reason
    assert set(found.items) == {f"burst-{i}" for i in range(30)}  # real items: recorded


def test_a_busy_hour_within_reason_is_not_a_flood() -> None:
    src, now = learnt(per_hour=3)
    busy = [story(1000 + i, f"busy-{i}", day=20) for i in range(25)]  # < 10x 3 per hour
    found = src.poll(busy, now + timedelta(hours=1))
    assert len(found.events) == 25 and found.flood is not None and not found.flood.holding


def test_no_rate_verdict_before_a_day_of_history() -> None:
    src = Source()
    src.poll([story(0, "k0")])
    burst = [story(1000 + i, f"burst-{i}", day=20) for i in range(40)]
    found = src.poll(burst, NOW + timedelta(hours=1))
    assert len(found.events) == 40


def test_a_store_from_before_the_breaker_learns_from_the_items_it_knows() -> None:
    """A source baselined before the breaker existed has no memory yet: its known
    items seed it, so rotation is caught on its first poll after the upgrade."""
    items = rotated(0)
    src = Source(
        items={it.key: ItemState(fingerprint(it, FIELDS), snapshot(it, FIELDS)) for it in items}
    )
    src.baselined = True
    src.poll(items)  # an unchanged poll with no breaker memory
    assert src.poll(rotated(1)).events == []
