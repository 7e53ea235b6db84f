"""Embed rendering: facts, colours, escaping and every Discord limit."""

from __future__ import annotations

from typing import Any

import pytest
from discord_helpers import make_event, shown

from alerts.model import EventKind
from alerts.platforms.discord.render import COLOURS, embed_payload


def _fields(payload: dict[str, Any]) -> dict[str, str]:
    return {shown(f["name"]): shown(f["value"]) for f in payload.get("fields", [])}


@pytest.mark.parametrize(
    ("overrides", "expected_fields"),
    [
        pytest.param(
            {},
            {
                "Recipient": "Palantir Technologies Inc.",
                "Amount": "$95,900,000 → $125,900,000 (+$30,000,000)",
            },
            id="award-modification",
        ),
        pytest.param(
            {
                "kind": EventKind.DELTA,
                "source_id": "iceout-letter",
                "fields": {"count": 1234, "delta": 56},
                "changes": {},
            },
            {"Count": "1,234", "Change": "+56"},
            id="petition-delta",
        ),
        pytest.param(
            {
                "kind": EventKind.MILESTONE,
                "fields": {"count": 10_000, "threshold": 10_000},
                "changes": {},
            },
            {"Count": "10,000", "Milestone": "10,000"},
            id="petition-milestone",
        ),
        pytest.param(
            {"kind": EventKind.NEW, "fields": {"amount": 1234.5, "tags": ["a"]}, "changes": {}},
            {"Amount": "$1,234.50"},
            id="new-award-cents-and-nested-skipped",
        ),
    ],
)
def test_key_facts(overrides: dict[str, Any], expected_fields: dict[str, str]) -> None:
    payload = embed_payload(make_event(**overrides))
    assert _fields(payload) == expected_fields


@pytest.mark.parametrize("kind", list(EventKind), ids=[k.value for k in EventKind])
def test_colour_title_footer_timestamp(kind: EventKind) -> None:
    event = make_event(kind=kind)
    payload = embed_payload(event)
    assert payload["color"] == COLOURS[kind]
    assert event.title in shown(payload["title"])
    assert payload["url"] == event.url
    assert payload["footer"]["text"] == f"usaspending-ice · {kind.value}"
    assert payload["timestamp"].startswith("2025-04-10T12:00:00")


def test_a_named_source_is_shown_by_its_name() -> None:
    payload = embed_payload(make_event(source_name="ICE awards *to watch*"))
    assert (
        payload["footer"]["text"] == "ICE awards *to watch* · updated"
    )  # footers show no markdown


def test_colours_differ_per_kind() -> None:
    assert len(set(COLOURS.values())) == len(EventKind)


def test_markdown_and_mentions_escaped() -> None:
    event = make_event(
        title="**Bold** claim by @everyone",
        summary="<@&123456789012345678> and <@123456789012345678> said __this__ @here",
        fields={"recipient": "`code` @everyone"},
        changes={},
    )
    payload = embed_payload(event)
    values = [f["value"] for f in payload["fields"]]
    text = " ".join([payload["title"], payload["description"], *values])
    assert "**" not in text.replace("\\*", "")
    assert "\\*\\*Bold\\*\\*" in payload["title"]
    for raw in ("@everyone", "@here", "<@&123456789012345678>", "<@123456789012345678>"):
        assert raw not in text


def test_unsafe_url_dropped() -> None:
    payload = embed_payload(make_event(url="javascript:alert(1)"))
    assert "url" not in payload


def test_limits_and_clean_cuts() -> None:
    words = "word " * 3000
    event = make_event(
        title="T" * 50 + " " + "long title " * 60,
        summary=words + "*" * 50,
        fields={f"fact_{i:02d}": ("value " * 300) for i in range(40)},
        changes={},
    )
    payload = embed_payload(event)
    assert len(payload["title"]) <= 256
    assert payload["title"].endswith("…")
    assert len(payload["description"]) <= 4096
    assert payload["description"].endswith("…")
    assert not payload["description"].removesuffix("…").endswith("\\")
    assert len(payload["fields"]) <= 25
    for field in payload["fields"]:
        assert len(field["name"]) <= 256
        assert len(field["value"]) <= 1024
    total = (
        len(payload["title"])
        + len(payload["description"])
        + len(payload["footer"]["text"])
        + sum(len(f["name"]) + len(f["value"]) for f in payload["fields"])
    )
    assert total <= 6000


def test_cut_never_leaves_a_dangling_escape() -> None:
    payload = embed_payload(make_event(summary="_" * 5000, fields={}, changes={}))
    description = payload["description"].removesuffix("…")
    assert len(payload["description"]) <= 4096
    assert (len(description) - len(description.rstrip("\\"))) % 2 == 0
