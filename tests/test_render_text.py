"""Platform-neutral rendering: the same key facts on every platform."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.model import Event, EventKind
from alerts.render.text import facts, render_text

WHEN = datetime(2026, 1, 28, tzinfo=UTC)


def test_award_modification_shows_recipient_amount_change_and_delta() -> None:
    event = Event(
        source_id="ice-awards",
        kind=EventKind.UPDATED,
        key="k",
        title="Palantir modification",
        fields={"recipient": "PALANTIR USG INC", "amount": 125_754_750.0, "delta": 29_854_750.0},
        changes={"amount": (95_900_000.0, 125_754_750.0)},
        occurred_at=WHEN,
    )
    assert facts(event)[:3] == [
        ("Recipient", "PALANTIR USG INC"),
        ("Amount", "$95,900,000 → $125,754,750 (+$29,854,750)"),
        ("Change", "+$29,854,750"),
    ]


def test_petition_delta_shows_count_and_plain_delta() -> None:
    event = Event(
        source_id="letter",
        kind=EventKind.DELTA,
        key="d",
        title="12 new signatures",
        fields={"count": 1_512, "delta": 12, "by_company": {"Google": 7, "Microsoft": 5}},
    )
    assert facts(event) == [
        ("Count", "1,512"),
        ("Change", "+12"),
        ("By company", "Google: 7, Microsoft: 5"),
    ]


def test_plain_text_alert_has_headline_link_summary_and_time() -> None:
    event = Event(
        source_id="wired",
        kind=EventKind.NEW,
        key="k",
        title="ICE buys more software",
        url="https://example.org/a",
        summary="word " * 200,
        topics=("news",),
        occurred_at=WHEN,
    )
    text = render_text(event, source_label="Wired")
    lines = text.splitlines()
    assert lines[0] == "New · Wired: ICE buys more software"
    assert lines[1] == "  https://example.org/a"
    assert lines[2].endswith("…")
    assert len(lines[2]) <= 403
    assert lines[-1] == "  2026-01-28 00:00 UTC [news]"


def test_a_named_source_is_shown_by_its_name_and_the_name_is_stored() -> None:
    event = Event(source_id="wired", kind=EventKind.NEW, key="k", title="T", source_name="Wired")
    assert render_text(event).splitlines()[0] == "New · Wired: T"
    assert Event.from_json(event.to_json()).source_label == "Wired"
    unnamed = Event.from_json({**event.to_json(), "source_name": None})
    assert render_text(unnamed).splitlines()[0] == "New · wired: T"
