"""The petition adapter against fixtures of real page and API shapes, over loopback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.errors import ParseError, RetryAfterError
from alerts.fixture_server import FixtureServer, Reply
from alerts.model import EventKind, Item
from alerts.sources import SourceState
from alerts.sources._parse import parse_count
from alerts.sources.http import HttpClient
from alerts.sources.petition import PetitionOptions, PetitionSource

from .helpers import Polls, data, text

T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
LETTER = {"count_selector": ".signature-count", "signatory_selector": "li.signatory"}


def make(
    server: FixtureServer, http: HttpClient, path: str = "/letter", **options: Any
) -> PetitionSource:
    return PetitionSource(
        source_id="letter", url=server.url(path), options=PetitionOptions(**options), http=http
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("1,234 signatures", 1234, id="comma-grouping"),
        pytest.param("1.234 Unterschriften", 1234, id="dot-grouping"),
        pytest.param("1 234 signatures", 1234, id="space-grouping"),
        pytest.param("1\u202f234\u00a0signataires", 1234, id="narrow-nbsp-grouping"),
        pytest.param("12k", 12000, id="k-suffix"),
        pytest.param("12.5k people", 12500, id="k-decimal-dot"),
        pytest.param("1,2K", 1200, id="k-decimal-comma"),
        pytest.param("2M", 2_000_000, id="m-suffix"),
        pytest.param("Signed by 1,234,567 members", 1234567, id="millions-in-text"),
        pytest.param("987", 987, id="plain"),
    ],
)
def test_parse_count(raw: str, expected: int) -> None:
    assert parse_count(raw) == expected


def test_parse_count_without_number_is_parse_error() -> None:
    with pytest.raises(ParseError, match="no number"):
        parse_count("over a thousand")


@pytest.mark.parametrize(
    ("fixture", "options", "count", "people"),
    [
        pytest.param(
            "petition/letter.html",
            LETTER,
            1234,
            {
                ("Ada Lovelace", "Staff Engineer", "Palantir"),
                ("Grace Hopper", "Principal Engineer", "Microsoft"),
                ("Alan Turing", "", "Google"),
            },
            id="css-selectors",
        ),
        pytest.param("petition/letter_more.html", LETTER, 1502, None, id="css-space-grouped"),
        pytest.param(
            "petition/nextdata.html",
            {
                "count_path": "props.pageProps.petition.signatureCount",
                "signatories_path": "props.pageProps.petition.signatories",
                "name_key": "displayName",
                "title_key": "jobTitle",
                "company_key": "employer",
            },
            12500,
            {("Ada Lovelace", "Engineer", "Palantir"), ("Linus Example", "", "Red Hat")},
            id="embedded-next-data",
        ),
        pytest.param("petition/jsonld.html", {}, 4321, set(), id="json-ld-default"),
    ],
)
async def test_html_modes(
    server: FixtureServer,
    http: HttpClient,
    fixture: str,
    options: dict[str, Any],
    count: int,
    people: set[tuple[str, str, str]] | None,
) -> None:
    server.route("GET", "/letter", Reply.html(text(fixture)))
    obs = await make(server, http, **options).fetch(SourceState())
    assert obs.values == {"signatures": count}
    got = {(i.title, i.fields["title"], i.fields["company"]) for i in obs.items}
    if people is not None:
        assert got == people
    assert all(i.key == i.key.casefold() and "|" in i.key for i in obs.items)


@pytest.mark.parametrize(
    ("body", "count", "keys"),
    [
        pytest.param(
            data("petition/api.json"),
            2345,
            ["ada lovelace|palantir", "grace hopper|microsoft"],
            id="signatories",
        ),
        pytest.param(
            {"data": {"petition": {"counts": [{"signatures": 0}]}, "recent": []}},
            0,
            [],
            id="empty-petition",
        ),
    ],
)
async def test_json_endpoint_with_path(
    server: FixtureServer, http: HttpClient, body: Any, count: int, keys: list[str]
) -> None:
    server.route("GET", "/api", Reply.json(body))
    source = make(
        server,
        http,
        "/api",
        mode="json",
        count_path="$.data.petition.counts[0].signatures",
        signatories_path="data.recent",
    )
    obs = await source.fetch(SourceState())
    assert obs.values["signatures"] == count
    assert [i.key for i in obs.items] == keys


async def test_osdi_pages_and_token(
    server: FixtureServer, http: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_PETITION_OSDI_TOKEN", "s3cret")
    sigs = server.url("/api/v2/petitions/p1/signatures")
    server.route(
        "GET",
        "/api/v2/petitions/p1",
        Reply.json(data("petition/osdi_petition.json", SIGNATURES_URL=sigs)),
    )
    server.route(
        "GET",
        "/api/v2/petitions/p1/signatures",
        Reply.json(data("petition/osdi_signatures_1.json", NEXT_URL=sigs + "/page2")),
    )
    server.route(
        "GET",
        "/api/v2/petitions/p1/signatures/page2",
        Reply.json(data("petition/osdi_signatures_2.json")),
    )
    source = make(server, http, "/api/v2/petitions/p1", mode="osdi")
    obs = await source.fetch(SourceState())
    assert obs.values["signatures"] == 2051
    assert [(i.title, i.fields["company"]) for i in obs.items] == [
        ("Ada Lovelace", "Palantir"),
        ("Grace Hopper", "Microsoft"),
    ]
    assert {r.headers.get("OSDI-API-Token") for r in server.requests} == {"s3cret"}
    assert obs.items[0].url == "https://actionnetwork.org/petitions/tech-workers-ice-out"
    assert obs.cursor == {"since": "2026-02-02T09:00:00Z"}
    again = await source.fetch(SourceState(cursor=obs.cursor))
    assert again.values["signatures"] == 2051
    assert server.requests[-2].query == [("filter", "created_date gt '2026-02-02T09:00:00Z'")]


@pytest.mark.parametrize(
    ("reply", "options", "error", "match"),
    [
        pytest.param(
            Reply.html(text("petition/redesigned.html")),
            LETTER,
            ParseError,
            "matches nothing",
            id="selector-gone",
        ),
        pytest.param(
            Reply.html(text("petition/redesigned.html")),
            {},
            ParseError,
            "no signature count",
            id="no-count-anywhere",
        ),
        pytest.param(
            Reply.html(text("petition/jsonld.html")),
            {"count_path": "props.count"},
            ParseError,
            "has 'props.count'",
            id="embedded-path-gone",
        ),
        pytest.param(
            Reply.html(text("petition/letter.html").replace("signatory", "person")),
            LETTER,
            ParseError,
            "matches nothing although the page counts 1,234",
            id="signatory-list-gone",
        ),
        pytest.param(Reply.retry_after(120), LETTER, RetryAfterError, "retry after 120", id="429"),
    ],
)
async def test_errors(
    server: FixtureServer,
    http: HttpClient,
    reply: Reply,
    options: dict[str, Any],
    error: type[Exception],
    match: str,
) -> None:
    server.route("GET", "/letter", reply)
    with pytest.raises(error, match=match):
        await make(server, http, **options).fetch(SourceState())


async def test_osdi_without_embedded_signatures_is_parse_error(
    server: FixtureServer, http: HttpClient
) -> None:
    sigs = server.url("/p/signatures")
    server.route("GET", "/p", Reply.json(data("petition/osdi_petition.json", SIGNATURES_URL=sigs)))
    server.route("GET", "/p/signatures", Reply.json({"total_records": 3, "_links": {}}))
    with pytest.raises(ParseError, match="osdi:signatures"):
        await make(server, http, "/p", mode="osdi").fetch(SourceState())


async def test_redirect_is_followed(server: FixtureServer, http: HttpClient) -> None:
    server.route("GET", "/old", Reply.redirect("/letter"))
    server.route("GET", "/letter", Reply.html(text("petition/letter.html"), etag='"v1"'))
    obs = await make(server, http, "/old", **LETTER).fetch(SourceState())
    assert obs.values["signatures"] == 1234
    assert len(obs.items) == 3


async def test_pending_delta_goes_out_when_the_page_is_unchanged(
    server: FixtureServer, http: HttpClient
) -> None:
    """No conditional GET: the poll after the period flushes what waited, page unchanged."""
    pages = ["letter.html", "letter_more.html", "letter_more.html"]
    server.route(
        "GET", "/letter", *(Reply.html(text(f"petition/{p}"), etag='"same"') for p in pages)
    )
    source = make(server, http, **LETTER, delta_period="1h")
    polls = Polls(source)
    assert await polls.poll(T0) == []  # baseline
    # as if a delta had just gone out at T0
    polls.detector = {"adapter": {**polls.derived, "last_delta_at": T0.isoformat()}}
    assert await polls.poll(T0 + timedelta(minutes=30)) == []  # 3 new, inside the period
    (delta,) = await polls.poll(T0 + timedelta(minutes=61))
    assert delta.fields["delta"] == 3
    assert all("If-None-Match" not in r.headers for r in server.requests)


async def test_events_across_polls(server: FixtureServer, http: HttpClient) -> None:
    """Baseline quiet; milestone once; watched signatories; deltas at most once per period."""
    source = make(
        server,
        http,
        **LETTER,
        milestones=[1000, 1500, 2000],
        delta_period="1h",
        watch_companies=["Palantir Technologies"],
        watch_titles=["VP"],
    )
    polls = Polls(source)
    pages = ["letter.html", "letter_more.html", "letter_more.html", "letter.html"]
    server.route("GET", "/letter", *(Reply.html(text(f"petition/{p}")) for p in pages))

    assert await polls.poll(T0) == []  # baseline at 1,234: the 1,000 milestone stays silent

    events = await polls.poll(T0 + timedelta(minutes=5))
    by_kind = {e.kind: e for e in events}
    assert by_kind[EventKind.MILESTONE].fields == {"count": 1502, "threshold": 1500}
    delta = by_kind[EventKind.DELTA]
    assert delta.fields["delta"] == 3
    assert delta.fields["by_company"] == {"Amazon": 1, "Palantir Technologies": 1, "Microsoft": 1}
    watched = {e.title for e in events if e.kind is EventKind.NEW}
    assert watched == {"Katherine Johnson", "Margaret Hamilton"}  # VP title; watched company

    assert await polls.poll(T0 + timedelta(minutes=10)) == []  # nothing new

    drop = await polls.poll(T0 + timedelta(minutes=15))  # count goes down: recorded, quiet
    assert drop == []
    assert polls.derived["last_count"] == 1234


async def test_delta_waits_for_its_period(server: FixtureServer, http: HttpClient) -> None:
    body = text("petition/letter.html")
    rows = [
        f'<li class="signatory"><span class="name">Person {n}</span><span class="company">Co{n % 2}</span></li>'
        for n in range(6)
    ]

    def page(k: int) -> Reply:
        return Reply.html(body.replace("</ul>", "".join(rows[:k]) + "</ul>"))

    server.route("GET", "/letter", page(0), page(1), page(3), page(6))
    polls = Polls(make(server, http, **LETTER, delta_period="30m"))
    assert await polls.poll(T0) == []
    first = await polls.poll(T0 + timedelta(minutes=1))
    assert [e.fields["delta"] for e in first] == [1]
    assert await polls.poll(T0 + timedelta(minutes=10)) == []  # two more pending, inside the period
    later = await polls.poll(T0 + timedelta(minutes=40))
    assert [e.fields["delta"] for e in later] == [5]
    assert later[0].fields["by_company"] == {"Co1": 3, "Co0": 2}  # persons 1-5


async def test_count_only_delta(server: FixtureServer, http: HttpClient) -> None:
    server.route(
        "GET",
        "/api",
        Reply.json({"count": 100}),
        Reply.json({"count": 130}),
    )
    polls = Polls(make(server, http, "/api", mode="json", count_path="count", delta_min=10))
    assert await polls.poll(T0) == []
    (event,) = await polls.poll(T0 + timedelta(hours=2))
    assert event.kind is EventKind.DELTA
    assert event.fields["delta"] == 30
    assert "+30 more signatures (130 total)" in event.title


@pytest.mark.parametrize(
    ("title", "company", "watch", "expected"),
    [
        pytest.param("CTO", "Acme", {"watch_titles": ["CTO"]}, True, id="title-word"),
        pytest.param(
            "Director of Engineering",
            "Acme",
            {"watch_titles": ["CTO"]},
            False,
            id="cto-not-in-director",
        ),
        pytest.param(
            "VP, Engineering", "Acme", {"watch_titles": ["VP"]}, True, id="title-with-punctuation"
        ),
        pytest.param(
            "Engineer",
            "Palantir Technologies",
            {"watch_companies": ["Palantir"]},
            True,
            id="company-prefix",
        ),
        pytest.param(
            "Engineer",
            "Palantir",
            {"watch_companies": ["Palantir Technologies"]},
            False,
            id="longer-name-no-match",
        ),
        pytest.param(
            "Engineer",
            "Amazon Web Services",
            {"watch_companies": ["AWS"]},
            False,
            id="no-alias-magic",
        ),
        pytest.param("Engineer", "", {"watch_companies": ["Palantir"]}, False, id="no-company"),
    ],
)
def test_watched_signatories(
    title: str, company: str, watch: dict[str, Any], expected: bool
) -> None:
    source = PetitionSource(
        source_id="x", url="http://127.0.0.1/", options=PetitionOptions(**watch), http=HttpClient()
    )
    item = Item(key="k", title="Someone", fields={"title": title, "company": company})
    assert source._watched(item) is expected


async def test_pending_list_is_bounded(
    server: FixtureServer, http: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("alerts.sources.petition._PENDING_MAX", 2)
    server.route(
        "GET",
        "/letter",
        Reply.html(text("petition/letter.html")),
        Reply.html(text("petition/letter_more.html")),
    )
    polls = Polls(make(server, http, **LETTER))
    await polls.poll(T0)
    (delta,) = [e for e in await polls.poll(T0 + timedelta(hours=1)) if e.kind is EventKind.DELTA]
    assert delta.fields["delta"] == 3
    assert len(delta.fields["names"]) == 2
    assert delta.summary.endswith("and 1 more")
