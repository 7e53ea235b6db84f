"""federal_register, webpage and bluesky adapters against wire-format fixtures, over loopback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.errors import HttpStatusError, ParseError, RetryAfterError
from alerts.fixture_server import FixtureServer, Reply
from alerts.model import EventKind
from alerts.sources import SourceState
from alerts.sources.bluesky import BlueskyOptions, BlueskySource
from alerts.sources.federal_register import FederalRegisterOptions, FederalRegisterSource
from alerts.sources.http import HttpClient
from alerts.sources.webpage import WebpageOptions, WebpageSource, unified_diff

from .helpers import Polls, data, text

T0 = datetime(2026, 2, 3, 12, tzinfo=UTC)
FR = "/api/v1/documents.json"
FEED = "/xrpc/app.bsky.feed.getAuthorFeed"
NOISE = [r"Updated \w+ \d+, \d{4}", r"[\d,]+ views"]


def federal_register(
    server: FixtureServer, http: HttpClient, **options: Any
) -> FederalRegisterSource:
    return FederalRegisterSource(
        source_id="ice-fr", url=server.url(FR), options=FederalRegisterOptions(**options), http=http
    )


def webpage(
    server: FixtureServer, http: HttpClient, path: str = "/newsroom", **options: Any
) -> WebpageSource:
    opts = {"selector": "#statement", "noise": NOISE, **options}
    return WebpageSource(
        source_id="examplecorp", url=server.url(path), options=WebpageOptions(**opts), http=http
    )


def bluesky(server: FixtureServer, http: HttpClient, **options: Any) -> BlueskySource:
    opts = {"actor": "techworkers.example.org", **options}
    return BlueskySource(
        source_id="twc", url=server.base_url, options=BlueskyOptions(**opts), http=http
    )


# --- federal_register ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "keys"),
    [
        pytest.param("documents.json", ["2026-01234", "2026-00987"], id="documents"),
        pytest.param("empty.json", [], id="empty-no-results-key"),
    ],
)
async def test_federal_register_documents(
    server: FixtureServer, http: HttpClient, fixture: str, keys: list[str]
) -> None:
    server.route("GET", FR, Reply.json(data(f"federal_register/{fixture}")))
    obs = await federal_register(server, http).fetch(SourceState())
    assert [i.key for i in obs.items] == keys
    query = server.requests[0].query
    assert ("conditions[agencies][]", "u-s-immigration-and-customs-enforcement") in query
    assert ("order", "newest") in query
    if keys:
        first = obs.items[0]
        assert first.fields["type"] == "Proposed Rule"
        assert first.fields["publication_date"] == "2026-01-27"
        assert first.fields["agencies"] == [
            "Homeland Security Department",
            "U.S. Immigration and Customs Enforcement",
        ]
        assert str(first.url).startswith("https://www.federalregister.gov/")


async def test_federal_register_pages_until_the_last(
    server: FixtureServer, http: HttpClient
) -> None:
    server.route(
        "GET", FR, Reply.json(data("federal_register/page1.json", NEXT_URL=server.url("/page2")))
    )
    server.route("GET", "/page2", Reply.json(data("federal_register/page2.json")))
    obs = await federal_register(
        server, http, max_pages=5, document_types=["NOTICE", "RULE"]
    ).fetch(SourceState())
    assert [i.key for i in obs.items] == ["2026-02000", "2026-01999", "2026-01500"]
    assert obs.items[2].fields["agencies"] == ["U.S. IMMIGRATION AND CUSTOMS ENFORCEMENT"]
    assert ("conditions[type][]", "RULE") in server.requests[0].query
    assert len(server.requests) == 2  # page 2 has no next_page_url


async def test_federal_register_redirect_and_304(server: FixtureServer, http: HttpClient) -> None:
    server.route("GET", "/old", Reply.redirect(FR + "?moved=1"))
    server.route("GET", FR, Reply.json(data("federal_register/documents.json"), etag='"fr1"'))
    source = FederalRegisterSource(
        source_id="x", url=server.url("/old"), options=FederalRegisterOptions(), http=http
    )
    first = await source.fetch(SourceState())
    assert len(first.items) == 2
    again = await source.fetch(SourceState(validators=first.validators))
    assert again.not_modified


async def test_federal_register_new_and_corrected_documents(
    server: FixtureServer, http: HttpClient
) -> None:
    docs = data("federal_register/documents.json")
    corrected = {**docs, "results": [dict(r) for r in docs["results"]]}
    corrected["results"][1]["title"] = "Privacy Act of 1974; System of Records (correction)"
    fewer = {**docs, "count": 1, "results": docs["results"][1:]}
    server.route("GET", FR, Reply.json(fewer), Reply.json(docs), Reply.json(corrected))
    polls = Polls(federal_register(server, http))
    assert await polls.poll(T0) == []
    (new,) = await polls.poll(T0 + timedelta(hours=3))
    assert (new.kind, new.key) == (EventKind.NEW, "2026-01234")
    assert new.fields["type"] == "Proposed Rule"
    (fixed,) = await polls.poll(T0 + timedelta(hours=6))
    assert (fixed.kind, fixed.key) == (EventKind.UPDATED, "2026-00987")
    assert fixed.changes["title"][1].endswith("(correction)")


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        pytest.param(
            Reply.json(data("federal_register/changed.json")),
            ParseError,
            "without document_number",
            id="fields-renamed",
        ),
        pytest.param(Reply.json({"documents": []}), ParseError, "count", id="no-count"),
        pytest.param(
            Reply.html("<html>maintenance</html>"), ParseError, "invalid JSON", id="html-instead"
        ),
        pytest.param(Reply.retry_after(90), RetryAfterError, "retry after 90", id="429"),
        pytest.param(Reply.retry_after(15, status=503), RetryAfterError, "503", id="503"),
    ],
)
async def test_federal_register_errors(
    server: FixtureServer, http: HttpClient, reply: Reply, error: type[Exception], match: str
) -> None:
    server.route("GET", FR, reply)
    with pytest.raises(error, match=match):
        await federal_register(server, http).fetch(SourceState())


# --- webpage ------------------------------------------------------------------


async def test_webpage_region_ignores_noise(server: FixtureServer, http: HttpClient) -> None:
    server.route(
        "GET",
        "/newsroom",
        Reply.html(text("webpage/statement_v1.html")),
        Reply.html(text("webpage/statement_noise.html")),
    )
    source = webpage(server, http)
    first, second = (
        (await source.fetch(SourceState())).items[0],
        (await source.fetch(SourceState())).items[0],
    )
    assert first.title == "Newsroom | ExampleCorp"
    assert first.fields["text"] == second.fields["text"]
    assert not {"views", "Updated"} & set(first.fields["text"].split())
    assert first.fields["text"].splitlines()[0] == "Our position on government contracts"


async def test_webpage_change_carries_a_diff(server: FixtureServer, http: HttpClient) -> None:
    pages = ["statement_v1.html", "statement_noise.html", "statement_v2.html"]
    server.route("GET", "/newsroom", *(Reply.html(text(f"webpage/{p}")) for p in pages))
    polls = Polls(webpage(server, http, title="ExampleCorp statement"))
    assert await polls.poll(T0) == []
    assert await polls.poll(T0 + timedelta(hours=1)) == []  # only dates and counters moved
    (event,) = await polls.poll(T0 + timedelta(hours=2))
    assert event.kind is EventKind.UPDATED
    assert event.title == "ExampleCorp statement: page changed"
    assert event.fields["added"] == [
        "We will not renew our contract with U.S. Immigration and Customs Enforcement."
    ]
    assert event.summary == event.fields["diff"]
    assert "- We review every public-sector engagement" in event.fields["diff"]
    assert "+ We will not renew our contract" in event.fields["diff"]


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        pytest.param(
            Reply.html(text("webpage/redesigned.html")),
            ParseError,
            "matches nothing",
            id="selector-gone",
        ),
        pytest.param(
            Reply.html('<html><body><article id="statement">  </article></body></html>'),
            ParseError,
            "only empty elements",
            id="region-empty",
        ),
        pytest.param(Reply.retry_after(60), RetryAfterError, "retry after 60", id="429"),
        pytest.param(Reply.html("gone", status=410), HttpStatusError, "410", id="410"),
    ],
)
async def test_webpage_errors(
    server: FixtureServer, http: HttpClient, reply: Reply, error: type[Exception], match: str
) -> None:
    server.route("GET", "/newsroom", reply)
    with pytest.raises(error, match=match):
        await webpage(server, http).fetch(SourceState())


async def test_webpage_redirect(server: FixtureServer, http: HttpClient) -> None:
    server.route("GET", "/old-newsroom", Reply.redirect("/newsroom", status=301))
    server.route("GET", "/newsroom", Reply.html(text("webpage/statement_v1.html")))
    obs = await webpage(server, http, "/old-newsroom").fetch(SourceState())
    assert "human rights policy" in obs.items[0].fields["text"]


def test_unified_diff_is_cut() -> None:
    old = "\n".join(f"line {n}" for n in range(50))
    new = "\n".join(f"line {n}!" for n in range(50))
    diff = unified_diff(old, new, 5).splitlines()
    assert len(diff) == 6
    assert diff[-1].startswith("… ")


def test_bad_noise_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"regular expression '\(unclosed': missing \)"):
        WebpageOptions(selector="main", noise=["(unclosed"])


async def test_noise_runs_in_linear_time(server: FixtureServer, http: HttpClient) -> None:
    """``(a+)+$`` backtracks for ages in Python ``re``; RE2 strips it at once."""
    page = "<html><body><main>" + "a" * 50_000 + "b</main></body></html>"
    server.route("GET", "/newsroom", Reply.html(page))
    source = webpage(server, http, selector="main", noise=["(a+)+$"])
    obs = await asyncio.wait_for(source.fetch(SourceState()), timeout=5)
    assert obs.items[0].fields["text"].endswith("ab")


# --- bluesky ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "options", "titles", "filter_"),
    [
        pytest.param(
            "author_feed.json",
            {},
            [
                "1,500 tech workers have now signed the ICE Out letter.",
                "Palantir's ICE contract just grew again. Thread 🧵",
            ],
            "posts_no_replies",
            id="posts-skip-reposts",
        ),
        pytest.param(
            "author_feed.json", {"replies": True}, None, "posts_with_replies", id="with-replies"
        ),
        pytest.param("empty.json", {}, [], "posts_no_replies", id="empty"),
    ],
)
async def test_bluesky_feed(
    server: FixtureServer,
    http: HttpClient,
    fixture: str,
    options: dict[str, Any],
    titles: list[str] | None,
    filter_: str,
) -> None:
    server.route("GET", FEED, Reply.json(data(f"bluesky/{fixture}")))
    obs = await bluesky(server, http, **options).fetch(SourceState())
    if titles is not None:
        assert [i.title for i in obs.items] == titles
    assert all("reasonRepost" not in i.key and "someone" not in (i.author or "") for i in obs.items)
    assert ("filter", filter_) in server.requests[0].query
    assert ("actor", "techworkers.example.org") in server.requests[0].query
    if obs.items:
        post = obs.items[0]
        assert post.key == "at://did:plc:z72i7hdynmk6r22z27h6tvur/app.bsky.feed.post/3lgxq4vbzyc2a"
        assert post.url == "https://bsky.app/profile/techworkers.example.org/post/3lgxq4vbzyc2a"
        assert post.author == "Tech Workers Coalition"
        assert post.published == datetime(2026, 2, 3, 15, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        pytest.param(
            Reply.json(data("bluesky/changed.json")),
            ParseError,
            "no 'feed' list",
            id="schema-changed",
        ),
        pytest.param(
            Reply.json(data("bluesky/not_found.json"), status=400),
            HttpStatusError,
            "400",
            id="unknown-actor",
        ),
        pytest.param(Reply.retry_after(45), RetryAfterError, "retry after 45", id="429"),
    ],
)
async def test_bluesky_errors(
    server: FixtureServer, http: HttpClient, reply: Reply, error: type[Exception], match: str
) -> None:
    server.route("GET", FEED, reply)
    with pytest.raises(error, match=match):
        await bluesky(server, http).fetch(SourceState())


async def test_bluesky_new_post_between_polls(server: FixtureServer, http: HttpClient) -> None:
    feed = data("bluesky/author_feed.json")
    older = {**feed, "feed": feed["feed"][1:]}
    server.route(
        "GET",
        "/moved" + FEED,
        Reply.redirect(FEED + "?actor=techworkers.example.org&limit=30&filter=posts_no_replies"),
    )
    server.route("GET", FEED, Reply.json(older), Reply.json(feed))
    source = BlueskySource(
        source_id="twc",
        url=server.url("/moved"),
        options=BlueskyOptions(actor="techworkers.example.org"),
        http=http,
    )
    polls = Polls(source)
    assert await polls.poll(T0) == []
    (event,) = await polls.poll(T0 + timedelta(minutes=5))
    assert event.kind is EventKind.NEW
    assert event.title.startswith("1,500 tech workers")
