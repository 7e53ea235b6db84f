"""The awards adapter against USAspending API v2 fixtures, over loopback.

Award ids and amounts in the fixtures follow the real formats; the Palantir figures
are illustrative of the ImmigrationOS case (a modification of a 2022 ICE award).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from alerts.errors import ParseError, RetryAfterError
from alerts.fixture_server import FixtureServer, Recorded, Reply
from alerts.model import EventKind
from alerts.sources import SourceState
from alerts.sources.awards import AwardsOptions, AwardsSource
from alerts.sources.http import HttpClient

from .helpers import Polls, data

AWARDS = "/api/v2/search/spending_by_award/"
TX_SEARCH = "/api/v2/search/spending_by_transaction/"
TRANSACTIONS = "/api/v2/transactions/"
PALANTIR = "CONT_AWD_70CTD022FR0000170_7012_GS35F0086U_4730"
GEO = "CONT_AWD_70CDCR26C00000012_7012_-NONE-_-NONE-"
TODAY = date(2026, 2, 3)
T0 = datetime(2026, 2, 3, 12, tzinfo=UTC)


def paged(*names: str) -> Any:
    """Answer a POSTed search with the fixture of the requested page."""

    def reply(request: Recorded) -> Reply:
        return Reply.json(data(f"awards/{names[request.body['page'] - 1]}"))

    return reply


def make(server: FixtureServer, http: HttpClient, **options: Any) -> AwardsSource:
    return AwardsSource(
        source_id="ice-awards",
        url=server.base_url,
        options=AwardsOptions(**options),
        http=http,
        today=TODAY,
    )


CLEARVIEW = "CONT_AWD_70CTD026FR0000031_7012_47QTCA20D00AB_4732"
OFFICE_DEPOT = "CONT_AWD_70CMSD26P00000101_7012_-NONE-_-NONE-"
PARENTS = {
    GEO: "GEO GROUP, INC., THE",
    CLEARVIEW: "CLEARVIEW AI, INC.",
    OFFICE_DEPOT: "THE ODP CORPORATION",
    PALANTIR: "PALANTIR TECHNOLOGIES INC.",
}


def award_detail(award_key: str, recipient: str, parent: str | None) -> Reply:
    """``GET /api/v2/awards/<id>/`` as api_contracts/contracts/v2/awards/award_id.md shows it."""
    body = data("awards/palantir_award.json")
    body["generated_unique_award_id"] = award_key
    body["recipient"] = {**body["recipient"], "recipient_name": recipient}
    body["recipient"]["parent_recipient_name"] = parent
    return Reply.json(body)


def routes(server: FixtureServer, *, awards: Any = None, mods: str = "no_mods.json") -> None:
    server.route("POST", AWARDS, awards or paged("new_awards_page1.json", "new_awards_page2.json"))
    server.route("POST", TX_SEARCH, Reply.json(data(f"awards/{mods}")))
    for key, parent in PARENTS.items():
        if key != PALANTIR:
            server.route("GET", f"/api/v2/awards/{key}/", award_detail(key, parent, parent))


async def test_new_awards_paged_with_the_request_contract(
    server: FixtureServer, http: HttpClient
) -> None:
    routes(server)
    obs = await make(server, http, min_amount=1000, recipients=[]).fetch(SourceState())
    assert [i.fields["award_id"] for i in obs.items] == [
        "70CDCR26C00000012",
        "70CTD026FR0000031",
        "70CMSD26P00000101",
    ]
    geo = obs.items[0]
    assert geo.key == GEO
    assert geo.url == f"https://www.usaspending.gov/award/{GEO}"
    assert geo.fields["amount"] == 45_800_000.0
    assert geo.fields["agency"] == "U.S. Immigration and Customs Enforcement"
    assert geo.fields["modification"] is None
    pages = [c.body for c in server.calls(AWARDS)]
    assert [p["page"] for p in pages] == [1, 2]  # stopped at hasNext = false
    filters = pages[0]["filters"]
    assert filters["time_period"] == [
        {"start_date": "2026-01-04", "end_date": "2026-02-03", "date_type": "new_awards_only"}
    ]
    assert filters["agencies"] == [
        {"type": "awarding", "tier": "subtier", "name": "U.S. Immigration and Customs Enforcement"}
    ]
    assert filters["award_type_codes"] == ["A", "B", "C", "D"]
    assert filters["award_amounts"] == [{"lower_bound": 1000}]
    assert "recipient_search_text" not in filters
    (tx,) = server.calls(TX_SEARCH)
    assert tx.body["filters"]["time_period"][0]["date_type"] == "action_date"
    assert tx.body["sort"] == "Action Date"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(
            {},
            {
                GEO,
                "CONT_AWD_70CTD026FR0000031_7012_47QTCA20D00AB_4732",
                "CONT_AWD_70CMSD26P00000101_7012_-NONE-_-NONE-",
            },
            id="everyone",
        ),
        pytest.param({"recipients": ["geo group"]}, {GEO}, id="watchlist"),
        pytest.param({"min_amount": 2_000_000}, {GEO}, id="min-amount"),
        pytest.param({"recipients": ["Palantir"]}, set(), id="watchlist-no-match"),
        pytest.param({"recipients": ["ODP"]}, {OFFICE_DEPOT}, id="watchlist-parent"),
        pytest.param({"recipients": ["geo"]}, {GEO}, id="watchlist-whole-word"),
    ],
)
async def test_watchlist_and_minimum(
    server: FixtureServer, http: HttpClient, options: dict[str, Any], expected: set[str]
) -> None:
    routes(server)
    obs = await make(server, http, **options).fetch(SourceState())
    assert {i.key for i in obs.items} == expected
    if "recipients" in options:
        assert (
            server.calls(AWARDS)[0].body["filters"]["recipient_search_text"]
            == options["recipients"]
        )


async def test_empty_window(server: FixtureServer, http: HttpClient) -> None:
    routes(server, awards=Reply.json(data("awards/empty_awards.json")), mods="empty_awards.json")
    obs = await make(server, http).fetch(SourceState())
    assert obs.items == ()


@pytest.mark.parametrize(
    ("awards", "match"),
    [
        pytest.param(
            Reply.json(data("awards/schema_changed.json")),
            "no 'results' list",
            id="results-renamed",
        ),
        pytest.param(
            Reply.json({"results": [], "page_metadata": {"page": 1}}), "hasNext", id="no-hasNext"
        ),
        pytest.param(
            Reply.json(
                {
                    "results": [{"generated_internal_id": GEO, "Award Amount": "12.0"}],
                    "page_metadata": {"hasNext": False},
                }
            ),
            "not an amount",
            id="amount-became-string",
        ),
        pytest.param(
            Reply.json(
                {
                    "results": [{"Award ID": "X", "Award Amount": 1.0}],
                    "page_metadata": {"hasNext": False},
                }
            ),
            "generated_internal_id",
            id="no-internal-id",
        ),
    ],
)
async def test_payload_that_no_longer_matches(
    server: FixtureServer, http: HttpClient, awards: Reply, match: str
) -> None:
    routes(server, awards=awards)
    with pytest.raises(ParseError, match=match):
        await make(server, http).fetch(SourceState())


async def test_429_with_retry_after(server: FixtureServer, http: HttpClient) -> None:
    routes(server, awards=Reply.retry_after(30))
    with pytest.raises(RetryAfterError) as info:
        await make(server, http).fetch(SourceState())
    assert info.value.retry_after_s == 30


async def test_redirect_keeps_the_post(server: FixtureServer, http: HttpClient) -> None:
    routes(server)
    server.route("POST", "/moved" + AWARDS, Reply.redirect(server.url(AWARDS), status=307))
    server.route("POST", "/moved" + TX_SEARCH, Reply.redirect(server.url(TX_SEARCH), status=307))
    source = AwardsSource(
        source_id="x", url=server.url("/moved"), options=AwardsOptions(), http=http, today=TODAY
    )
    obs = await source.fetch(SourceState())
    assert len(obs.items) == 3
    assert (
        server.calls(AWARDS)[0].body["filters"]["time_period"][0]["date_type"] == "new_awards_only"
    )


async def test_palantir_modification_of_an_unseen_award_is_a_modification(
    server: FixtureServer, http: HttpClient
) -> None:
    """The ImmigrationOS money: a modification of a 2022 award, never seen before."""
    routes(server)
    server.route("POST", TRANSACTIONS, Reply.json(data("awards/palantir_transactions.json")))
    polls = Polls(make(server, http))
    assert await polls.poll(T0) == []

    server.route("POST", TX_SEARCH, Reply.json(data("awards/palantir_mod.json")))
    (event,) = await polls.poll(T0 + timedelta(hours=1))
    assert event.kind is EventKind.UPDATED
    assert event.key == f"{PALANTIR}#P00011"
    assert event.changes == {"amount": (95_900_000.0, 125_754_750.0)}
    assert event.fields["delta"] == 29_854_750.0
    assert event.fields["modification"] == "P00011"
    assert event.fields["recipient"] == "PALANTIR USG INC"
    assert event.url == f"https://www.usaspending.gov/award/{PALANTIR}"
    assert "IMMIGRATIONOS" in event.summary
    assert server.calls(TRANSACTIONS)[0].body["award_id"] == PALANTIR

    assert await polls.poll(T0 + timedelta(hours=2)) == []  # same modification: quiet
    assert len(server.calls(TRANSACTIONS)) == 1  # the ledger remembers it


async def test_palantir_modification_of_a_followed_award(
    server: FixtureServer, http: HttpClient
) -> None:
    """Following the award: the baseline knows its total; the modification raises it."""
    routes(server)
    server.route(
        "POST",
        TRANSACTIONS,
        Reply.json(data("awards/palantir_transactions_before.json")),
        Reply.json(data("awards/palantir_transactions.json")),
    )
    server.route(
        "GET", f"/api/v2/awards/{PALANTIR}/", Reply.json(data("awards/palantir_award.json"))
    )
    polls = Polls(make(server, http, follow=[PALANTIR], recipients=["Palantir"]))
    assert await polls.poll(T0) == []
    followed = polls.items[PALANTIR]
    assert followed.fields["amount"] == 95_900_000.0
    assert followed.fields["recipient"] == "PALANTIR USG INC"
    assert followed.fields["award_id"] == "70CTD022FR0000170"
    assert followed.fields["agency"] == "U.S. Immigration and Customs Enforcement"

    server.route("POST", TX_SEARCH, Reply.json(data("awards/palantir_mod.json")))
    (event,) = await polls.poll(T0 + timedelta(hours=1))
    assert event.kind is EventKind.UPDATED
    assert event.changes == {"amount": (95_900_000.0, 125_754_750.0)}
    assert event.fields["delta"] == 29_854_750.0
    assert event.title == "PALANTIR USG INC: modification P00011 +$29,854,750 (70CTD022FR0000170)"
    assert len(server.calls(f"/api/v2/awards/{PALANTIR}/")) == 1  # who it is: asked once


async def test_followed_award_without_recipient_is_parse_error(
    server: FixtureServer, http: HttpClient
) -> None:
    routes(server)
    server.route("POST", TRANSACTIONS, Reply.json(data("awards/palantir_transactions.json")))
    server.route("GET", f"/api/v2/awards/{PALANTIR}/", Reply.json({"id": 1, "piid": "X"}))
    with pytest.raises(ParseError, match="recipient_name"):
        await make(server, http, follow=[PALANTIR]).fetch(SourceState())


async def test_new_award_is_new(server: FixtureServer, http: HttpClient) -> None:
    routes(server, awards=paged("new_awards_page2.json"))
    polls = Polls(make(server, http))
    assert await polls.poll(T0) == []
    routes(server)
    events = await polls.poll(T0 + timedelta(hours=1))
    assert {(e.kind, e.key) for e in events} == {
        (EventKind.NEW, GEO),
        (EventKind.NEW, "CONT_AWD_70CTD026FR0000031_7012_47QTCA20D00AB_4732"),
    }


def geo_mod(amount: str) -> Reply:
    """A spending_by_transaction page (fixtures/awards/palantir_mod.json's shape) with one
    modification of the GEO award: what "GEO GROUP, INC., THE: modification P00007 +$0" was."""
    body = data("awards/palantir_mod.json")
    row = {**body["results"][1], "Mod": "P00007", "Transaction Amount": amount}
    row["Action Date"] = "2026-02-01"
    row["Transaction Description"] = "ADMINISTRATIVE: UPDATE CONTRACTING OFFICER"
    return Reply.json({**body, "results": [row]})


GEO_TRANSACTIONS = {
    "page_metadata": {"page": 1, "hasNext": False, "hasPrevious": False},
    "results": [
        {
            "modification_number": "P00007",
            "action_date": "2026-02-01",
            "federal_action_obligation": 0.0,
        },
        {
            "modification_number": "0",
            "action_date": "2026-01-14",
            "federal_action_obligation": 45800000.0,
        },
    ],
}


@pytest.mark.parametrize(
    ("amount", "options", "expected"),
    [
        pytest.param("0.00", {}, [], id="zero-modification-skipped"),
        pytest.param("0", {}, [], id="zero-as-integer-text"),
        pytest.param(
            "0.00",
            {"include_zero_modifications": True},
            [("GEO GROUP, INC., THE: modification P00007 +$0 (70CDCR26C00000012)", 0.0)],
            id="zero-modification-asked-for",
        ),
        pytest.param(
            "-250000.00",
            {},
            [
                (
                    "GEO GROUP, INC., THE: modification P00007 -$250,000 (70CDCR26C00000012)",
                    -250_000.0,
                )
            ],
            id="deobligation-alerted",
        ),
    ],
)
async def test_zero_modifications(
    server: FixtureServer,
    http: HttpClient,
    amount: str,
    options: dict[str, Any],
    expected: list[tuple[str, float]],
) -> None:
    routes(server, awards=Reply.json(data("awards/empty_awards.json")))
    tx = dict(GEO_TRANSACTIONS)
    tx["results"] = [
        {**tx["results"][0], "federal_action_obligation": float(amount)},
        tx["results"][1],
    ]
    server.route("POST", TRANSACTIONS, Reply.json(tx))
    polls = Polls(make(server, http, **options))
    assert await polls.poll(T0) == []
    server.route("POST", TX_SEARCH, geo_mod(amount))
    events = await polls.poll(T0 + timedelta(hours=1))
    assert [(e.title, e.fields["delta"]) for e in events] == expected


@pytest.mark.parametrize(
    ("recipient", "parent", "watch", "matched"),
    [
        pytest.param(
            "PALANTIR USG INC",
            "PALANTIR TECHNOLOGIES INC.",
            ["Palantir"],
            "recipient",
            id="recipient",
        ),
        pytest.param(
            "PALANTIR USG INC",
            "PALANTIR TECHNOLOGIES INC.",
            ["Palantir Technologies"],
            "parent",
            id="parent",
        ),
        pytest.param("PALANTIR USG INC", None, ["Palantir Technologies"], None, id="no-parent"),
        pytest.param("ANDURIL INDUSTRIES", "ANDURIL INDUSTRIES", ["Palantir"], None, id="neither"),
    ],
)
async def test_subsidiaries_match_through_their_parent(
    server: FixtureServer,
    http: HttpClient,
    recipient: str,
    parent: str | None,
    watch: list[str],
    matched: str | None,
) -> None:
    body = data("awards/palantir_mod.json")
    body["results"] = [{**body["results"][0], "Recipient Name": recipient}]
    routes(server, awards=Reply.json(data("awards/empty_awards.json")))
    server.route("POST", TX_SEARCH, Reply.json(body))
    server.route("POST", TRANSACTIONS, Reply.json(data("awards/palantir_transactions.json")))
    server.route("GET", f"/api/v2/awards/{PALANTIR}/", award_detail(PALANTIR, recipient, parent))
    obs = await make(server, http, recipients=watch).fetch(SourceState())
    if matched is None:
        assert obs.items == ()
        return
    (item,) = obs.items
    assert item.fields["matched"] == matched
    if matched == "parent":
        assert item.fields["parent_recipient"] == parent
        assert f"(parent: {parent})" in item.summary
    again = await make(server, http, recipients=watch).fetch(SourceState(cursor=obs.cursor))
    assert len(again.items) == 1
    assert len(server.calls(f"/api/v2/awards/{PALANTIR}/")) == (0 if matched == "recipient" else 1)


@pytest.mark.parametrize(
    ("options", "agency"),
    [
        pytest.param(
            {},
            {
                "type": "awarding",
                "tier": "subtier",
                "name": "U.S. Immigration and Customs Enforcement",
            },
            id="awarding-by-default",
        ),
        pytest.param(
            {"agency_type": "funding"},
            {
                "type": "funding",
                "tier": "subtier",
                "name": "U.S. Immigration and Customs Enforcement",
            },
            id="funding-agency",
        ),
        pytest.param(
            {
                "agency_type": "funding",
                "agency_tier": "toptier",
                "agency": "Department of Homeland Security",
            },
            {"type": "funding", "tier": "toptier", "name": "Department of Homeland Security"},
            id="funding-toptier",
        ),
    ],
)
async def test_agency_type(
    server: FixtureServer, http: HttpClient, options: dict[str, Any], agency: dict[str, str]
) -> None:
    """AgencyObject ``type`` is ``awarding`` or ``funding`` (search/spending_by_award.md)."""
    routes(server)
    await make(server, http, **options).fetch(SourceState())
    for path in (AWARDS, TX_SEARCH):
        assert server.calls(path)[0].body["filters"]["agencies"] == [agency]


def test_unknown_agency_type_is_refused() -> None:
    with pytest.raises(ValueError, match="agency_type"):
        AwardsOptions(agency_type="spending")


async def test_zero_modification_of_a_known_award_when_asked_for(
    server: FixtureServer, http: HttpClient
) -> None:
    """The award is already known (a new award in the window): only the mod number moves."""
    routes(server)
    polls = Polls(make(server, http, include_zero_modifications=True))
    assert await polls.poll(T0) == []
    server.route("POST", TX_SEARCH, geo_mod("0.00"))
    (event,) = await polls.poll(T0 + timedelta(hours=1))
    assert event.title == "GEO GROUP, INC., THE: modification P00007 +$0 (70CDCR26C00000012)"
    assert await polls.poll(T0 + timedelta(hours=2)) == []  # once
    quiet = Polls(make(server, http))
    server.route("POST", TX_SEARCH, Reply.json(data("awards/no_mods.json")))
    await quiet.poll(T0)
    server.route("POST", TX_SEARCH, geo_mod("0.00"))
    assert await quiet.poll(T0 + timedelta(hours=1)) == []
