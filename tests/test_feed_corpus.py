"""The feed adapter against an independent oracle: feedparser and its own test corpus.

Every file of feedparser's test corpus (``../shared/corpora/feedparser/`` beside the
repository, BSD-2; never copied in) is parsed twice from the same bytes, with its
``Header:`` lines as the response headers: by the adapter's parse path
(``parse_feed``) and by feedparser (a dev dependency). The test asserts no crash, no
silently empty result, and agreement on the entries both read: title, link, date and
author on at least 98 % of them, summary text on at least 95 %.

Each remaining difference is listed, with a one-line reason, in
``tests/fixtures/feeds/corpus-differences.txt``; the test fails on an unlisted
difference *and* on a listed one that no longer occurs, so the list cannot rot.

``python -m tests.test_feed_corpus`` prints the same comparison as a report.
"""

from __future__ import annotations

import calendar
import contextlib
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from alerts.errors import ParseError
from alerts.model import Item
from alerts.sources.feed import parse_feed

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_RELATIVE = Path("..") / "shared" / "corpora" / "feedparser"
DIFFERENCES = Path(__file__).parent / "fixtures" / "feeds" / "corpus-differences.txt"
FIELDS = ("title", "link", "date", "author", "summary")
THRESHOLDS = {"title": 0.98, "link": 0.98, "date": 0.98, "author": 0.98, "summary": 0.95}
# Entries whose field feedparser reads: the comparison is never vacuous.
MIN_COMPARED = {"title": 150, "link": 1000, "date": 1000, "author": 40, "summary": 300}
DEFAULT_BASE = "http://example.com/corpus/"
# feedparser's corpus states headers in the file's leading comment (its README):
# "Header: Content-type: text/xml; charset=iso-8859-1".
_HEADER = re.compile(rb"^\s*Header:\s*([A-Za-z][\w-]*)\s*:[ \t]*(.*?)\s*$", re.MULTILINE)
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def locate_corpus(root: Path = REPO_ROOT) -> Path | None:
    """``../shared/corpora/feedparser`` beside the repository, if it is there."""
    candidate = (root / CORPUS_RELATIVE).resolve()
    return candidate if (candidate / "README.md").is_file() else None


def corpus_files(corpus: Path) -> list[Path]:
    return sorted(
        p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".xml", ".rdf", ".json")
    )


def stated_headers(data: bytes) -> dict[str, str]:
    """The ``Header:`` lines of a corpus file, lower-case names (first 4 KB)."""
    found = _HEADER.findall(data[:4096])
    return {name.decode().lower(): value.decode("latin-1") for name, value in found}


# --- what each parser read, as a reader would see it -----------------------------------


@dataclass(frozen=True)
class Seen:
    """One entry's reader-visible fields; None where the parser found nothing.

    Dates to the second: feedparser's ``struct_time`` has no fractions.
    """

    title: str | None
    link: str | None
    date: datetime | None
    author: str | None
    summary: str | None


def squeeze(text: str | None) -> str | None:
    """Text compared without its whitespace (layout is the renderer's business)."""
    if text is None:
        return None
    out = "".join(text.split())
    return out or None


def ours(item: Item) -> Seen:
    return Seen(
        title=squeeze(item.title),
        link=item.url,
        date=item.published.replace(microsecond=0) if item.published else None,
        author=squeeze(item.author),
        summary=squeeze(item.summary),
    )


def oracle_text(detail: Mapping[str, Any] | None, value: Any) -> str | None:
    """feedparser's text field as plain text (its HTML through lxml, independently)."""
    if not isinstance(value, str):
        return None
    kind = (detail or {}).get("type", "text/plain")
    if kind in _HTML_TYPES and ("<" in value or "&" in value):
        # feedparser's HTML that lxml cannot read is compared as written
        with contextlib.suppress(Exception):
            value = lxml.html.fragment_fromstring(value, create_parent="div").text_content()
    return squeeze(value)


def theirs(entry: Mapping[str, Any]) -> Seen:
    stamp = next(
        (
            entry[k]
            for k in ("published_parsed", "updated_parsed", "created_parsed")
            if entry.get(k)
        ),
        None,
    )
    authors = entry.get("authors") or [entry.get("author_detail") or {}]
    link = entry.get("link")
    return Seen(
        title=oracle_text(entry.get("title_detail"), entry.get("title")),
        link=link if isinstance(link, str) and link.startswith(("http://", "https://")) else None,
        date=datetime.fromtimestamp(calendar.timegm(stamp), UTC) if stamp else None,
        author=squeeze(_first_author(authors[0] or {}) or entry.get("author")),
        summary=oracle_text(_summary_detail(entry), entry.get("summary")),
    )


def _first_author(person: Mapping[str, Any]) -> str | None:
    name: str | None = person.get("name") or person.get("email")
    return name


def _summary_detail(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """feedparser copies the content into ``summary`` without its ``summary_detail``."""
    detail: Mapping[str, Any] | None = entry.get("summary_detail")
    if detail is None and entry.get("content"):
        detail = entry["content"][0]
    return detail


def agrees(name: str, mine: Seen, oracle: Seen) -> bool | None:
    """Whether a field agrees; None when feedparser has no value to compare with."""
    want, got = getattr(oracle, name), getattr(mine, name)
    if name in ("title", "summary", "author") and want is None:
        return None  # a title made from the text, say: nothing to compare
    return bool(want == got)


# --- one file, both parsers ------------------------------------------------------------


@dataclass
class FileResult:
    path: str
    entries_theirs: int
    entries_ours: int | None = None
    refused: str | None = None
    crashed: str | None = None
    differences: dict[tuple[int, str], tuple[Any, Any]] = field(default_factory=dict)
    compared: Counter[str] = field(default_factory=Counter)
    agreed: Counter[str] = field(default_factory=Counter)


def run_file(path: Path, corpus: Path) -> FileResult:
    import feedparser

    data = path.read_bytes()
    headers = stated_headers(data)
    base = headers.get("content-location") or DEFAULT_BASE + path.name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = feedparser.parse(data, response_headers={**headers, "content-location": base})
    result = FileResult(str(path.relative_to(corpus)), len(parsed.entries))
    try:
        items = parse_feed(
            data,
            base_url=base,
            content_type=headers.get("content-type"),
            max_items=10_000,
            summary_chars=20_000,
        )
    except ParseError as exc:
        result.refused = str(exc)
        return result
    except Exception as exc:  # the point of the test: any other exception is a crash
        result.crashed = f"{type(exc).__name__}: {exc}"
        return result
    result.entries_ours = len(items)
    if len(items) != len(parsed.entries):
        return result
    for index, (item, entry) in enumerate(zip(items, parsed.entries, strict=True)):
        mine, oracle = ours(item), theirs(entry)
        for name in FIELDS:
            verdict = agrees(name, mine, oracle)
            if verdict is None:
                continue
            result.compared[name] += 1
            if verdict:
                result.agreed[name] += 1
            else:
                result.differences[(index, name)] = (getattr(mine, name), getattr(oracle, name))
    return result


@cache
def run_corpus(corpus: Path) -> tuple[FileResult, ...]:
    return tuple(run_file(path, corpus) for path in corpus_files(corpus))


# --- the checked-in list of remaining differences ----------------------------------------


@dataclass(frozen=True)
class Listed:
    path: str
    what: str  # a field, "entries" or "refused"
    reason: str


def read_differences(path: Path = DIFFERENCES) -> list[Listed]:
    """``path  what  reason`` lines; ``#`` starts a comment."""
    listed = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, what, reason = line.split(maxsplit=2)
        listed.append(Listed(name, what, reason))
    return listed


def observed_differences(results: tuple[FileResult, ...]) -> Iterator[tuple[str, str]]:
    """(path, what) for every file where the parsers part ways."""
    for r in results:
        if r.refused is not None and r.entries_theirs:
            yield r.path, "refused"
        elif r.entries_ours is not None and r.entries_ours != r.entries_theirs:
            yield r.path, "entries"
        for what in sorted({name for _, name in r.differences}):
            yield r.path, what


def rates(results: tuple[FileResult, ...]) -> dict[str, tuple[int, int]]:
    compared: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    for r in results:
        compared.update(r.compared)
        agreed.update(r.agreed)
    return {name: (agreed[name], compared[name]) for name in FIELDS}


# --- the tests ---------------------------------------------------------------------------


def corpus_or_skip(found: Path | None, *, ci: bool) -> Path:
    """The corpus; without it, skip with the reason, or fail under CI (where it must be)."""
    if found is not None:
        return found
    reason = (
        "feedparser's test corpus is absent (expected at ../shared/corpora/feedparser "
        "beside the repository); the differential test cannot run without it"
    )
    if ci:
        pytest.fail(reason + " - and CI=true requires it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def corpus() -> Path:
    return corpus_or_skip(locate_corpus(), ci=os.environ.get("CI") == "true")


def test_an_absent_corpus_skips_but_fails_under_ci(tmp_path: Path) -> None:
    assert locate_corpus(tmp_path) is None
    with pytest.raises(pytest.skip.Exception, match="corpus is absent"):
        corpus_or_skip(None, ci=False)
    with pytest.raises(pytest.fail.Exception, match="CI=true requires it"):
        corpus_or_skip(None, ci=True)


@pytest.fixture(scope="module")
def results(corpus: Path) -> tuple[FileResult, ...]:
    return run_corpus(corpus)


def test_the_whole_corpus_is_read(results: tuple[FileResult, ...]) -> None:
    assert len(results) > 2000


def test_no_crash(results: tuple[FileResult, ...]) -> None:
    assert [(r.path, r.crashed) for r in results if r.crashed] == []


def test_no_silently_empty_result(results: tuple[FileResult, ...]) -> None:
    empty = [r.path for r in results if r.entries_ours == 0 and r.entries_theirs]
    assert empty == []


@pytest.mark.parametrize("name", FIELDS)
def test_agreement_on_entries_both_read(results: tuple[FileResult, ...], name: str) -> None:
    agreed, compared = rates(results)[name]
    assert compared >= MIN_COMPARED[name]
    assert agreed / compared >= THRESHOLDS[name], (name, agreed, compared)


def test_every_difference_is_listed_and_still_occurs(results: tuple[FileResult, ...]) -> None:
    listed = {(d.path, d.what) for d in read_differences()}
    observed = set(observed_differences(results))
    assert sorted(observed - listed) == [], "unlisted differences"
    assert sorted(listed - observed) == [], "listed differences that no longer occur"


def test_the_list_is_short_and_says_why() -> None:
    listed = read_differences()
    assert len(listed) <= 60
    assert all(len(d.reason) >= 15 for d in listed)
    assert len({(d.path, d.what) for d in listed}) == len(listed)


# --- the report --------------------------------------------------------------------------


def report(corpus: Path, verbose: bool = False) -> str:
    results = run_corpus(corpus)
    lines = [f"{len(results)} files"]
    for name, (agreed, compared) in rates(results).items():
        lines.append(f"  {name:<8} {agreed:>5}/{compared:<5} {agreed / max(compared, 1):7.2%}")
    crashed = [r for r in results if r.crashed]
    refused = [r for r in results if r.refused is not None and r.entries_theirs]
    counts = [
        r for r in results if r.entries_ours is not None and r.entries_ours != r.entries_theirs
    ]
    lines.append(f"  crashed {len(crashed)}, refused {len(refused)}, entry counts {len(counts)}")
    if verbose:
        for r in crashed:
            lines.append(f"CRASH {r.path}: {r.crashed}")
        for r in refused:
            lines.append(f"REFUSED {r.path} ({r.entries_theirs}): {r.refused}")
        for r in counts:
            lines.append(f"COUNT {r.path}: ours {r.entries_ours}, feedparser {r.entries_theirs}")
        for r in results:
            for (index, name), (mine, oracle) in sorted(r.differences.items()):
                lines.append(f"DIFF {r.path} [{index}] {name}: ours {mine!r} | fp {oracle!r}")
    return "\n".join(lines)


if __name__ == "__main__":
    found = locate_corpus()
    if found is None:
        sys.exit("feedparser's corpus not found beside the repository")
    print(report(found, verbose="-v" in sys.argv))


def test_a_document_parsed_whole_yields_what_the_pull_parser_reads(corpus: Path) -> None:
    """Small well-formed bodies are parsed into one tree (faster); for every corpus
    document that parses so, the entries must be those the pull parser reads, at any
    ``max_items``."""
    from alerts.sources import _feed_xml as fx
    from alerts.sources._feed_bytes import choose_encoding, utf8_chunks

    whole = 0
    for path in corpus_files(corpus):
        data = path.read_bytes()
        if path.suffix == ".json":
            continue
        url = stated_headers(data).get("content-location") or DEFAULT_BASE + path.name
        try:
            prolog, encoding = fx._checked(data, choose_encoding(data, None), url)
        except ParseError:
            continue
        if prolog.doctype:
            continue
        for max_items in (10_000, 2):
            found = fx._parse_whole(utf8_chunks(data, encoding), url, max_items)
            if found is None:
                continue
            whole += 1
            pulled = fx._parse(utf8_chunks(data, encoding), url, prolog, max_items, data, encoding)
            assert found == pulled, path.name
    assert whole > 2000  # most of the corpus is well-formed: the comparison is not vacuous
