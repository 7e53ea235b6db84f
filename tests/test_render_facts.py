"""The one set of facts: labels, values, money and changes, neutral text, safe links."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import regex

from alerts.model import Event, EventKind
from alerts.render.facts import (
    ELLIPSIS,
    Fact,
    cut,
    facts_of,
    link_host,
    neutral_line,
    neutral_text,
    safe_link,
    utf16_len,
)
from alerts.render.text import render_text

WHEN = datetime(2026, 1, 28, tzinfo=UTC)


def pairs(event: Event) -> list[tuple[str, str]]:
    return [(f.label, f.value) for f in facts_of(event).facts]


def test_award_modification_shows_recipient_amount_change_and_delta() -> None:
    event = Event(
        source_id="ice-awards",
        kind=EventKind.UPDATED,
        key="k",
        title="Palantir modification",
        fields={"recipient": "PALANTIR USG INC", "amount": 125_754_750.0, "delta": 29_854_750.0},
        changes={"amount": (95_900_000.0, 125_754_750.0)},
        occurred_at=WHEN,
    )
    assert pairs(event)[:3] == [
        ("Recipient", "PALANTIR USG INC"),
        ("Amount", "$95,900,000 → $125,754,750 (+$29,854,750)"),
        ("Change", "+$29,854,750"),
    ]


def test_a_change_with_cents_is_signed_and_exact() -> None:
    event = Event(
        source_id="a", kind=EventKind.UPDATED, key="k", title="t",
        changes={"amount": (1_000_000, 1_500_000.5)},
    )  # fmt: skip
    assert pairs(event) == [("Amount", "$1,000,000 → $1,500,000.50 (+$500,000.50)")]
    down = Event(
        source_id="a", kind=EventKind.UPDATED, key="k", title="t",
        changes={"amount": (2_000.0, 1_500.25)},
    )  # fmt: skip
    assert pairs(down) == [("Amount", "$2,000 → $1,500.25 (-$499.75)")]


def test_petition_delta_shows_count_change_and_breakdown() -> None:
    event = Event(
        source_id="letter",
        kind=EventKind.DELTA,
        key="d",
        title="+3 new signatories",
        fields={"count": 1_512, "delta": 3, "by_company": {"Google": 2, "Palantir": 1},
                "names": ["A", "B", "C"]},
    )  # fmt: skip
    assert pairs(event) == [
        ("Count", "1,512"),
        ("Change", "+3"),
        ("By company", "Google: 2, Palantir: 1"),
    ]


def test_facts_are_neutral_single_lines() -> None:
    event = Event(
        source_id="s", kind=EventKind.NEW, key="k", title="t",
        fields={"recipient": "ACME\nInc\u202e\x00", "by_company": {"Evil\r\nCorp\u2066": 1}},
    )  # fmt: skip
    assert pairs(event) == [("Recipient", "ACME Inc"), ("By company", "Evil Corp: 1")]


def test_headline_is_one_line_and_marks_updates() -> None:
    event = Event(source_id="s", kind=EventKind.UPDATED, key="k", title="ok\n**[SYSTEM]** x")
    assert facts_of(event).headline == "Updated: ok **[SYSTEM]** x"
    blank = Event(source_id="s", kind=EventKind.NEW, key="key-1", title="\u202e\x00\n")
    assert facts_of(blank).headline == "key-1"


@pytest.mark.parametrize(
    ("raw", "line", "text"),
    [
        pytest.param("a\x00b", "ab", "ab", id="nul"),
        pytest.param("a\x1b[31mb", "a[31mb", "a[31mb", id="escape-sequence"),
        pytest.param("a\x85b", "a b", "a\nb", id="nel"),
        pytest.param("a\u2028b\u2029c", "a b c", "a\nb\nc", id="unicode-separators"),
        pytest.param("a\r\nb\rc\vd\fe", "a b c d e", "a\nb\nc\nd\ne", id="crlf-cr-vt-ff"),
        pytest.param("a\tb   c", "a b c", "a b c", id="tabs-and-runs"),
        pytest.param("\u202egnp.exe", "gnp.exe", "gnp.exe", id="rlo"),
        pytest.param("a\u2066b\u2069c\u202ad\u202c", "abcd", "abcd", id="isolates-embeddings"),
        pytest.param("\u200eA\u200fB\u061cC", "ABC", "ABC", id="lrm-rlm-alm"),
        pytest.param("x\ufeffy\ud800z", "xyz", "xyz", id="bom-surrogate"),
        pytest.param("a\n\n\n\nb", "a b", "a\n\nb", id="blank-lines"),
        pytest.param("שלום عربي", "שלום عربي", "שלום عربي", id="rtl-text-kept"),
        pytest.param("👨‍👩‍👧 🇫🇷", "👨‍👩‍👧 🇫🇷", "👨‍👩‍👧 🇫🇷", id="zwj-and-flags-kept"),
    ],
)
def test_neutralisation(raw: str, line: str, text: str) -> None:
    assert neutral_line(raw) == line
    assert neutral_text(raw) == text


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param("👨‍👩‍👧‍👦", id="zwj-family"),
        pytest.param("🇫🇷", id="flag"),
        pytest.param(
            "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", id="tag-flag"
        ),
        pytest.param("e\u0301\u0302\u0303", id="combining"),
        pytest.param("👍🏽", id="skin-tone"),
        pytest.param("\u1100\u1161\u11a8", id="hangul-jamo"),
    ],
)
@pytest.mark.parametrize("offset", range(8))
def test_cuts_fall_between_grapheme_clusters(tail: str, offset: int) -> None:
    text = "x" * (20 + offset) + tail * 10
    out = cut(text, 30)
    assert len(out) <= 30
    assert out.endswith(ELLIPSIS)
    kept = out.removesuffix(ELLIPSIS)
    assert text.startswith(kept)
    clusters = regex.findall(r"\X", text)
    boundaries = {sum(len(c) for c in clusters[:i]) for i in range(len(clusters) + 1)}
    assert len(kept) in boundaries


def test_a_cluster_longer_than_the_budget_is_dropped_not_split() -> None:
    zalgo = "e" + "\u0301" * 300
    assert cut(zalgo, 10) == ELLIPSIS


def test_utf16_measure_counts_astral_characters_twice() -> None:
    assert utf16_len("a😀") == 3
    assert utf16_len(cut("😀" * 100, 11, size=utf16_len)) <= 11


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://example.org", "https://example.org/", id="root-slash"),
        pytest.param("HTTPS://Example.ORG:443/a b?q=<1>#x#y", "https://example.org/a%20b?q=%3C1%3E#x%23y", id="normalised"),
        pytest.param("http://ex.org:8080/p", "http://ex.org:8080/p", id="port-kept"),
        pytest.param("https://bücher.de/ü", "https://xn--bcher-kva.de/%C3%BC", id="idn-to-ascii"),
        pytest.param("https://e.org/%zz%41", "https://e.org/%25zz%41", id="stray-percent"),
        pytest.param("https://[::1]:8443/", "https://[::1]:8443/", id="ipv6"),
        pytest.param(" https://ok.org/ ", "https://ok.org/", id="outer-space"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param("data:text/html,<b>x", None, id="data"),
        pytest.param("ftp://example.org/", None, id="ftp"),
        pytest.param("//evil.example/x", None, id="protocol-relative"),
        pytest.param("/relative", None, id="relative"),
        pytest.param("https:evil.example", None, id="no-authority"),
        pytest.param("https://user:pw@example.org/", None, id="credentials"),
        pytest.param("https://example.org\\@evil.example/", None, id="backslash"),
        pytest.param("https://exa\u202emple.org/", None, id="bidi-in-host"),
        pytest.param("https://example.org/\u2066x", None, id="bidi-in-path"),
        pytest.param("https://example.org/\nx", None, id="newline"),
        pytest.param("https://example.org/\x00", None, id="nul"),
        pytest.param("https://ex.org:99999/", None, id="port-range"),
        pytest.param("http://0x7f.1/", None, id="numeric-host-trap"),
        pytest.param("http://2130706433/", None, id="integer-host"),
        pytest.param("https://[::1%25eth0]/", None, id="ipv6-zone"),
        pytest.param("https://a_b.example/", None, id="not-a-host-name"),
        pytest.param("https://example.org/" + "a" * 2100, None, id="too-long"),
        pytest.param(None, None, id="none"),
    ],
)  # fmt: skip
def test_safe_link(url: str | None, expected: str | None) -> None:
    assert safe_link(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://matrix.to/#/@alice:example.org",
        "https://matrix.to:443/#/@alice:example.org",
        "https://MATRIX.TO/#/@alice:example.org",
        "https://matrix.to./#/@alice:example.org",
        "https://\uff4d\uff41\uff54\uff52\uff49\uff58.\uff54\uff4f/#/@alice:example.org",
        "https://matrix\u3002to/#/@alice:example.org",
        "https://\u24dcatrix.to/#/@alice:example.org",
    ],
)
def test_every_spelling_of_a_host_normalises_to_one(url: str) -> None:
    link = safe_link(url)
    assert link is not None
    assert link_host(link) == "matrix.to"


def test_plain_text_alert_has_headline_link_summary_and_time() -> None:
    event = Event(
        source_id="wired",
        kind=EventKind.NEW,
        key="k",
        title="ICE buys more software",
        url="https://example.org/a",
        summary="word " * 200,
        topics=("news",),
        occurred_at=WHEN,
    )
    text = render_text(event, source_label="Wired")
    lines = text.splitlines()
    assert lines[0] == "New · Wired: ICE buys more software"
    assert lines[1] == "  https://example.org/a"
    assert lines[2].endswith("…")
    assert len(lines[2]) <= 403
    assert lines[-1] == "  2026-01-28 00:00 UTC [news]"


def test_plain_text_alert_is_neutral_too() -> None:
    event = Event(
        source_id="s", kind=EventKind.NEW, key="k", title="a\nb\u202e",
        url="javascript:alert(1)", summary="x\x00y",
    )  # fmt: skip
    lines = render_text(event).splitlines()
    assert lines[0] == "New · s: a b"
    assert lines[1] == "  xy"


def test_a_named_source_is_shown_by_its_name_and_the_name_is_stored() -> None:
    event = Event(source_id="wired", kind=EventKind.NEW, key="k", title="T", source_name="Wired")
    assert render_text(event).splitlines()[0] == "New · Wired: T"
    assert Event.from_json(event.to_json()).source_label == "Wired"
    unnamed = Event.from_json({**event.to_json(), "source_name": None})
    assert render_text(unnamed).splitlines()[0] == "New · wired: T"


def test_fact_is_a_plain_pair() -> None:
    assert Fact("A", "b") == Fact("A", "b")
