"""The corpus through both renderers without peers (every case in every position),
and the checks themselves: each must catch what it is there to catch."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from alerts.model import Event, EventKind
from alerts.platforms.discord.render import embed_payload
from alerts.platforms.matrix.render import render, room_link
from alerts.render.facts import facts_of, safe_link

from .checks import discord_problems, matrix_problems
from .world import load_corpus

TEXTS, LINKS = load_corpus("@member:example.org")
BASE = Event(
    source_id="s", kind=EventKind.UPDATED, key="k", title="t", url="https://news.example/1",
    occurred_at=datetime(2026, 2, 3, tzinfo=UTC),
)  # fmt: skip


def placed(text: str) -> Event:
    """``text`` as title, summary, author, recipient, company breakdown and a change."""
    return replace(
        BASE,
        title=text,
        summary=text,
        fields={"author": text, "recipient": text, "by_company": {text: 2}, "note": text},
        changes={"status": (text, text + "!")},
    )


def discord_payload(event: Event) -> dict[str, object]:
    return {"embeds": [embed_payload(event)], "allowed_mentions": {"parse": []}}


@pytest.mark.parametrize("case", TEXTS, ids=[c.id for c in TEXTS])
def test_every_text_case_renders_inert(case: object) -> None:
    event = placed(case.text)  # type: ignore[attr-defined]
    assert matrix_problems(render(event), link=BASE.url) == []
    assert discord_problems(discord_payload(event), link=BASE.url) == []


@pytest.mark.parametrize("case", LINKS, ids=[c.id for c in LINKS])
def test_every_link_case_renders_to_its_expected_link(case: object) -> None:
    event = replace(BASE, url=case.url)  # type: ignore[attr-defined]
    assert safe_link(event.url) == case.expect  # type: ignore[attr-defined]
    assert room_link(facts_of(event)) == case.matrix  # type: ignore[attr-defined]
    assert matrix_problems(render(event), link=case.matrix) == []  # type: ignore[attr-defined]
    assert discord_problems(discord_payload(event), link=case.expect) == []  # type: ignore[attr-defined]


GOOD_MATRIX = render(BASE)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param({"formatted_body": '<p><strong>t</strong></p><a href="https://phish.example">x</a>'}, "links", id="extra-link"),
        pytest.param({"formatted_body": "<p><strong>t</strong></p><h1>x</h1>"}, "markup the renderer", id="heading"),
        pytest.param({"formatted_body": '<p title="x"><strong>t</strong></p>'}, "not allowed by the spec", id="attribute"),
        pytest.param({"formatted_body": '<p><strong>t</strong></p><a href="//evil.example">x</a>'}, "relative", id="relative-href"),
        pytest.param({"formatted_body": "<p><strong>t</strong></p>" + "<div>" * 120}, "nested", id="nesting"),
        pytest.param({"formatted_body": "<p><strong>t</strong></p><font>x</font>"}, "allow-list", id="font"),
        pytest.param({"body": "hi @room"}, "@room", id="at-room"),
        pytest.param({"body": "hi @alice:example.org"}, "user id", id="user-id"),
        pytest.param({"body": "see https://matrix.to/#/x"}, "matrix.to", id="matrix-to"),
        pytest.param({"body": "a\u202eb"}, "bidi", id="bidi"),
        pytest.param({"body": "a\x00b"}, "control", id="nul"),
        pytest.param({"m.mentions": {"room": True}}, "m.mentions", id="mentions"),
        pytest.param({"msgtype": "m.text"}, "msgtype", id="msgtype"),
    ],
)  # fmt: skip
def test_the_matrix_check_catches(change: dict[str, object], problem: str) -> None:
    found = matrix_problems({**GOOD_MATRIX, **change}, link=BASE.url)
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("[click me](javascript:alert(1))", "markdown", id="masked-link"),
        pytest.param("**bold**", "markdown", id="bold"),
        pytest.param("# heading", "line starts", id="heading"),
        pytest.param("x\n- item", "line starts", id="list"),
        pytest.param("<t:0:R>", "token", id="timestamp"),
        pytest.param("see https://phish.example", "link", id="bare-url"),
        pytest.param("\\<@123\\>", "", id="escaped-is-fine"),
        pytest.param("@everyone", "mention", id="everyone"),
        pytest.param("a\u2066b", "bidi", id="isolate"),
    ],
)  # fmt: skip
def test_the_discord_check_catches(text: str, problem: str) -> None:
    payload = {"embeds": [{"title": "t", "description": text, "url": BASE.url}],
               "allowed_mentions": {"parse": []}}  # fmt: skip
    found = discord_problems(payload, link=BASE.url)
    if problem:
        assert any(problem in p for p in found), found
    else:
        assert found == []


def test_the_discord_check_wants_allowed_mentions_and_one_line_titles() -> None:
    payload = {
        "embeds": [{"title": "a\nb", "url": None}],
        "allowed_mentions": {"parse": ["everyone"]},
    }
    found = discord_problems(payload, link=None)
    assert any("allowed_mentions" in p for p in found)
    assert any("one line" in p for p in found)
