"""The detector as a pure function: a table of (stored state, observation) -> events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from alerts.config import SourceSpec
from alerts.detect import detect, fingerprint, snapshot
from alerts.model import JSON, Event, EventKind, Item, Observation
from alerts.sources import Derived
from alerts.store import ItemState


class NoOptions(BaseModel):
    pass


NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def spec(**kw: object) -> SourceSpec:
    base: dict[str, object] = dict(
        id="src",
        kind="feed",
        url="",
        interval_s=60.0,
        topics=("news",),
        options=NoOptions(),
        fingerprint=("title", "amount"),
        backfill=0,
        max_events=20,
        name="Source",
        origin="t",
    )
    base.update(kw)
    return SourceSpec(**base)  # type: ignore[arg-type]


def item(key: str, title: str | None = None, amount: float | None = None, minutes: int = 0) -> Item:
    fields = {"amount": amount} if amount is not None else {}
    return Item(
        key=key,
        title=title or key.upper(),
        fields=fields,
        published=NOW - timedelta(minutes=minutes),
    )


def known(*items: Item, fields: Sequence[str] = ("title", "amount")) -> dict[str, ItemState]:
    return {it.key: ItemState(fingerprint(it, fields), snapshot(it, fields)) for it in items}


CASES = [
    pytest.param(
        {},
        False,
        [item("a"), item("b")],
        spec(),
        [],
        id="baseline-alerts-nothing",
    ),
    pytest.param(
        {},
        False,
        [item("a", minutes=3), item("b", minutes=1), item("c", minutes=2)],
        spec(backfill=2),
        [("new", "c"), ("new", "b")],
        id="backfill-newest-n-oldest-first",
    ),
    pytest.param(
        known(item("a")),
        True,
        [item("a"), item("b")],
        spec(),
        [("new", "b")],
        id="new-key",
    ),
    pytest.param(
        known(item("a", amount=100.0)),
        True,
        [item("a", amount=250.0)],
        spec(),
        [("updated", "a")],
        id="modified-amount-is-updated",
    ),
    pytest.param(
        known(item("a", amount=100.0)),
        True,
        [item("a", amount=100.0)],
        spec(),
        [],
        id="unchanged-is-silent",
    ),
    pytest.param(
        known(item("a", "Old title"), fields=("amount",)),
        True,
        [item("a", "New title")],
        spec(fingerprint=("amount",)),
        [],
        id="fingerprint-fields-are-configurable",
    ),
    pytest.param(
        known(item("a", "Same  title ")),
        True,
        [item("a", "Same title")],
        spec(),
        [],
        id="whitespace-is-not-a-change",
    ),
    pytest.param(
        known(item("a"), item("b")),
        True,
        [item("b")],
        spec(),
        [],
        id="dropping-out-is-silent",
    ),
    pytest.param(
        known(item("a")),
        True,
        [item("b"), item("b", "dup")],
        spec(),
        [("new", "b")],
        id="duplicate-key-in-one-fetch",
    ),
    pytest.param(
        known(),
        True,
        [item(f"k{i}", minutes=i) for i in range(6)],
        spec(max_events=3),
        [("new", "k5"), ("new", "k4"), ("summary", None)],
        id="cap-summarises-the-excess",
    ),
]


@pytest.mark.parametrize(("stored", "baselined", "items", "source", "expected"), CASES)
def test_detect(
    stored: Mapping[str, ItemState],
    baselined: bool,
    items: list[Item],
    source: SourceSpec,
    expected: list[tuple[str, str | None]],
) -> None:
    found = detect(
        spec=source,
        observation=Observation(items=tuple(items)),
        known=stored,
        baselined=baselined,
        detector_state={},
        now=NOW,
    )
    got = [(e.kind.value, None if e.kind is EventKind.SUMMARY else e.key) for e in found.events]
    assert got == expected
    assert all(e.topics == ("news",) for e in found.events)


def test_updated_event_carries_old_and_new() -> None:
    found = detect(
        spec=spec(),
        observation=Observation(items=(item("a", amount=250.0),)),
        known=known(item("a", amount=100.0)),
        baselined=True,
        detector_state={},
        now=NOW,
    )
    [event] = found.events
    assert event.changes == {"amount": (100.0, 250.0)}
    assert found.items["a"].snapshot["amount"] == 250.0


def test_summary_counts_what_it_folds() -> None:
    found = detect(
        spec=spec(max_events=3),
        observation=Observation(items=tuple(item(f"k{i}") for i in range(10))),
        known={},
        baselined=True,
        detector_state={},
        now=NOW,
    )
    summary = found.events[-1]
    assert summary.fields["count"] == 8
    assert found.dropped == 8
    assert summary.title == "8 more updates from Source"
    assert {e.source_label for e in found.events} == {"Source"}  # the configured name


class Deriving:
    """An adapter whose derive hook folds new items into one delta event."""

    def derive(
        self,
        *,
        observation: Observation,
        new_items: Sequence[Item],
        updated_items: Sequence[tuple[Item, Mapping[str, JSON]]],
        state: Mapping[str, JSON],
        now: datetime,
        baseline: bool,
    ) -> Derived:
        total = int(state.get("total", 0)) + len(new_items)
        events = (
            []
            if baseline
            else [
                Event(
                    source_id="src", kind=EventKind.DELTA, key="delta", title=f"+{len(new_items)}"
                )
            ]
        )
        keep = frozenset(it.key for it in new_items if it.key.startswith("vip"))
        return Derived(events=events, state={"total": total}, keep_item_events=keep)


def test_derive_hook_adds_events_folds_items_and_keeps_state() -> None:
    found = detect(
        spec=spec(),
        observation=Observation(items=(item("x"), item("vip1"), item("y"))),
        known={},
        baselined=True,
        detector_state={"adapter": {"total": 10}},
        adapter=Deriving(),
        now=NOW,
    )
    assert sorted((e.kind.value, e.key) for e in found.events) == [
        ("delta", "delta"),
        ("new", "vip1"),
    ]
    assert found.detector["adapter"] == {"total": 13}
    delta = next(e for e in found.events if e.kind is EventKind.DELTA)
    assert delta.topics == ("news",)  # the detector fills in the source's topics
    assert delta.source_name == "Source"
