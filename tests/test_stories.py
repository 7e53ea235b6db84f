"""Which reports are one story (``alerts.stories``): a table of the campaign's shapes."""

from __future__ import annotations

import pytest

from alerts import stories
from alerts.model import Event, EventKind


def item(title: str, url: str | None = None, **fields: object) -> Event:
    return Event(source_id="s", kind=EventKind.NEW, key=title, title=title, url=url, fields=fields)


ARTICLE = "https://next.ink/167245/ice-palantir-immigrationos/"


@pytest.mark.parametrize(
    ("first", "later", "same"),
    [
        pytest.param(
            item("Palantir et l'ICE", ARTICLE),
            item("Our story on ICE", "https://bsky.app/profile/next.ink/post/1", links=[ARTICLE]),
            True,
            id="a-post-sharing-the-article",
        ),
        pytest.param(
            item("Palantir et l'ICE", "http://www.next.ink/167245/ice-palantir-immigrationos"),
            item("ICE and Palantir", ARTICLE + "?utm_source=rss&utm_medium=feed"),
            True,
            id="same-link-other-spelling",
        ),
        pytest.param(
            item("Palantir et l'ICE", "https://next.ink/fr/1"),
            item("ICE and Palantir", "https://next.ink/en/1"),
            False,
            id="two-links-two-stories",
        ),
        pytest.param(
            item("ICE signs a $30 million deal with Palantir for ImmigrationOS"),
            item("ICE Signs A $30 Million Deal With Palantir For ImmigrationOS - The Verge"),
            True,
            id="same-headline-case-and-publisher",
        ),
        pytest.param(
            item("ICE signs a $30 million deal with Palantir for ImmigrationOS"),
            item("ICE signs a \u201c$30 million\u201d deal with Palantir for ImmigrationOS!"),
            True,
            id="same-headline-punctuation",
        ),
        pytest.param(
            item("Palantir wins $30 million ICE contract for ImmigrationOS"),
            item("Palantir wins $96 million ICE contract for ImmigrationOS"),
            False,
            id="other-numbers",
        ),
        pytest.param(
            item("ICE signs deal with Clearview AI for facial recognition"),
            item("ICE signs deal with Palantir for facial recognition"),
            False,
            id="other-company",
        ),
        pytest.param(item("Statement"), item("Statement"), False, id="too-short-to-tell"),
        pytest.param(item("Ada Lovelace"), item("Ada Lovelace"), False, id="a-name-is-no-headline"),
    ],
)
def test_same_story(first: Event, later: Event, same: bool) -> None:
    assert stories.same_story(later, stories.first(first)) is same


def test_a_story_remembers_the_links_and_headlines_of_every_report() -> None:
    story = stories.first(item("Palantir et l'ICE", ARTICLE))
    story = stories.merged(
        story, item("Le contrat de l'ICE avec Palantir grossit encore", "https://a.example/x")
    )
    assert stories.same_story(item("Another", "https://a.example/x"), story)
    assert stories.same_story(
        item("Le contrat de l'ICE avec Palantir grossit encore - Le Monde"), story
    )


def test_only_web_links_count() -> None:
    event = item("x", "mailto:press@example.org", links=["javascript:alert(1)", ARTICLE, 7])
    assert stories.story_links(event) == [ARTICLE.rstrip("/")]
