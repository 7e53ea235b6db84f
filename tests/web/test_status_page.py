"""The status page over HTTP against a real runtime (feed server, SQLite, dispatcher):
what it shows, who may read it, what it never shows. The browser's view of it is
``test_status_browser.py``."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from alerts.config import load_config
from alerts.model import DeliveryState, Destination, Event, EventKind, utcnow
from alerts.records import Hold, OutboxStats, PollCommit, RoutedEvent
from alerts.status import SourceState, access_for, render_html, view
from alerts.status.page import relative
from alerts.status.redact import redact_text, redact_url
from alerts.status.view import AlertView, RoomView, Snapshot, SourceView, safe_link, snapshot
from alerts.store import open_store

from .scenario import (
    HOSTILE_NAME,
    HOSTILE_REASON,
    LONG_TITLE,
    URL_PASSWORD,
    URL_TOKEN,
    Scenario,
    endpoint,
    scenario,
)

TOKEN = "a-long-random-status-token-0123"


@pytest.fixture
async def played(tmp_path: Path) -> AsyncIterator[Scenario]:
    async with scenario(tmp_path) as sc:
        yield sc


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, await resp.text(), resp.headers


class _Rows(HTMLParser):
    """The text of each table row, keyed by its row header (what a reader sees)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.tags: list[str] = []
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "tr":
            self._row = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr" and self._row is not None:
            self.rows.append(" ".join(" ".join(self._row).split()))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            self._row.append(data)


def _rows(html: str) -> _Rows:
    parser = _Rows()
    parser.feed(html)
    return parser


def _row(rows: list[str], start: str) -> str:
    found = [r for r in rows if r.startswith(start)]
    assert len(found) == 1, (start, rows)
    return found[0]


# --- what it shows ----------------------------------------------------------------------


async def test_every_section_shows_what_the_store_holds(played: Scenario) -> None:
    async with endpoint(played.runtime) as base:
        status, html, headers = await _get(f"{base}/status")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    rows = _rows(html).rows
    broken = _row(rows, "broken")
    assert "failing" in broken and "HTTP 500 Internal Server Error" in broken
    assert "never" in broken  # no success yet
    assert "ok" in _row(rows, f"{HOSTILE_NAME} (wire)")
    assert "not polled yet" in _row(rows, "fresh")
    assert "disabled" in _row(rows, "paused")
    council = _row(rows, "new Council votes on the contract")
    assert "console sent" in council and "gone pending" in council
    award = _row(rows, "new Award modified")
    assert "console dead" in award and "gone pending" in award
    dead = _row(rows, f"new: {LONG_TITLE} #1")
    assert "console" in dead and "message too long" in dead
    assert _row(rows, "gone console room-gone").endswith(HOSTILE_REASON)
    assert "2 pending" in html and "1 dead" in html


async def test_failing_sources_come_first_and_can_be_listed_alone(played: Scenario) -> None:
    async with endpoint(played.runtime) as base:
        _, html, _ = await _get(f"{base}/status")
        status, failing, _ = await _get(f"{base}/status?state=failing")
        bad, reason, _ = await _get(f"{base}/status?state=on-fire")
    order = [r.split()[0] for r in _rows(html).rows[1:6]]
    assert order == ["broken", "Members'", "fresh", "<script>alert(1)</script>", "paused"]
    assert status == 200
    shown = [r.split()[0] for r in _rows(failing).rows if "failed poll" in r]
    assert shown == ["broken", "Members'"]
    assert "paused" not in failing.split("Recent alerts")[0]
    assert bad == 400 and "unknown state 'on-fire'" in reason


async def test_a_long_list_is_cut_and_says_so(
    played: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(view, "LISTED_SOURCES", 2)
    async with endpoint(played.runtime) as base:
        _, html, _ = await _get(f"{base}/status")
    assert "worst state first (the first 2 of 5)" in html
    assert [r.split()[0] for r in _rows(html).rows[1:3]] == ["broken", "Members'"]
    assert "all 5" in html and '<th scope="row" role="rowheader">fresh' not in html


async def test_json_has_the_same_facts(played: Scenario) -> None:
    async with (
        endpoint(played.runtime) as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}/status.json") as resp,
    ):
        assert resp.status == 200
        data = await resp.json()
    states = {s["id"]: s["state"] for s in data["sources"]}
    assert states == {
        "broken": "failing",
        "private": "failing",
        "fresh": "not polled yet",
        "wire": "ok",
        "paused": "disabled",
    }
    assert data["source_counts"]["failing"] == 2
    assert data["outbox"]["pending"] == 2 and data["outbox"]["dead"] == 1
    assert [p["id"] for p in data["parked"]] == ["gone"]
    assert [a["title"] for a in data["alerts"]] == ["Council votes on the contract", LONG_TITLE]
    datetime.fromisoformat(data["generated_at"])


async def test_secrets_in_source_urls_never_appear(played: Scenario) -> None:
    async with endpoint(played.runtime) as base:
        _, html, _ = await _get(f"{base}/status")
        _, body, _ = await _get(f"{base}/status.json")
    for page in (html, body):
        assert URL_PASSWORD not in page and URL_TOKEN not in page
    private = _row(_rows(html).rows, "Members' feed (private)")
    assert "http://***@127.0.0.1:" in private and "/feeds/private.xml?***" in private


async def test_strangers_markup_is_escaped_and_no_script_is_served(played: Scenario) -> None:
    async with endpoint(played.runtime) as base:
        _, html, headers = await _get(f"{base}/status")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    tags = set(_rows(html).tags)
    assert "script" not in tags and "img" not in tags
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_a_store_that_does_not_answer_is_a_503(played: Scenario) -> None:
    async with endpoint(played.runtime) as base:
        await played.runtime.store.close()
        status, body, _ = await _get(f"{base}/status")
    assert status == 503 and "the store did not answer" in body


async def test_the_root_leads_to_the_page(played: Scenario) -> None:
    async with (
        endpoint(played.runtime) as base,
        aiohttp.ClientSession() as http,
        http.get(base, allow_redirects=False) as resp,
    ):
        assert resp.status == 302 and resp.headers["Location"] == "/status"


# --- who may read it ----------------------------------------------------------------------


async def test_a_public_bind_without_a_token_refuses_the_page_and_says_why(
    played: Scenario, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="alerts.status"):
        async with endpoint(played.runtime, bind_host="0.0.0.0") as base:
            page = await _get(f"{base}/status")
            data = await _get(f"{base}/status.json")
            health = await _get(f"{base}/healthz")
            metrics = await _get(f"{base}/metrics")
    for status, body, _ in (page, data):
        assert status == 403
        assert "not loopback" in body and "ALERTS_API_TOKEN" in body
        assert "broken" not in body
    assert health[0] == 200 and metrics[0] == 200  # probes stay open
    logged = [r.getMessage() for r in caplog.records]
    assert any("not serving /status" in m and "0.0.0.0" in m for m in logged), logged


@pytest.mark.parametrize("bind_host", ["0.0.0.0", "127.0.0.1"])
async def test_with_a_token_the_page_needs_it_on_any_bind(tmp_path: Path, bind_host: str) -> None:
    basic = base64.b64encode(f"ops:{TOKEN}".encode()).decode()
    async with (
        scenario(tmp_path, token=TOKEN) as sc,
        endpoint(sc.runtime, bind_host=bind_host) as base,
    ):
        anonymous = await _get(f"{base}/status")
        wrong = await _get(f"{base}/status", {"Authorization": "Bearer not-the-token"})
        bearer = await _get(f"{base}/status", {"Authorization": f"Bearer {TOKEN}"})
        as_basic = await _get(f"{base}/status.json", {"Authorization": f"Basic {basic}"})
        mangled = await _get(f"{base}/status", {"Authorization": "Basic %%%"})
        health = await _get(f"{base}/healthz")
    for status, body, headers in (anonymous, wrong, mangled):
        assert status == 401 and "broken" not in body
        assert headers.getall("WWW-Authenticate")[0].startswith("Bearer")
    assert bearer[0] == 200 and "broken" in bearer[1]
    assert as_basic[0] == 200 and '"broken"' in as_basic[1]
    assert health[0] == 200


@pytest.mark.parametrize(
    ("host", "token", "open_", "refused"),
    [
        pytest.param("127.0.0.1", None, True, False, id="loopback"),
        pytest.param("127.0.0.9", None, True, False, id="loopback-range"),
        pytest.param("::1", None, True, False, id="ipv6-loopback"),
        pytest.param("localhost", None, True, False, id="localhost"),
        pytest.param("0.0.0.0", None, False, True, id="every-interface"),
        pytest.param("::", None, False, True, id="every-ipv6-interface"),
        pytest.param("192.0.2.10", None, False, True, id="an-address"),
        pytest.param("status.example.org", None, False, True, id="a-name"),
        pytest.param("0.0.0.0", "", False, True, id="empty-token-is-no-token"),
        pytest.param("0.0.0.0", TOKEN, False, False, id="token"),
        pytest.param("127.0.0.1", TOKEN, False, False, id="token-on-loopback"),
    ],
)
def test_access_rule(host: str, token: str | None, open_: bool, refused: bool) -> None:
    access = access_for(host, SecretStr(token) if token is not None else None)
    assert (access.refused is not None) is refused
    assert (access.token is None and access.refused is None) is open_


def test_a_short_token_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="alerts.status"):
        access_for("0.0.0.0", SecretStr("short"))
    assert (
        "shorter than 16 characters" in caplog.text
        and "short" not in caplog.text.split("ALERTS_API_TOKEN")[0]
    )


# --- the pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("https://example.org/feed.xml", "https://example.org/feed.xml", id="plain"),
        pytest.param("https://u:p@example.org/f", "https://***@example.org/f", id="credentials"),
        pytest.param("https://tok@example.org/f", "https://***@example.org/f", id="user-only"),
        pytest.param("https://example.org/f?key=abc&x=1", "https://example.org/f?***", id="query"),
        pytest.param("https://example.org:8443/f#t=1", "https://example.org:8443/f", id="port"),
        pytest.param("http://u:p@[::1]:81/f?a=b", "http://***@[::1]:81/f?***", id="ipv6"),
        pytest.param("https://example.org:99999/f", "***", id="bad-port"),
        pytest.param("relative/path?token=x", "relative/path?***", id="not-absolute"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_urls_in_errors() -> None:
    text = "HTTP 500 from https://u:pw@example.org/f?token=abc, then http://x.test/?k=v."
    assert redact_text(text) == (
        "HTTP 500 from https://***@example.org/f?***, then http://x.test/?***."
    )


@pytest.mark.parametrize(
    ("url", "link"),
    [
        pytest.param("https://example.org/a?b=c", "https://example.org/a?b=c", id="https"),
        pytest.param("http://u:p@example.org/a", "http://example.org/a", id="credentials-dropped"),
        pytest.param("javascript:alert(1)", None, id="javascript"),
        pytest.param(" JavaScript:alert(1)", None, id="javascript-mixed-case"),
        pytest.param("data:text/html,<script>", None, id="data"),
        pytest.param("//example.org/a", None, id="scheme-relative"),
        pytest.param("https://example.org:bad/a", None, id="bad-port"),
        pytest.param(None, None, id="none"),
    ],
)
def test_only_http_links_are_links(url: str | None, link: str | None) -> None:
    assert safe_link(url) == link


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta_s", "text"),
    [(0, "just now"), (-90, "1m ago"), (-7200, "2h ago"), (3 * 86400, "in 3d"), (45, "in 45s")],
)
def test_relative_times(delta_s: float, text: str) -> None:
    assert relative(NOW + timedelta(seconds=delta_s), NOW) == text


def _snapshot(**changes: Any) -> Snapshot:
    fields: dict[str, Any] = {
        "generated_at": NOW,
        "instance": "",
        "sources": (),
        "source_counts": dict.fromkeys(SourceState, 0),
        "sources_total": 0,
        "alerts": (),
        "outbox": OutboxStats(0, 0, None, 0),
        "pending": (),
        "dead": (),
        "parked": (),
    }
    return Snapshot(**(fields | changes))


def test_a_held_source_is_shown_with_the_breakers_reason() -> None:
    held = SourceView(
        id="wire",
        label="Wire",
        kind="feed",
        url="",
        topics=(),
        state=SourceState.HELD,
        state_note="48 of 50 new items repeat known links",
    )
    counts = dict.fromkeys(SourceState, 0) | {SourceState.HELD: 1}
    html = render_html(_snapshot(sources=(held,), source_counts=counts, sources_total=1))
    assert "Wire" in _row(_rows(html).rows, "Wire")
    assert "held 48 of 50 new items repeat known links" in _row(_rows(html).rows, "Wire")
    assert "<title>alerts status (1 need attention)</title>" in html


def test_an_alert_whose_link_is_not_http_is_not_a_link() -> None:
    alert = AlertView(
        event_id=1,
        when=NOW,
        source="wire",
        kind="new",
        title="click me",
        link=safe_link("javascript:alert(1)"),
        rooms=(RoomView("console", DeliveryState.SENT),),
    )
    html = render_html(_snapshot(alerts=(alert,)))
    section = html.split('id="alerts"')[1].split('id="deliveries"')[0]
    assert "click me" in section and "javascript:" not in html and "<a " not in section


async def test_a_source_the_breaker_holds_is_shown_held(tmp_path: Path) -> None:
    """The breaker's hold lives in the source's stored detector state; the page reads it."""
    config = load_config(_held_config(tmp_path))
    store = await open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        now = utcnow()
        await store.sync_sources({"wire": now})
        assert await store.claim_source("wire", now, owner="t", lease_s=60) is not None
        hold = {"since": now.isoformat(), "reason": "48 of 50 new items repeat", "held": 48}
        commit = PollCommit(
            source_id="wire", now=now, next_due=now, detector={"flood": {"hold": hold}}
        )
        await store.commit_poll(commit, owner="t")
        snap = await snapshot(store=store, config=config, now=now)
    finally:
        await store.close()
    (view,) = snap.sources
    assert view.state is SourceState.HELD
    assert "48 alerts (48 of 50 new items repeat)" in view.state_note


def _held_config(root: Path) -> Path:
    config = root / "config"
    config.mkdir()
    (config / "alerts.toml").write_text(
        '[topics.news]\ndescription = "News"\n\n[[sources]]\nid = "wire"\nkind = "feed"\n'
        'url = "https://feeds.example/wire.xml"\ntopics = ["news"]\n'
    )
    return config


async def test_alerts_held_for_a_digest_are_listed_with_when_they_go_out(tmp_path: Path) -> None:
    """A room with a digest or quiet hours holds its alerts in the outbox: the page counts
    them, lists them with the time they go out, and the JSON has the same."""
    config = load_config(_held_config(tmp_path))
    store = await open_store(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        now = utcnow()
        await store.sync_sources({"wire": now})
        for room in ("night-room", "day-room"):
            await store.upsert_destination(Destination(room, "console"))
        assert await store.claim_source("wire", now, owner="t", lease_s=60) is not None
        hold = Hold(now + timedelta(hours=7), "quiet")
        routed = [
            RoutedEvent(
                Event("wire", EventKind.NEW, key, f"Contract {key}", topics=("news",)),
                ("night-room", "day-room"),
                holds={"night-room": hold},
            )
            for key in ("a", "b")
        ]
        commit = PollCommit(source_id="wire", now=now, next_due=now, events=routed)
        await store.commit_poll(commit, owner="t")
        snap = await snapshot(store=store, config=config, now=now)
    finally:
        await store.close()
    assert snap.outbox.held == 2 and snap.outbox.pending == 2
    assert [(d.destination, d.until) for d in snap.held] == [("night-room", hold.until)] * 2
    html = render_html(snap)
    assert "2 pending" in html and "2 held for a digest or quiet hours" in html
    rows = _rows(html).rows
    [held] = [r for r in rows if r.startswith("new: Contract a") and "night-room" in r]
    assert held.endswith("in 7h")  # goes out when the room's quiet hours end
    [sent_now] = [r for r in rows if r.startswith("new: Contract a") and "day-room" in r]
    assert "in 7h" not in sent_now  # the other room's delivery is pending, not held
    data = snap.to_json()
    assert [d["destination"] for d in data["held"]] == ["night-room", "night-room"]
    assert data["held"][0]["until"] == hold.until.isoformat()
