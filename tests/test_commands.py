"""The one command grammar (shared by Matrix and Discord)."""

from __future__ import annotations

import pytest

from alerts.chat.commands import Command, CommandError, parse
from alerts.model import EventKind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", Command("help"), id="empty-is-help"),
        pytest.param("help", Command("help"), id="help"),
        pytest.param("TOPICS", Command("topics"), id="case-insensitive-verb"),
        pytest.param("subscribe news", Command("subscribe", topic="news"), id="subscribe"),
        pytest.param(
            "subscribe contracts kinds=new,updated keywords=palantir,'anduril' min_amount=1M",
            Command(
                "subscribe",
                topic="contracts",
                kinds=frozenset({EventKind.NEW, EventKind.UPDATED}),
                include=("palantir", "anduril"),
                min_amount=1_000_000.0,
            ),
            id="subscribe-with-filters",
        ),
        pytest.param(
            'subscribe news exclude="sports, weather"',
            Command("subscribe", topic="news", exclude=("sports", "weather")),
            id="quoted-exclude",
        ),
        pytest.param(
            "subscribe contracts min_change=1M keywords=palantir",
            Command("subscribe", topic="contracts", include=("palantir",), min_change=1e6),
            id="min-change",
        ),
        pytest.param(
            "subscribe contracts keywords='re:immigration ?os',ICE min_change=$2.5k",
            Command(
                "subscribe",
                topic="contracts",
                include=("re:immigration ?os", "ICE"),
                min_change=2500.0,
            ),
            id="regex-keyword",
        ),
        pytest.param("unsubscribe all", Command("unsubscribe", topic="all"), id="unsubscribe-all"),
    ],
)
def test_parse(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("frobnicate", "unknown command", id="unknown-verb"),
        pytest.param("subscribe", "usage: subscribe TOPIC", id="missing-topic"),
        pytest.param("subscribe news kinds=bogus", "unknown event kind 'bogus'", id="bad-kind"),
        pytest.param("subscribe news colour=red", "unknown option(s) colour", id="bad-option"),
        pytest.param(
            "subscribe news min_amount=lots", "min_amount must be an amount", id="bad-amount"
        ),
        pytest.param("subscribe news min_change=-5", "min_change must be an amount", id="negative"),
        pytest.param("subscribe news min_change=nan", "min_change must be an amount", id="nan"),
        pytest.param("subscribe news min_change=inf", "min_change must be an amount", id="inf"),
        pytest.param(
            "subscribe news keywords=re:(a",
            "keywords: regular expression '(a': missing )",
            id="bad-re",
        ),
        pytest.param(
            "subscribe news keywords=re:a*", "matches empty text", id="regex-matches-everything"
        ),
        pytest.param("subscribe news exclude=,--,", "exclude: keyword '--'", id="punctuation-only"),
        pytest.param("list extra", "list takes no arguments", id="extra-args"),
        pytest.param("subscribe 'unterminated", "cannot read that command", id="bad-quote"),
        # Review of digests and quiet hours: each of these used to be taken silently
        # (an empty tz= set nothing, the last of two digest= won, Arabic-Indic digits
        # were read as minutes).
        pytest.param("subscribe news tz=", "tz= needs a value", id="empty-tz"),
        pytest.param("subscribe news digest=hourly tz= ", "tz= needs a value", id="empty-tz-end"),
        pytest.param(
            "subscribe news digest=hourly digest=daily@09:00",
            "digest= is given twice",
            id="repeated-digest",
        ),
        pytest.param(
            "subscribe news tz=UTC tz=Europe/Paris", "tz= is given twice", id="repeated-tz"
        ),
        pytest.param(
            "subscribe news digest=daily@1\u0662:3\u0660",
            "is not a time of day HH:MM",
            id="arabic-indic-digits",
        ),
        pytest.param(
            "subscribe news quiet=\uff12\uff12:00-07:00",
            "is not a time of day HH:MM",
            id="fullwidth-digits",
        ),
        pytest.param("subscribe news tz=localtime", "unknown time zone 'localtime'", id="tz-file"),
        pytest.param("subscribe news tz=" + "A" * 3000, "unknown time zone", id="tz-too-long"),
        pytest.param("subscribe news tz=../../etc/passwd", "unknown time zone", id="tz-path"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)
