"""Canonical URLs: one spelling per link, for comparison only."""

from __future__ import annotations

import pytest

from alerts.canonical import canonical_url

SAME = [
    ("https://example.org/a", "http://example.org/a"),
    ("https://example.org/a", "https://WWW.Example.org/a/"),
    ("https://example.org/a", "https://example.org:443/a#section"),
    ("https://example.org/a?id=1", "https://example.org/a?utm_source=x&id=1&fbclid=y"),
    ("https://example.org/a?b=2&a=1", "https://example.org/a?a=1&b=2"),
]
DIFFERENT = [
    ("https://example.org/a?id=1", "https://example.org/a?id=2"),
    ("https://example.org/a", "https://example.org/b"),
    ("https://example.org:8080/a", "https://example.org/a"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_spellings_of_one_link_agree(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_links_stay_apart(a: str, b: str) -> None:
    assert canonical_url(a) != canonical_url(b)


@pytest.mark.parametrize("text", ["not a url", "mailto:x@example.org", "http://[::1"])
def test_non_urls_come_back_unchanged(text: str) -> None:
    assert canonical_url(text) == text
