"""Canonical URLs: one spelling per link, for comparison only."""

from __future__ import annotations

import pytest

from alerts.canonical import (
    TRACKING_PARAMS,
    _canonical,
    canonical_text,
    canonical_url,
)

SAME = [
    ("https://example.org/a", "http://example.org/a"),
    ("https://example.org/a", "https://WWW.Example.org/a/"),
    ("https://example.org/a", "https://example.org:443/a#section"),
    ("https://example.org/a", "http://example.org:80/a"),
    ("https://example.org/a", "https://example.org./a"),
    ("https://example.org/a?id=1", "https://example.org/a?utm_source=x&id=1&fbclid=y"),
    ("https://example.org/a?b=2&a=1", "https://example.org/a?a=1&b=2"),
    ("https://example.org/a", "https://example.org/a?"),
    ("https://example.org/", "https://example.org"),
    ("https://example.org/a%2Fb", "https://example.org/a%2fb"),
    ("https://example.org/a?x=1", "https://example.org/a?x=1&UTM_Campaign=Fall&_hsenc=p2&mc_eid=9"),
]
DIFFERENT = [
    ("https://example.org/a?id=1", "https://example.org/a?id=2"),
    ("https://example.org/a", "https://example.org/b"),
    ("https://example.org/a", "https://example.org/A"),
    ("https://example.org:8080/a", "https://example.org/a"),
    ("https://example.org/a", "https://blog.example.org/a"),
    ("https://example.org/#!/post/1", "https://example.org/#!/post/2"),
]
# Parameters that select content on some site: never dropped.
CONTENT = ["id", "p", "page", "q", "s", "ref", "source", "si", "v", "article", "story", "t"]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_spellings_of_one_link_agree(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_links_stay_apart(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


@pytest.mark.parametrize("name", [*sorted(TRACKING_PARAMS), "utm_source", "utm_id", "utm_term"])
def test_every_listed_tracking_parameter_is_dropped(name: str) -> None:
    assert canonical_url(f"https://example.org/a?{name}=x&id=7") == "https://example.org/a?id=7"


@pytest.mark.parametrize("name", CONTENT)
def test_parameters_that_can_select_content_are_kept(name: str) -> None:
    assert canonical_url(f"https://example.org/a?{name}=1") != canonical_url(
        f"https://example.org/a?{name}=2"
    )
    assert name not in TRACKING_PARAMS


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org",
        "http://a-b.example.org/x.html",
        "https://example.org/a/b/",
        "https://example.org//",
        "https://example.org/A/B",
        "http://127.0.0.1:8080/x",
        "https://[::1]:8443/a",
        "https://xn--bcher-kva.example/a",
    ],
)
def test_the_quick_path_agrees_with_the_full_parse(url: str) -> None:
    assert canonical_url(url) == _canonical(url)


@pytest.mark.parametrize("text", ["not a url", "mailto:x@example.org", "http://[::1", "ftp://x/y"])
def test_non_urls_come_back_unchanged(text: str) -> None:
    assert canonical_url(text) == text


def test_canonical_text_ignores_case_width_and_spacing() -> None:
    assert canonical_text("  ICE  Contracts\n") == canonical_text("ice contracts")
    assert canonical_text("\uff29\uff23\uff25") == canonical_text("ice")  # full-width ICE
    assert canonical_text("List<String>") != canonical_text("List")
