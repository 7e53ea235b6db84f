"""Sources that misbehave, through the real runtime (feed server on loopback, the real
``HttpClient``, feed adapter, scheduler, detector, SQLite store, dispatcher): a 304
that answers no question, a ``Retry-After`` of a year, ids that rotate on every
poll."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from alerts import metrics
from alerts.config import Settings, load_config
from alerts.model import EventKind, utcnow
from alerts.runtime import Runtime
from alerts.scheduler import Timing

from ..support import FeedServer, RecordingSink, feed_server, write_config
from .helpers import set_service


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@contextlib.asynccontextmanager
async def opened(tmp_path: Path, config: Path, sink: RecordingSink) -> AsyncIterator[Runtime]:
    settings = Settings(
        config_dir=config,
        database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        data_dir=tmp_path / "data",
    )
    rt = await Runtime.open(
        settings,
        load_config(config),
        sink_overrides={"console": sink},
        timing=Timing(jitter=0.0, first_spread_s=0.0, max_backoff_s=2 * 86400.0),
    )
    await rt._start_sinks()
    try:
        yield rt
    finally:
        await rt.close()


async def test_a_304_to_a_request_without_validators_is_a_failure(
    tmp_path: Path, server: FeedServer, sink: RecordingSink
) -> None:
    """A 304 sent without being asked (no If-None-Match, no If-Modified-Since) says
    nothing about the feed: the poll fails with the reason, never "0 items, ok"."""
    url = server.feed("wire", "a")
    server.feeds["wire"].status = 304  # the misconfigured cache answers 304 to everything
    async with opened(tmp_path, write_config(tmp_path, {"wire": url}), sink) as rt:
        report = await rt.scheduler.poll_now("wire")
        assert not report.ok and not report.not_modified
        assert report.error is not None and "sent no validators" in report.error
        row = await rt.store.get_source("wire")
        assert row is not None and row.failures == 1 and not row.baselined
        assert row.last_error == report.error


async def test_a_retry_after_of_a_year_is_capped_and_logged_with_its_date(
    tmp_path: Path, server: FeedServer, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.feed("wire", "a")
    server.feeds["wire"].status = 429
    server.feeds["wire"].headers = {"Retry-After": "31536000"}
    config = write_config(tmp_path, {"wire": url})
    set_service(config, max_backoff='"2d"')
    async with opened(tmp_path, config, sink) as rt:
        before = utcnow()
        report = await rt.scheduler.poll_now("wire")
        assert not report.ok
        row = await rt.store.get_source("wire")
        assert row is not None
        wait = row.next_due - before
        assert timedelta(days=2) - timedelta(seconds=5) <= wait <= timedelta(days=2, seconds=5)
    [line] = [r.getMessage() for r in caplog.records if "source wire failing" in r.getMessage()]
    assert f"next try {row.next_due:%Y-%m-%d %H:%M:%S} UTC" in line  # the date: not today
    assert "the server asked for 365 d; capped at max_backoff" in line


def rotating_rss(round_no: int, stories: int = 8) -> bytes:
    """RSS 2.0 (https://www.rssboard.org/rss-specification) whose guids change on
    every round while each story keeps its link, title and date."""
    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    items = "".join(
        f"<item><guid isPermaLink='false'>r{round_no}-{n}</guid><title>Story {n}</title>"
        f"<link>https://news.example/story/{n}</link>"
        f"<pubDate>{format_datetime(t0 - timedelta(hours=n))}</pubDate></item>"
        for n in range(stories)
    )
    return (
        "<?xml version='1.0' encoding='UTF-8'?><rss version='2.0'><channel><title>T</title>"
        f"<link>https://news.example/</link><description>d</description>{items}</channel></rss>"
    ).encode()


async def _sources_table(tmp_path: Path, config: Path) -> str:
    """``alerts sources`` as the operator runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alerts",
        "--config",
        str(config),
        "--database-url",
        f"sqlite:///{tmp_path / 'alerts.db'}",
        "sources",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return out.decode()


async def test_identity_rotation_is_held_told_bounded_and_summarised(
    tmp_path: Path, server: FeedServer, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.feed("wire")
    state = server.feeds["wire"]
    config = write_config(tmp_path, {"wire": url})
    async with opened(tmp_path, config, sink) as rt:
        state.body = rotating_rss(0)
        assert (await rt.scheduler.poll_now("wire")).baseline
        rows = (await rt.store.get_source("wire")).item_count  # type: ignore[union-attr]
        for round_no in range(1, 7):
            state.body = rotating_rss(round_no)
            report = await rt.scheduler.poll_now("wire")
            assert report.ok and report.events == () and report.held == 8, report
            await rt.dispatcher.drain()
        assert sink.sent == []  # 48 would-be alerts, none sent
        row = await rt.store.get_source("wire")
        assert row is not None and row.item_count == rows  # no row per rotated id
        assert (
            metrics.REGISTRY.get_sample_value("alerts_source_flood_held", {"source": "wire"}) == 1
        )
        table = await _sources_table(tmp_path, config)
        assert "held since" in table and "48 alerts" in table, table
        state.body = rotating_rss(0)  # the ids are back to what they were: calm
        for _ in range(2):
            assert (await rt.scheduler.poll_now("wire")).ok
        await rt.dispatcher.drain()
        assert (
            metrics.REGISTRY.get_sample_value("alerts_source_flood_held", {"source": "wire"}) == 0
        )
        assert "held since" not in await _sources_table(tmp_path, config)
    [summary] = sink.sent  # one alert tells the room what was held
    assert summary.event.kind is EventKind.SUMMARY
    assert summary.event.fields["count"] == 48
    tripped = [r for r in caplog.records if "flood breaker tripped" in r.getMessage()]
    settled = [r for r in caplog.records if "flood settled" in r.getMessage()]
    assert len(tripped) == 1 and len(settled) == 1  # one line each, not one per poll
    assert "8 of 8 new items look like items already seen" in tripped[0].getMessage()
