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
            "subscribe news min_amount=lots", "min_amount must be a number", id="bad-amount"
        ),
        pytest.param("list extra", "list takes no arguments", id="extra-args"),
        pytest.param("subscribe 'unterminated", "cannot read that command", id="bad-quote"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)
