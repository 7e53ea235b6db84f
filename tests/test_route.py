"""Routing rules: one table for static routes and chat subscriptions alike."""

from __future__ import annotations

import pytest

from alerts.model import Event, EventKind, Subscription
from alerts.route import Router, matches

AWARD = Event(
    source_id="ice-awards",
    kind=EventKind.UPDATED,
    key="k",
    title="Palantir award modified",
    topics=("contracts",),
    fields={"amount": 30_000_000.0, "recipient": "PALANTIR USG INC"},
)


@pytest.mark.parametrize(
    ("sub", "expected"),
    [
        pytest.param(Subscription("r", topic="contracts"), True, id="topic"),
        pytest.param(Subscription("r", topic="news"), False, id="other-topic"),
        pytest.param(Subscription("r", source="ice-awards"), True, id="source"),
        pytest.param(Subscription("r", source="other"), False, id="other-source"),
        pytest.param(Subscription("r"), True, id="everything"),
        pytest.param(
            Subscription("r", kinds=frozenset({EventKind.NEW})), False, id="kind-filtered"
        ),
        pytest.param(
            Subscription("r", kinds=frozenset({EventKind.UPDATED, EventKind.NEW})),
            True,
            id="kind-ok",
        ),
        pytest.param(Subscription("r", include=("PALANTIR",)), True, id="keyword-case-insensitive"),
        pytest.param(
            Subscription("r", include=("anduril", "palantir usg")), True, id="any-keyword-in-fields"
        ),
        pytest.param(Subscription("r", include=("anduril",)), False, id="keyword-missing"),
        pytest.param(Subscription("r", exclude=("modified",)), False, id="excluded"),
        pytest.param(Subscription("r", min_amount=1e6), True, id="amount-above-minimum"),
        pytest.param(Subscription("r", min_amount=1e9), False, id="amount-below-minimum"),
    ],
)
def test_matches(sub: Subscription, expected: bool) -> None:
    assert matches(sub, AWARD) is expected


def test_min_amount_does_not_drop_events_without_an_amount() -> None:
    news = Event(source_id="wired", kind=EventKind.NEW, key="n", title="ICE", topics=("news",))
    assert matches(Subscription("r", min_amount=1e6), news)


def test_router_dedupes_destinations_and_combines_static_and_dynamic() -> None:
    router = Router(static=[Subscription("ops", topic="contracts"), Subscription("ops")])
    router.set_dynamic(
        [Subscription("room", include=("palantir",)), Subscription("quiet", topic="news")], 1
    )
    assert router.route(AWARD) == ("ops", "room")
