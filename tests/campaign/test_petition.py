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
    "raw",
    [
        pytest.param("1e3", id="exponent"),
        pytest.param("2.5e6 signatures", id="decimal-exponent"),
        pytest.param("0x10", id="hex"),
        pytest.param("-5", id="negative"),
        pytest.param("\u22125 signatures", id="unicode-minus"),
        pytest.param("2.5", id="decimal-without-suffix"),
        pytest.param("12,34", id="odd-grouping"),
        pytest.param("1,234.5", id="decimal-after-grouping"),
        pytest.param("1.234k", id="ambiguous-with-suffix"),
        pytest.param("v2 letter", id="digit-inside-a-word"),
    ],
)
def test_parse_count_refuses_to_guess(raw: str) -> None:
    with pytest.raises(ParseError):
        parse_count(raw)


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


# The OSDI fixtures follow OSDI v1.1 "Signature" (opensupporter/osdi-docs signatures.md,
# "Retrieving a collection of Signature resources") and Action Network's "Signatures"
# and "People" pages (actionnetwork.org/docs/v2/signatures, /people): a signature only
# *links* to its person. See fixtures/SOURCES.md.
SIGS = "/api/v2/petitions/p1/signatures"


def person(api: str, given: str, family: str, title: str, company: str) -> Reply:
    return Reply.json(
        data(
            "petition/osdi_person.json",
            API=api,
            GIVEN=given,
            FAMILY=family,
            TITLE=title,
            COMPANY=company,
        )
    )


def osdi_world(server: FixtureServer, links: dict[str, str]) -> None:
    api = server.base_url
    fill = {"API": api, "NEXT_URL": server.url(SIGS + "/page2"), **links}
    server.route(
        "GET",
        "/api/v2/petitions/p1",
        Reply.json(data("petition/osdi_petition.json", SIGNATURES_URL=server.url(SIGS))),
    )
    server.route("GET", SIGS, Reply.json(data("petition/osdi_signatures_1.json", **fill)))
    server.route(
        "GET", SIGS + "/page2", Reply.json(data("petition/osdi_signatures_2.json", **fill))
    )


def three_people(server: FixtureServer) -> str:
    """The OSDI world with persons a, b, c each on the API origin; returns its base URL."""
    api = server.base_url
    for key in "abc":
        server.route("GET", f"/api/v2/people/{key}", person(api, key.upper(), "X", "", "Acme"))
    osdi_world(server, {f"PERSON_{k.upper()}": server.url(f"/api/v2/people/{k}") for k in "abc"})
    return api


@pytest.mark.parametrize(
    ("where", "expected_token_paths"),
    [
        pytest.param("same-origin", {"/api/v2/people/b"}, id="person-on-api-origin"),
        pytest.param("other-origin", set(), id="person-link-to-another-host"),
        pytest.param("redirected", {"/api/v2/people/b"}, id="redirect-to-another-host"),
    ],
)
async def test_osdi_reads_person_links_and_keeps_the_token_home(
    server: FixtureServer,
    http: HttpClient,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    expected_token_paths: set[str],
) -> None:
    monkeypatch.setenv("ALERTS_PETITION_OSDI_TOKEN", "s3cret")
    api = server.base_url
    async with FixtureServer() as other:
        server.route(
            "GET", "/api/v2/people/a", person(api, "Ada", "Lovelace", "Staff Engineer", "Palantir")
        )
        server.route("GET", "/api/v2/people/c", person(api, "", "", "", "Google"))
        b = person(api, "Grace", "Hopper", "Principal Engineer", "Microsoft")
        other.route("GET", "/people/b", b)
        if where == "same-origin":
            server.route("GET", "/api/v2/people/b", b)
            link_b = server.url("/api/v2/people/b")
        elif where == "other-origin":
            link_b = other.url("/people/b")
        else:
            server.route("GET", "/api/v2/people/b", Reply.redirect(other.url("/people/b")))
            link_b = server.url("/api/v2/people/b")
        osdi_world(
            server,
            {
                "PERSON_A": server.url("/api/v2/people/a"),
                "PERSON_B": link_b,
                "PERSON_C": server.url("/api/v2/people/c"),
            },
        )
        obs = await make(server, http, "/api/v2/petitions/p1", mode="osdi").fetch(SourceState())
        assert obs.values["signatures"] == 2051
        rows = [(i.title, i.fields["company"], i.fields["anonymous"]) for i in obs.items]
        assert rows == [
            ("Anonymous", "Google", True),  # a person without a name: anonymous, not dropped
            ("Grace Hopper", "Microsoft", False),
            ("Ada Lovelace", "Palantir", False),
        ]
        assert all(r.headers.get("OSDI-API-Token") is None for r in other.requests)
        api_paths = {r.path for r in server.requests}
        assert {r.path for r in server.requests if r.headers.get("OSDI-API-Token") == "s3cret"} == (
            api_paths
        )
        people = {r.path for r in server.requests if r.path.startswith("/api/v2/people/")}
        assert people - {"/api/v2/people/a", "/api/v2/people/c"} == expected_token_paths
        assert obs.items[0].url == "https://actionnetwork.org/petitions/tech-workers-ice-out"
        assert obs.items[0].key == "id:action_network:5a3c9e0e-1a4c-4c44-9b3f-6f2b8f1e7c21"


async def test_osdi_second_poll_reads_only_what_is_new(
    server: FixtureServer, http: HttpClient
) -> None:
    three_people(server)
    source = make(server, http, "/api/v2/petitions/p1", mode="osdi")
    first = await source.fetch(SourceState())
    assert len(first.items) == 3
    before = len(server.requests)
    again = await source.fetch(SourceState(cursor=first.cursor))
    paths = [r.path for r in server.requests[before:]]
    assert again.items == ()
    assert paths == ["/api/v2/petitions/p1", SIGS]  # page 1 has nothing new: stop there
    assert not [r for r in server.requests if r.query and r.query[0][0] == "filter"]


async def test_osdi_person_cache_spares_repeat_lookups(
    server: FixtureServer, http: HttpClient
) -> None:
    api = server.base_url
    server.route("GET", "/api/v2/people/a", person(api, "Ada", "Lovelace", "", "Palantir"))
    same = server.url("/api/v2/people/a")
    osdi_world(server, {"PERSON_A": same, "PERSON_B": same, "PERSON_C": same})
    obs = await make(server, http, "/api/v2/petitions/p1", mode="osdi").fetch(SourceState())
    assert len(obs.items) == 3
    assert [r.path for r in server.requests].count("/api/v2/people/a") == 1


async def test_osdi_oldest_first_collections_are_read_from_the_last_page(
    server: FixtureServer, http: HttpClient
) -> None:
    api = three_people(server)
    page1 = data(
        "petition/osdi_signatures_1.json",
        API=api,
        NEXT_URL="unused",
        PERSON_A=server.url("/api/v2/people/a"),
        PERSON_B=server.url("/api/v2/people/b"),
    )
    page1["_embedded"]["osdi:signatures"].reverse()  # oldest first
    server.route("GET", SIGS, Reply.json(page1))
    obs = await make(server, http, "/api/v2/petitions/p1", mode="osdi").fetch(SourceState())
    assert [r.query for r in server.requests if r.path == SIGS] == [[], [("page", "2")]]
    assert {i.title for i in obs.items} == {"A X", "B X"}  # page 2 is the same route here


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
        await make(server, http, "/p?key=hunter2", mode="osdi").fetch(SourceState())
    server.route("GET", "/p", Reply.json({"total_signatures": "1e3"}))
    with pytest.raises(ParseError, match="not a plain count") as caught:
        await make(server, http, "/p?key=hunter2", mode="osdi").fetch(SourceState())
    assert "hunter2" not in str(caught.value)


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
    assert delta.fields["delta"] == 268  # the rise of the count: 1,234 -> 1,502
    assert sum(delta.fields["by_company"].values()) == 3  # the rows the page names
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
    assert delta.fields["delta"] == 268
    assert delta.title == "+268 signatures (1,502 total)"
    assert delta.fields["by_company"] == {"Amazon": 1, "Palantir Technologies": 1, "Microsoft": 1}
    watched = {e.title for e in events if e.kind is EventKind.NEW}
    assert watched == {"Katherine Johnson", "Margaret Hamilton"}  # VP title; watched company

    assert await polls.poll(T0 + timedelta(minutes=10)) == []  # nothing new

    drop = await polls.poll(T0 + timedelta(minutes=15))  # count goes down: recorded, quiet
    assert drop == []
    assert polls.derived["last_count"] == 1234


def letter_page(count: int, rows: list[tuple[str, str]], *, ids: bool = False) -> Reply:
    """The letter page (fixtures/petition/letter.html) with ``rows`` of (name, company)."""
    items = "".join(
        f'<li class="signatory"{f" data-id=r{n}" if ids else ""}><span class="name">{name}</span>'
        f'<span class="company">{company}</span></li>'
        for n, (name, company) in enumerate(rows)
    )
    body = text("petition/letter.html").replace("1,234", f"{count:,}")
    head = body.split('<ul class="signatories">')[0]
    return Reply.html(f"{head}<ul>{items}</ul></main></body></html>")


async def test_delta_waits_for_its_period(server: FixtureServer, http: HttpClient) -> None:
    rows = [(f"Person {n}", f"Co{n % 2}") for n in range(6)]
    server.route(
        "GET",
        "/letter",
        letter_page(10, rows[:1]),
        letter_page(11, rows[:2]),
        letter_page(13, rows[:4]),
        letter_page(16, rows[:6]),
    )
    polls = Polls(make(server, http, **LETTER, delta_period="30m"))
    assert await polls.poll(T0) == []
    first = await polls.poll(T0 + timedelta(minutes=1))
    assert [e.fields["delta"] for e in first] == [1]
    assert await polls.poll(T0 + timedelta(minutes=10)) == []  # two more pending, inside the period
    later = await polls.poll(T0 + timedelta(minutes=40))
    assert [e.fields["delta"] for e in later] == [5]
    assert later[0].fields["by_company"] == {"Co0": 2, "Co1": 2}  # persons 2-5


ANON = "Anonymous"
GOOGLE_40 = [(ANON, "Google")] * 40
PALANTIR_20 = [(ANON, "Palantir")] * 20


@pytest.mark.parametrize(
    ("before", "after", "delta", "by_company", "anonymous"),
    [
        pytest.param(
            (1234, [("Ada Lovelace", "Google")]),
            (1295, [("Ada Lovelace", "Google"), *GOOGLE_40, *PALANTIR_20, ("Grace Hopper", "IBM")]),
            61,
            {"Google": 40, "Palantir": 20, "IBM": 1},
            60,
            id="anonymous-rows-counted",
        ),
        pytest.param(
            (10, [("", "Google")]),
            (12, [("", "Google"), ("", "Google"), ("", "")]),
            2,
            {"Google": 1, "(no company)": 1},
            2,
            id="nameless-rows-are-anonymous",
        ),
        pytest.param(
            (10, [("Sam Smith", "Acme")]),
            (11, [("Sam Smith", "Acme"), ("Sam Smith", "Acme")]),
            1,
            {"Acme": 1},
            0,
            id="same-name-and-company-twice",
        ),
        pytest.param((100, [("Ada", "X")]), (130, [("Ada", "X")]), 30, {}, 0, id="no-new-rows"),
    ],
)
async def test_delta_is_the_rise_of_the_count(
    server: FixtureServer,
    http: HttpClient,
    before: tuple[int, list[tuple[str, str]]],
    after: tuple[int, list[tuple[str, str]]],
    delta: int,
    by_company: dict[str, int],
    anonymous: int,
) -> None:
    server.route("GET", "/letter", letter_page(*before), letter_page(*after))
    polls = Polls(make(server, http, count_selector=".signature-count", signatory_selector="li"))
    assert await polls.poll(T0) == []  # a nameless row no longer fails the poll
    (event,) = await polls.poll(T0 + timedelta(hours=2))
    assert event.kind is EventKind.DELTA
    assert event.title == f"+{delta:,} signatures ({after[0]:,} total)"
    assert event.fields["delta"] == delta
    assert event.fields["by_company"] == by_company
    assert event.fields["anonymous"] == anonymous


async def test_row_ids_tell_people_apart(server: FixtureServer, http: HttpClient) -> None:
    rows = [("Sam Smith", "Acme"), ("Sam Smith", "Acme")]
    server.route("GET", "/letter", letter_page(2, rows, ids=True))
    source = make(server, http, count_selector=".signature-count", signatory_selector="li")
    obs = await source.fetch(SourceState())
    assert [i.key for i in obs.items] == ["id:r0", "id:r1"]


async def test_anonymous_signers_of_a_watched_company_get_one_alert(
    server: FixtureServer, http: HttpClient
) -> None:
    before = [("Ada Lovelace", "Google")]
    after = [*before, *PALANTIR_20, ("Grace Hopper", "Palantir Technologies")]
    server.route("GET", "/letter", letter_page(1234, before), letter_page(1255, after))
    source = make(
        server,
        http,
        count_selector=".signature-count",
        signatory_selector="li",
        watch_companies=["Palantir"],
    )
    polls = Polls(source)
    await polls.poll(T0)
    events = await polls.poll(T0 + timedelta(hours=2))
    new = sorted(e.title for e in events if e.kind is EventKind.NEW)
    assert new == ["20 anonymous signers from Palantir", "Grace Hopper"]


async def test_alert_links_carry_no_secrets(server: FixtureServer, http: HttpClient) -> None:
    server.route("GET", "/letter", letter_page(10, [("Ada", "X")]), letter_page(20, [("Ada", "X")]))
    source = make(
        server,
        http,
        "/letter?key=hunter2&utm=x",
        count_selector=".signature-count",
        signatory_selector="li",
    )
    polls = Polls(source)
    await polls.poll(T0)
    (delta,) = await polls.poll(T0 + timedelta(hours=2))
    assert delta.url == server.url("/letter?utm=x")
    assert all("hunter2" not in (i.url or "") for i in polls.items.values())


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
    assert delta.fields["delta"] == 268
    assert len(delta.fields["names"]) == 2
    assert delta.summary.startswith("Katherine Johnson, Margaret Hamilton and 1 more")
