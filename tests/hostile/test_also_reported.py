"""The "also reported by" list is written by the renderers alone: every hostile text of the
corpus as a source's name and every hostile link as its link, on Matrix, Discord and
the console (the message that shows a story reported by several sources)."""

from __future__ import annotations

import re

import pytest

from alerts.model import AlsoReported, Event, EventKind, MessageView
from alerts.platforms.discord.render import render_view_embed
from alerts.platforms.matrix.render import render_view
from alerts.render.facts import ALSO_MAX, safe_link
from alerts.render.text import render_view_text

from .checks import (
    _mention_problems,
    _parse,
    _spec_problems,
    _walk,
    markdown_problems,
    text_problems,
)
from .world import load_corpus

MEMBER = "@alice:example.org"
TEXTS, LINKS = load_corpus(MEMBER)
LEAD = Event(
    source_id="next-ink",
    source_name="Next",
    kind=EventKind.NEW,
    key="a",
    title="Palantir and ICE",
    url="https://next.ink/167245/ice-palantir-immigrationos/",
)
# A masked link the Discord renderer writes: [escaped name](url without parentheses).
MASKED = re.compile(r"\[((?:\\.|[^\]\\])*)\]\(([^()\s]+)\)")


def views() -> list[MessageView]:
    """Every text as a name and every link as a link, ``ALSO_MAX`` reports at a time."""
    reports = [AlsoReported(text.text, LINKS[n % len(LINKS)].url) for n, text in enumerate(TEXTS)]
    return [
        MessageView(LEAD, also=tuple(reports[i : i + ALSO_MAX]))
        for i in range(0, len(reports), ALSO_MAX)
    ]


@pytest.mark.parametrize("view", views())
def test_matrix_shows_the_reports_as_text_and_safe_links(view: MessageView) -> None:
    content = render_view(view)
    root = _parse(content["formatted_body"])
    assert _spec_problems(root) == []
    hrefs = [e.get("href") for e, _ in _walk(root) if e.tag == "a"]
    allowed = {safe_link(LEAD.url)} | {safe_link(a.url) for a in view.also}
    assert set(hrefs) <= allowed - {None}
    assert not any("matrix.to" in (h or "") for h in hrefs)
    text = "".join(root.itertext())
    assert text_problems("formatted_body", text, multiline=False) == []
    assert _mention_problems("formatted_body", text) == []
    assert _mention_problems("body", content["body"]) == []
    assert text_problems("body", content["body"], multiline=True) == []


@pytest.mark.parametrize("view", views())
def test_discord_writes_the_only_masked_links(view: MessageView) -> None:
    embed = render_view_embed(view).to_dict()
    also = embed["fields"][0]
    assert also["name"] == "Also reported by"
    value = also["value"]
    links = [m.group(2) for m in MASKED.finditer(value)]
    expected = [
        link.replace("(", "%28").replace(")", "%29")
        for link in (safe_link(a.url) for a in view.also)
        if link
    ]
    assert links == expected[: len(links)]
    names = MASKED.sub(lambda m: m.group(1), value)
    assert markdown_problems("value", names.replace(", ", " ")) == []
    assert len(value) <= 1024


def test_the_console_lists_the_reports_neutralised() -> None:
    view = MessageView(LEAD, also=(AlsoReported("Wired\u202e\nevil", "javascript:alert(1)"),))
    text = render_view_text(view)
    [line] = [ln for ln in text.splitlines() if "Also reported by" in ln]
    assert line == "  Also reported by: Wired evil"
