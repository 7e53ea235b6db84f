"""The feed adapter, end to end: fixture files served over loopback through HttpClient."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from alerts.errors import (
    HttpStatusError,
    ParseError,
    ResponseTooLarge,
    RetryAfterError,
)
from alerts.model import Item, Validators
from alerts.sources import SourceState, registry
from alerts.sources.feed import FeedSource, html_to_text, parse_date, shorten
from alerts.sources.http import HttpClient

from .support import loopback_http

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
RSS = "application/rss+xml"
ATOM = "application/atom+xml"


@dataclass
class Route:
    body: bytes
    content_type: str = RSS
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None


class FeedServer:
    """A loopback HTTP server with ETag/Last-Modified support and a request log."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.seen_headers: list[Mapping[str, str]] = []
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, fixture: str, content_type: str = RSS, **kw: Any) -> str:
        self.routes[path] = Route((FIXTURES / fixture).read_bytes(), content_type, **kw)
        return self.url(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.seen_headers.append(dict(request.headers))
        route = self.routes.get(request.path)
        if route is None:
            return web.Response(status=404)
        validators = {"ETag": route.etag or "", "Last-Modified": route.last_modified or ""}
        validators = {k: v for k, v in validators.items() if v}
        if route.etag and request.headers.get("If-None-Match") == route.etag:
            return web.Response(status=304, headers=validators)
        if (
            not route.etag
            and route.last_modified
            and request.headers.get("If-Modified-Since") == route.last_modified
        ):
            return web.Response(status=304, headers=validators)
        headers = {"Content-Type": route.content_type, **validators, **route.headers}
        return web.Response(status=route.status, body=route.body, headers=headers)

    async def endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": RSS})
        await resp.prepare(request)
        await resp.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
        chunk = b"<item><title>again</title></item>" * 1000
        for _ in range(10_000):
            await resp.write(chunk)
        return resp


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    feeds = FeedServer()
    app = web.Application()
    app.router.add_get("/endless.xml", feeds.endless)
    app.router.add_route("GET", "/{tail:.*}", feeds.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    feeds.base = f"http://{host}:{port}"
    yield feeds
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = loopback_http(timeout_s=10, max_bytes=200_000, contact="ops@example.org")
    yield client
    await client.close()


def make_source(url: str, http: HttpClient, **options: Any) -> FeedSource:
    return FeedSource(source_id="test", url=url, options=FeedSource.Options(**options), http=http)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


def project(item: Item, expected: Mapping[str, Any]) -> dict[str, Any]:
    return {name: getattr(item, name) for name in expected}


BSKY = "did:plc:z72i7hdynmk6r22z27h6tvur"

PARSES = [
    pytest.param(
        "bluesky.xml",
        RSS,
        [
            {
                "key": f"at://{BSKY}/app.bsky.feed.post/3lbq5xkbbnk2c",
                "title": "500 more tech workers signed the letter today & the count keeps climbing.",
                "url": f"https://bsky.app/profile/{BSKY}/post/3lbq5xkbbnk2c",
                "summary": "500 more tech workers signed the letter today & the count keeps"
                " climbing.\n\nRead it here: iceout.tech",
                "published": utc(2024, 11, 21, 19, 13),
            },
            {
                "title": 'Quoting @someone: they said "no comment"',
                "published": utc(2024, 11, 5, 7, 3),
            },
        ],
        id="bluesky-profile-no-title-at-uri-guid-short-pubdate",
    ),
    pytest.param(
        "mastodon.xml",
        RSS,
        [
            {
                "key": "https://mastodon.social/@twc/113520000000000001",
                "title": "Workers at three more companies have signed on. #ICEout",
                "summary": "Workers at three more companies have signed on. #ICEout\n\n"
                "Full list: https://iceout.tech",
                "published": utc(2024, 11, 21, 10, 0, 43),
                "fields": {"categories": ["iceout"]},
            },
            {"title": "Rally on Friday.", "summary": "Rally on Friday.\nBring signs."},
        ],
        id="mastodon-account-no-guid-no-title",
    ),
    pytest.param(
        "rss2.xml",
        RSS,
        [
            {
                "key": "https://news.example.org/?p=4711",
                "title": "Palantir\u2019s contract gets a $30M modification",
                "url": "https://news.example.org/2024/11/22/palantir-modification/",
                "summary": "The agency amended a 2022 award \u2014 here\u2019s what changed.",
                "author": "Jane Reporter",
                "published": utc(2024, 11, 22, 8),
                "fields": {"categories": ["Government", "Contracts"]},
            },
            {"author": "Press Office", "published": utc(2024, 11, 21, 22, 45, 10)},
        ],
        id="rss2-wordpress-html-title-dc-creator",
    ),
    pytest.param(
        "atom_xmlbase.xml",
        ATOM,
        [
            {
                "key": "tag:blog.example.com,2024:reading-list",
                "title": "Tech & power: a reading list",
                "url": "https://blog.example.com/archive/2024/reading-list.html",
                "summary": "Ten books & essays.",
                "author": "Sam Writer",
                "published": utc(2024, 11, 20, 8, 30),
            },
            {
                "url": "https://blog.example.com/about/changes",
                "summary": "Site news.",
                "published": datetime(2024, 11, 18, 8, 0, 0, 123456, tzinfo=UTC),
            },
        ],
        id="atom-xml-base-html-title",
    ),
    pytest.param(
        "rss1.rdf",
        "application/rdf+xml",
        [
            {
                "key": "https://rdf.example.net/a",
                "author": "Robin",
                "published": utc(2024, 11, 17, 13),
                "fields": {"categories": ["archive"]},
            }
        ],
        id="rss1-rdf",
    ),
    pytest.param(
        "rss091.xml",
        "text/xml",
        [{"key": "https://old.example.com/news/1", "published": None}],
        id="rss091-netscape-doctype-not-fetched",
    ),
    pytest.param(
        "feed.json",
        "application/feed+json",
        [
            {
                "key": "https://json.example.org/2024/11/23/hello",
                "title": "Hello & welcome",
                "url": "{base}/2024/11/23/hello",
                "summary": "First post.",
                "author": "Jo",
                "published": utc(2024, 11, 23, 18),
                "fields": {"categories": ["intro", "meta"]},
            },
            {"key": "2", "title": "A post without a title.", "url": None},
        ],
        id="json-feed-1.1",
    ),
    pytest.param(
        "relative_links.xml",
        RSS,
        [
            {"key": "{canonical}/feeds/posts/one.html", "url": "{base}/feeds/posts/one.html"},
            {"url": "{base}/posts/two.html?a=1&b=2"},
            {"key": "unsafe-1", "url": None},
        ],
        id="relative-links-against-feed-url",
    ),
    pytest.param(
        "declared_latin1_utf8_bytes.xml",
        "application/rss+xml; charset=ISO-8859-1",
        [{"title": "Café société \u2013 über naïve", "summary": "Ça marche."}],
        id="declared-latin1-but-utf8-bytes",
    ),
    pytest.param(
        "latin1_bytes.xml",
        "text/xml; charset=utf-8",
        [{"title": "Café société - über naïve"}],
        id="content-type-utf8-disagrees-with-latin1-prolog",
    ),
    pytest.param(
        "cp1252_declared_utf8.xml",
        RSS,
        [{"title": "\u201cQuoted\u201d café \u2013 naïve"}],
        id="declared-utf8-but-cp1252-bytes",
    ),
    pytest.param(
        "utf16_bom.xml", RSS, [{"title": "Café société \u2013 über naïve"}], id="utf16-with-bom"
    ),
    pytest.param(
        "html_content.xml",
        RSS,
        [{"title": "Breaking: AT&T & others \u2013 update"}],
        id="html-in-title",
    ),
    pytest.param(
        "odd_dates.xml",
        RSS,
        [
            {"title": "rfc850", "published": utc(2024, 11, 21, 15)},
            {"title": "cet", "published": utc(2024, 12, 1, 9)},
            {"title": "iso-naive", "published": utc(2024, 11, 21, 10)},
            {"title": "date-only", "published": utc(2024, 11, 21)},
            {"title": "us-words", "published": utc(2024, 11, 21, 15, 30)},
            {"title": "garbage", "published": None},
            {"title": "impossible", "published": None},
            {"key": "20241121", "published": None},
        ],
        id="odd-dates-utc-or-none",
    ),
]


@pytest.mark.parametrize(("fixture", "content_type", "expected"), PARSES)
async def test_parses_real_world_feeds(
    server: FeedServer,
    http: HttpClient,
    fixture: str,
    content_type: str,
    expected: list[dict[str, Any]],
) -> None:
    url = server.serve(f"/feeds/sub/{fixture}", fixture, content_type)
    observation = await make_source(url, http).fetch(SourceState())
    assert not observation.not_modified
    assert len(observation.items) >= len(expected)
    for item, want in zip(observation.items, expected, strict=False):
        canonical = server.base.replace("http://", "https://")
        want = {
            k: v.format(base=server.base, canonical=canonical) if isinstance(v, str) else v
            for k, v in want.items()
        }
        assert project(item, want) == want
    for item in observation.items:
        assert item.published is None or item.published.tzinfo == UTC
        assert item.url is None or item.url.startswith(("http://", "https://"))
        assert "<" not in item.title
        assert "&amp;" not in item.title


MALFORMED = [
    pytest.param("truncated.xml", RSS, r"truncated XML .*</rss>", id="truncated-xml"),
    pytest.param("html_page.html", "text/html", r"sent an HTML page", id="html-page"),
    pytest.param("empty", RSS, r"empty response", id="empty-body"),
    pytest.param("billion_laughs.xml", RSS, r"declares XML entities", id="billion-laughs"),
    pytest.param("external_entity.xml", RSS, r"declares XML entities", id="external-entity"),
    pytest.param("binary.bin", "image/png", r"binary data", id="binary-junk"),
    pytest.param("not_a_feed.xml", "text/xml", r"root element <sitemapindex>", id="other-xml"),
    pytest.param(
        "not_a_jsonfeed.json", "application/json", r"not a JSON Feed", id="json-not-a-feed"
    ),
]


@pytest.mark.parametrize(("fixture", "content_type", "message"), MALFORMED)
async def test_malformed_input_is_a_parse_error(
    server: FeedServer, http: HttpClient, fixture: str, content_type: str, message: str
) -> None:
    body = b"" if fixture == "empty" else (FIXTURES / fixture).read_bytes()
    body = body.replace(b"{xxe}", server.url("/secret").encode())
    server.routes["/bad"] = Route(body, content_type)
    server.routes["/secret"] = Route(b"SECRET", "text/plain")
    with pytest.raises(ParseError, match=message):
        await make_source(server.url("/bad"), http).fetch(SourceState())
    assert server.hits["/secret"] == 0


async def test_etag_round_trip_then_change(server: FeedServer, http: HttpClient) -> None:
    url = server.serve(
        "/f.xml", "rss2.xml", etag='"v1"', last_modified="Fri, 22 Nov 2024 08:15:02 GMT"
    )
    source = make_source(url, http)
    first = await source.fetch(SourceState())
    assert first.validators == Validators('"v1"', "Fri, 22 Nov 2024 08:15:02 GMT")
    assert len(first.items) == 2

    second = await source.fetch(SourceState(validators=first.validators))
    assert second.not_modified
    assert second.items == ()
    assert second.validators == first.validators
    assert server.seen_headers[-1]["If-None-Match"] == '"v1"'

    server.serve("/f.xml", "bluesky.xml", etag='"v2"')
    third = await source.fetch(SourceState(validators=second.validators))
    assert not third.not_modified
    assert third.validators.etag == '"v2"'
    assert third.items[0].key.startswith("at://")


async def test_last_modified_only_gives_304(server: FeedServer, http: HttpClient) -> None:
    stamp = "Thu, 21 Nov 2024 10:02:11 GMT"
    url = server.serve("/m.xml", "mastodon.xml", last_modified=stamp)
    source = make_source(url, http)
    first = await source.fetch(SourceState())
    assert first.validators == Validators(None, stamp)
    again = await source.fetch(SourceState(validators=first.validators))
    assert again.not_modified
    assert server.seen_headers[-1]["If-Modified-Since"] == stamp


async def test_a_body_already_read_is_not_parsed_again(
    server: FeedServer, http: HttpClient
) -> None:
    """A server that sends no validators answers every poll in full: the body the
    adapter last read (its hash is in the cursor) is an unchanged poll, with the
    validators of the response; another body, or other options, are read again."""
    url = server.serve("/plain.xml", "rss2.xml")
    source = make_source(url, http)
    first = await source.fetch(SourceState())
    assert len(first.items) == 2
    assert first.validators == Validators()
    assert len(first.cursor["body"]) == 32  # 128 bits, hex

    server.serve("/plain.xml", "rss2.xml", etag='"late"')  # same bytes, a validator now
    again = await source.fetch(SourceState(cursor=first.cursor))
    assert "If-None-Match" not in server.seen_headers[-1]
    assert again.not_modified
    assert again.items == ()
    assert again.validators == Validators('"late"', None)

    other = await make_source(url, http, summary_chars=20).fetch(SourceState(cursor=first.cursor))
    assert not other.not_modified  # read differently: parsed again
    assert other.cursor["body"] != first.cursor["body"]
    assert all(len(it.summary) <= 20 for it in other.items)

    server.serve("/plain.xml", "bluesky.xml")
    changed = await source.fetch(SourceState(cursor=first.cursor))
    assert not changed.not_modified
    assert changed.items[0].key.startswith("at://")
    assert changed.cursor["body"] != first.cursor["body"]


async def test_request_is_polite(server: FeedServer, http: HttpClient) -> None:
    await make_source(server.serve("/p.xml", "rss2.xml"), http).fetch(SourceState())
    sent = server.seen_headers[-1]
    assert "application/rss+xml" in sent["Accept"]
    assert "ops@example.org" in sent["User-Agent"]


async def test_redirect_is_followed_and_links_resolve_against_final_url(
    server: FeedServer, http: HttpClient
) -> None:
    server.serve("/moved/deep/feed.xml", "relative_links.xml")
    server.routes["/old.xml"] = Route(b"", status=301, headers={"Location": "/moved/deep/feed.xml"})
    observation = await make_source(server.url("/old.xml"), http).fetch(SourceState())
    assert observation.items[0].url == server.url("/moved/posts/one.html")
    assert server.hits["/old.xml"] == 1
    assert server.hits["/moved/deep/feed.xml"] == 1


async def test_429_with_retry_after(server: FeedServer, http: HttpClient) -> None:
    server.routes["/busy.xml"] = Route(b"slow down", status=429, headers={"Retry-After": "120"})
    with pytest.raises(RetryAfterError) as caught:
        await make_source(server.url("/busy.xml"), http).fetch(SourceState())
    assert caught.value.retry_after_s == 120
    assert caught.value.status == 429


async def test_server_error_is_an_http_status_error(server: FeedServer, http: HttpClient) -> None:
    server.routes["/broken.xml"] = Route(b"oops", status=500)
    with pytest.raises(HttpStatusError, match="HTTP 500"):
        await make_source(server.url("/broken.xml"), http).fetch(SourceState())


async def test_endless_body_is_cut_at_the_cap(server: FeedServer, http: HttpClient) -> None:
    with pytest.raises(ResponseTooLarge, match="200000 bytes"):
        await asyncio.wait_for(
            make_source(server.url("/endless.xml"), http).fetch(SourceState()), timeout=10
        )


async def test_oversized_declared_body_is_refused(server: FeedServer, http: HttpClient) -> None:
    server.routes["/big.xml"] = Route(b"<rss>" + b" " * 300_000 + b"</rss>")
    with pytest.raises(ResponseTooLarge):
        await make_source(server.url("/big.xml"), http).fetch(SourceState())


async def test_options_limit_items_and_summary(server: FeedServer, http: HttpClient) -> None:
    url = server.serve("/h.xml", "html_content.xml")
    [item] = (await make_source(url, http, summary_chars=60).fetch(SourceState())).items
    assert item.summary.startswith("Café & bar — <tag>\n\nword0 word1")
    assert len(item.summary) <= 60
    assert item.summary.endswith("…")
    assert "alert" not in item.summary
    assert "color" not in item.summary

    many = await make_source(server.serve("/d.xml", "odd_dates.xml"), http, max_items=3).fetch(
        SourceState()
    )
    assert [i.key for i in many.items] == ["d1", "d2", "d3"]


async def test_items_without_id_or_link_get_a_stable_hash_key(
    server: FeedServer, http: HttpClient
) -> None:
    source = make_source(server.serve("/n.xml", "no_id_no_link.xml"), http)
    first = await source.fetch(SourceState())
    second = await source.fetch(SourceState())
    keys = [i.key for i in first.items]
    assert keys == [i.key for i in second.items]
    assert len(set(keys)) == 2
    assert all(k.startswith("sha256:") for k in keys)


def test_options_reject_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        FeedSource.Options(max_itemz=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        FeedSource.Options(max_items=0)


def test_registered_with_documentation() -> None:
    factory = registry()["feed"]
    assert factory.__doc__ == FeedSource.__doc__
    assert factory.kind == "feed"
    assert factory.fingerprint_fields == ("title", "summary", "url")
    assert "Options:" in (factory.__doc__ or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Fri, 22 Nov 2024 08:00:00 +0000", utc(2024, 11, 22, 8), id="rfc822"),
        pytest.param("21 Nov 2024 19:13 +0000", utc(2024, 11, 21, 19, 13), id="bluesky"),
        pytest.param(
            "2024-11-21T10:00:00.5Z",
            datetime(2024, 11, 21, 10, 0, 0, 500000, tzinfo=UTC),
            id="iso-z",
        ),
        pytest.param("Tue, 5 Nov 2024 7:03:00 PST", utc(2024, 11, 5, 15, 3), id="us-zone"),
        pytest.param("1", None, id="number"),
        pytest.param("", None, id="empty"),
        pytest.param("2999-01-01T00:00:00Z", None, id="far-future"),
    ],
)
def test_parse_date(text: str, expected: datetime | None) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    ("html", "keep_lines", "expected"),
    [
        pytest.param("<b>A</b>: <i>b</i> &amp; c", False, "A: b & c", id="inline"),
        pytest.param(
            "<p>one\ntwo</p><p>three<br>four</p>", True, "one two\n\nthree\nfour", id="lines"
        ),
        pytest.param("AT&amp;T &#8211; x", False, "AT&T \u2013 x", id="entities-only"),
        pytest.param("<script>x()</script>ok", False, "ok", id="script-dropped"),
    ],
)
def test_html_to_text(html: str, keep_lines: bool, expected: str) -> None:
    assert html_to_text(html, keep_lines=keep_lines) == expected


def test_shorten_cuts_at_a_word() -> None:
    assert shorten("alpha beta gamma delta", 15) == "alpha beta…"
    assert shorten("short", 15) == "short"


def test_documented_in_adapters_md() -> None:
    """docs/adapters.md carries the feed adapter's docstring and options (regenerate it
    with ``python -m tests.campaign.test_docs``)."""
    import inspect

    text = (Path(__file__).resolve().parents[1] / "docs" / "adapters.md").read_text("utf-8")
    assert inspect.cleandoc(FeedSource.__doc__ or "") in text
    for name, option in FeedSource.Options.model_fields.items():
        assert f"| `{name}` | `{option.default!r}` | {option.description} |" in text
