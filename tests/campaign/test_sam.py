"""The sam adapter against SAM.gov Get Opportunities Public API v2 fixtures, over loopback.

Fixtures follow the v2 response documented at open.gsa.gov/api/get-opportunities-public-api
(GSA/open-gsa-redesign ``_apidocs/get-opportunities-public-api.md``, examples 1 and 3):
``totalRecords``/``limit``/``offset`` and ``opportunitiesData[]`` with ``noticeId``,
``solicitationNumber``, ``fullParentPathName``, ``postedDate``, ``type``, ``award`` and
``uiLink``. See fixtures/SOURCES.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from alerts.errors import FetchError, HttpStatusError, ParseError
from alerts.fixture_server import FixtureServer, Recorded, Reply
from alerts.model import EventKind
from alerts.sources import SourceState, registry
from alerts.sources.http import HttpClient
from alerts.sources.sam import SamOptions, SamSource

from .helpers import Polls, data

SEARCH = "/opportunities/v2/search"
KEY = "SAM-KEY-5f4dcc3b5aa765d61d8327deb882cf99"
TODAY = date(2025, 4, 12)
T0 = datetime(2025, 4, 12, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def sam_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERTS_SAM_API_KEY", KEY)


def make(server: FixtureServer, http: HttpClient, **options: Any) -> SamSource:
    return SamSource(
        source_id="ice-sam",
        url=server.url(SEARCH),
        options=SamOptions(**options),
        http=http,
        today=TODAY,
    )


def by_type(**replies: Any) -> Any:
    """Answer each ``ptype`` with its own fixture (and ``empty.json`` otherwise)."""

    def reply(request: Recorded) -> Reply:
        ptype = dict(request.query)["ptype"]
        body = replies.get(ptype, data("sam/empty.json"))
        return Reply.json(body(request) if callable(body) else body)

    return reply


def justification(**changes: Any) -> dict[str, Any]:
    body = data("sam/justification.json")
    body["opportunitiesData"][0].update(changes)
    return body


async def test_request_follows_the_documented_parameters(
    server: FixtureServer, http: HttpClient
) -> None:
    server.route("GET", SEARCH, by_type())
    await make(server, http, organization_name="Immigration and Customs Enforcement").fetch(
        SourceState()
    )
    assert [dict(r.query) for r in server.requests] == [
        {
            "postedFrom": "03/13/2025",
            "postedTo": "04/12/2025",
            "ptype": ptype,
            "limit": "100",
            "organizationName": "Immigration and Customs Enforcement",
            "offset": "0",
            "api_key": KEY,
        }
        for ptype in ("u", "a")
    ]


@pytest.mark.parametrize(
    ("replies", "options", "expected"),
    [
        pytest.param(
            {"u": data("sam/justification.json")},
            {},
            [
                (
                    "70ctd025r00000017|justification|70ctd022fr0000170",
                    "Justification: Sole Source Justification - ImmigrationOS Case Management Platform",
                    "https://sam.gov/opp/4c8e2b7f1d3a4e6b9f0a1c2d3e4f5a6b/view",
                    None,
                )
            ],
            id="justification",
        ),
        pytest.param(
            {"a": data("sam/award.json")},
            {},
            [
                (
                    "70cdcr25r00000009|award notice|70cdcr25c00000012",
                    "Award Notice: Detention Services - Adelanto ICE Processing Center",
                    "https://sam.gov/opp/9d1f0e2c3b4a59687766554433221100/view",
                    45_800_000.0,
                )
            ],
            id="award-notice",
        ),
        pytest.param(
            {"u": data("sam/justification.json"), "a": data("sam/award.json")},
            {"keywords": ["immigrationos"]},
            [
                (
                    "70ctd025r00000017|justification|70ctd022fr0000170",
                    "Justification: Sole Source Justification - ImmigrationOS Case Management Platform",
                    "https://sam.gov/opp/4c8e2b7f1d3a4e6b9f0a1c2d3e4f5a6b/view",
                    None,
                )
            ],
            id="keywords-whole-words",
        ),
        pytest.param(
            {"u": justification(solicitationNumber=None)},
            {},
            [
                (
                    "4c8e2b7f1d3a4e6b9f0a1c2d3e4f5a6b",
                    "Justification: Sole Source Justification - ImmigrationOS Case Management Platform",
                    "https://sam.gov/opp/4c8e2b7f1d3a4e6b9f0a1c2d3e4f5a6b/view",
                    None,
                )
            ],
            id="no-solicitation-number",
        ),
    ],
)
async def test_notices(
    server: FixtureServer,
    http: HttpClient,
    replies: dict[str, Any],
    options: dict[str, Any],
    expected: list[tuple[str, str, str, float | None]],
) -> None:
    server.route("GET", SEARCH, by_type(**replies))
    obs = await make(server, http, **options).fetch(SourceState())
    got = [(i.key, i.title, i.url, i.fields["amount"]) for i in obs.items]
    assert got == expected


async def test_new_then_amended(server: FixtureServer, http: HttpClient) -> None:
    polls = Polls(make(server, http))
    server.route("GET", SEARCH, by_type())
    assert await polls.poll(T0) == []
    server.route("GET", SEARCH, by_type(u=justification()))
    (new,) = await polls.poll(T0 + timedelta(hours=1))
    assert new.kind is EventKind.NEW
    assert new.fields["organization"].startswith("HOMELAND SECURITY")
    assert await polls.poll(T0 + timedelta(hours=2)) == []  # unchanged: quiet
    amended = justification(noticeId="5d9f", postedDate="2025-04-14", title="J&A (amended)")
    server.route("GET", SEARCH, by_type(u=amended))
    (update,) = await polls.poll(T0 + timedelta(days=2))
    assert update.kind is EventKind.UPDATED
    assert update.key == new.key
    assert update.changes["posted"] == ("2025-04-10", "2025-04-14")


async def test_pages_by_offset(server: FixtureServer, http: HttpClient) -> None:
    def page(request: Recorded) -> dict[str, Any]:
        offset = int(dict(request.query)["offset"])
        body = justification(noticeId=f"n{offset}", solicitationNumber=f"SOL-{offset}")
        return {**body, "totalRecords": 3, "limit": 2, "offset": offset}

    server.route("GET", SEARCH, by_type(u=page))
    obs = await make(server, http, notice_types=["u"], page_size=2).fetch(SourceState())
    assert [dict(r.query)["offset"] for r in server.requests] == ["0", "1"]
    assert len(obs.items) == 2


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        pytest.param(
            Reply.json({"error": "x"}, status=403), HttpStatusError, "403", id="forbidden"
        ),
        pytest.param(
            Reply.json({"totalRecords": 0}), ParseError, "opportunitiesData", id="no-list"
        ),
        pytest.param(
            Reply.json({"opportunitiesData": []}), ParseError, "totalRecords", id="no-total"
        ),
        pytest.param(
            Reply.json(justification(noticeId=None)), ParseError, "noticeId", id="no-notice-id"
        ),
        pytest.param(
            Reply.json(justification(award={"amount": "a lot"})),
            ParseError,
            "not a number",
            id="amount-not-a-number",
        ),
    ],
)
async def test_errors_never_show_the_key(
    server: FixtureServer,
    http: HttpClient,
    caplog: pytest.LogCaptureFixture,
    reply: Reply,
    error: type[Exception],
    match: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.route("GET", SEARCH, reply)
    with pytest.raises(error, match=match) as caught:
        await make(server, http).fetch(SourceState())
    assert KEY not in str(caught.value)
    assert KEY not in caplog.text


async def test_missing_key_is_a_clear_error(
    server: FixtureServer, http: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERTS_SAM_API_KEY")
    with pytest.raises(FetchError, match="ALERTS_SAM_API_KEY is not set"):
        await make(server, http).fetch(SourceState())
    assert server.requests == []


def test_registered_with_its_options() -> None:
    assert registry()["sam"] is SamSource
    with pytest.raises(ValueError, match="notice_types"):
        SamOptions(notice_types=["x"])
    with pytest.raises(ValueError, match="keyword"):
        SamOptions(keywords=[""])
