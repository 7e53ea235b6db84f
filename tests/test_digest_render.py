"""A digest's facts: every string from its events neutralised like any alert's, links
only when ``safe_link`` allows them, and the same groups on every renderer."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.digest import digest_event
from alerts.model import Event, EventKind
from alerts.platforms.discord.render import render_embed
from alerts.platforms.matrix.render import render_facts
from alerts.render.facts import facts_of
from alerts.render.text import render_text

AT = datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


def held(title: str, url: str | None, source: str = "wire") -> tuple[Event, str]:
    return Event(source, EventKind.NEW, title, title, url=url, topics=("news",)), "quiet"


def test_strangers_text_in_a_digest_is_neutral_and_bad_links_are_dropped() -> None:
    digest = digest_event(
        "room",
        [
            held("evil\u202egnp.exe\nsecond line", "javascript:alert(1)"),
            held("fine", "https://user:pw@example.org/"),
            held("good", "https://EXAMPLE.org/a b"),
        ],
        now=AT,
    )
    [group] = facts_of(digest).digest
    assert group.label == "news · wire" and group.count == 3
    assert group.entries == (
        ("evilgnp.exe second line", None),
        ("fine", None),
        ("good", "https://example.org/a%20b"),
    )
    text = render_text(digest)
    assert "  news · wire (3):" in text
    assert "    - good https://example.org/a%20b" in text
    assert "javascript" not in text and "\u202e" not in text


def test_more_titles_and_groups_than_shown_are_counted() -> None:
    many = [held(f"item {i}", f"https://example.org/{i}") for i in range(8)]
    others = [held("x", None, source=f"s{i:02d}") for i in range(25)]
    digest = digest_event("room", many + others, now=AT)
    facts = facts_of(digest)
    assert facts.headline == "Held during quiet hours: 33 alerts"
    assert len(facts.digest) == 20 and facts.digest_more == 6
    embed = render_embed(digest).to_dict()
    assert len(embed["fields"]) <= 25
    content = render_facts(facts)
    assert "… and 6 more sources" in content["body"]
    assert "… and 6 more sources" in content["formatted_body"]
