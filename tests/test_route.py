"""Routing rules: one table for static routes and chat subscriptions alike."""

from __future__ import annotations

import pytest

from alerts.keywords import keyword
from alerts.model import Event, EventKind, Subscription
from alerts.route import Router, matches, source_admits

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


def _news(title: str, **fields: object) -> Event:
    return Event(
        source_id="wired", kind=EventKind.NEW, key="n", title=title, topics=("news",), fields=fields
    )


@pytest.mark.parametrize(
    ("keyword", "title", "expected"),
    [
        pytest.param("ICE", "ICE signs a new contract", True, id="whole-word"),
        pytest.param("ICE", "New office chairs", False, id="not-inside-office"),
        pytest.param("ICE", "Police body-cam device", False, id="not-inside-police-device"),
        pytest.param("ICE", "iPhone price drops", False, id="not-inside-price"),
        pytest.param("ice", "Statement on I.C.E.-funded work: ICE, again", True, id="punctuation"),
        pytest.param("cafe", "Protest at the Café Européen", True, id="accent-insensitive"),
        pytest.param("Café", "protest at the cafe", True, id="accent-in-keyword"),
        pytest.param("palantir usg", "Award to PALANTIR USG INC", True, id="phrase"),
        pytest.param("usg palantir", "Award to PALANTIR USG INC", False, id="phrase-order"),
        pytest.param("re:immigration ?os", "ImmigrationOS expands", True, id="regex"),
        pytest.param("re:^ice\\b", "ICE and Palantir", True, id="regex-anchor-case-folded"),
        pytest.param("re:\\bice\\b", "police", False, id="regex-word-boundary"),
        pytest.param("re:(a+)+$", "a" * 50_000 + "b", False, id="catastrophic-pattern-is-linear"),
    ],
)
def test_keywords_match_whole_words_or_re2(keyword: str, title: str, expected: bool) -> None:
    assert matches(Subscription("r", include=(keyword,)), _news(title)) is expected
    assert matches(Subscription("r", exclude=(keyword,)), _news(title)) is not expected


@pytest.mark.parametrize(
    ("sub", "event", "expected"),
    [
        pytest.param(
            Subscription("r", min_change=1e6),
            _news("mod", amount=9e7, delta=0.0),
            False,
            id="zero-modification-of-big-award",
        ),
        pytest.param(
            Subscription("r", min_amount=1e6),
            _news("mod", amount=9e7, delta=0.0),
            True,
            id="min-amount-alone-passes-zero-change",
        ),
        pytest.param(
            Subscription("r", min_change=1e6),
            _news("mod", amount=9e7, delta=-2e6),
            True,
            id="absolute-change",
        ),
        pytest.param(
            Subscription("r", min_change=1e6),
            _news("mod", amount=9e7, delta=999_999.0),
            False,
            id="change-below",
        ),
        pytest.param(
            Subscription("r", min_change=1e6), _news("new award", amount=5.0), True, id="no-delta"
        ),
        pytest.param(
            Subscription("r", min_change=1e6),
            _news("mod", amount=9e7, delta=True),
            True,
            id="bool-is-not-a-number",
        ),
    ],
)
def test_min_change(sub: Subscription, event: Event, expected: bool) -> None:
    assert matches(sub, event) is expected


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        pytest.param("", "empty keyword", id="empty"),
        pytest.param("   ", "empty keyword", id="blank"),
        pytest.param("--", "no letters or digits", id="punctuation-only"),
        pytest.param("re:", "empty regular expression", id="empty-regex"),
        pytest.param("re:(a", "missing \\)", id="unbalanced"),
        pytest.param("re:(?<=x)y", "invalid perl operator", id="lookbehind-not-linear"),
        pytest.param("re:a*", "matches empty text", id="matches-everything"),
    ],
)
def test_bad_keywords_are_refused_with_a_reason(bad: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        keyword(bad)


def test_source_filter_only_holds_back_item_events() -> None:
    review = _news("Review: the best office chairs")
    ice = _news("ICE expands surveillance")
    milestone = Event(source_id="wired", kind=EventKind.MILESTONE, key="m", title="1,000")
    assert not source_admits(("ice", "re:immigra"), (), review)
    assert source_admits(("ice", "re:immigra"), (), ice)
    assert not source_admits((), ("ice",), ice)
    assert source_admits(("ice",), (), milestone)
