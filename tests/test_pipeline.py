"""The pipeline end to end on the embedded default: a real feed server on loopback,
the real feed adapter, scheduler, detector, router, SQLite store and dispatcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from alerts.config import Settings, load_config
from alerts.model import Destination, EventKind, Subscription, utcnow
from alerts.runtime import Runtime, dead_local_owners
from alerts.scheduler import Timing

from .support import FeedServer, RecordingSink, feed_server, write_config

OpenRuntime = Callable[..., "asyncio.Future[Runtime]"]


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    async with feed_server() as srv:
        yield srv


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def runtime_factory(
    tmp_path: Path, sink: RecordingSink
) -> AsyncIterator[Callable[..., object]]:
    opened: list[Runtime] = []

    async def make(config_dir: Path, **kw: object) -> Runtime:
        settings = Settings(
            config_dir=config_dir,
            database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
            data_dir=tmp_path / "data",
        )
        rt = await Runtime.open(
            settings,
            load_config(config_dir),
            sink_overrides={"console": sink},
            timing=Timing(jitter=0.0, first_spread_s=0.0, idle_s=0.05),
            **kw,  # type: ignore[arg-type]
        )
        await rt._start_sinks()
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        await rt.close()


async def poll(rt: Runtime, source: str) -> None:
    report = await rt.scheduler.poll_now(source)
    assert report.ok, report.error
    await rt.dispatcher.drain()


async def test_baseline_then_new_items_are_delivered_once(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b", "c")})
    rt = await runtime_factory(config)  # type: ignore[misc]
    await poll(rt, "wire")
    assert sink.sent == []  # the first poll is a baseline
    server.add("wire", "d", "e")
    await poll(rt, "wire")
    assert sink.titles() == ["Item d", "Item e"]  # oldest first
    await poll(rt, "wire")  # unchanged: a conditional GET answered 304
    assert server.conditional["wire"] == 1
    assert sink.titles() == ["Item d", "Item e"]
    assert [d.event.kind for d in sink.sent] == [EventKind.NEW, EventKind.NEW]


async def test_an_item_that_drops_out_and_comes_back_is_not_new(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b")})
    rt = await runtime_factory(config)  # type: ignore[misc]
    await poll(rt, "wire")
    server.feeds["wire"].items = [("b", "Item b")]
    await poll(rt, "wire")
    server.feeds["wire"].items = [("a", "Item a"), ("b", "Item b")]
    await poll(rt, "wire")
    assert sink.sent == []


async def test_a_rewritten_item_is_updated_with_old_and_new(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
    rt = await runtime_factory(config)  # type: ignore[misc]
    await poll(rt, "wire")
    server.feeds["wire"].items = [("a", "Item a, corrected")]
    await poll(rt, "wire")
    [delivery] = sink.sent
    assert delivery.event.kind is EventKind.UPDATED
    assert delivery.event.changes["title"] == ("Item a", "Item a, corrected")


async def test_a_broken_feed_fails_alone_and_recovers(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, {"good": server.feed("good", "a"), "bad": server.feed("bad", "x")}
    )
    rt = await runtime_factory(config)  # type: ignore[misc]
    await poll(rt, "good")
    await poll(rt, "bad")
    server.feeds["bad"].body = b"<html><body>We moved! <a href=/new>here</a></body></html>"
    server.add("good", "b")
    report = await rt.scheduler.poll_now("bad")
    assert not report.ok
    assert "not a feed" in (report.error or "").lower() or "parse" in (report.error or "").lower()
    await poll(rt, "good")
    assert sink.titles() == ["Item b"]
    row = await rt.store.get_source("bad")
    assert row is not None
    assert row.failures == 1
    assert row.last_error == report.error
    assert row.next_due >= utcnow() + timedelta(seconds=20)  # backed off (30 s ± 20 %)
    server.feeds["bad"].body = None
    server.add("bad", "y")
    await poll(rt, "bad")
    row = await rt.store.get_source("bad")
    assert row is not None
    assert (row.failures, row.last_error) == (0, None)
    assert sink.titles() == ["Item b", "Item y"]


async def test_retry_after_is_honoured(
    server: FeedServer, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"busy": server.feed("busy", "a")})
    rt = await runtime_factory(config)  # type: ignore[misc]
    server.feeds["busy"].status = 429
    server.feeds["busy"].headers = {"Retry-After": "3600"}
    report = await rt.scheduler.poll_now("busy")
    assert not report.ok
    row = await rt.store.get_source("busy")
    assert row is not None
    assert row.next_due >= utcnow() + timedelta(seconds=3590)


async def test_conditional_get_state_survives_a_restart(
    server: FeedServer, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
    first = await runtime_factory(config)  # type: ignore[misc]
    await poll(first, "wire")
    await first.close()
    second = await runtime_factory(config)  # type: ignore[misc]
    await poll(second, "wire")
    assert server.conditional["wire"] == 1


async def test_a_feed_without_validators_is_parsed_only_when_its_body_changes(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    """The body last read counts as unchanged (also after a restart: its hash is in
    the source's cursor); a new body is read and alerted once."""
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b")})
    server.feeds["wire"].validators = False
    first = await runtime_factory(config)  # type: ignore[misc]
    await poll(first, "wire")
    assert (await first.scheduler.poll_now("wire")).not_modified
    await first.close()
    rt = await runtime_factory(config)  # type: ignore[misc]
    assert (await rt.scheduler.poll_now("wire")).not_modified
    server.add("wire", "c")
    report = await rt.scheduler.poll_now("wire")
    assert not report.not_modified
    assert [e.key for e in report.events] == ["c"]
    await rt.dispatcher.drain()
    assert (await rt.scheduler.poll_now("wire")).not_modified
    assert sink.titles() == ["Item c"]
    assert server.hits["wire"] == 5 and server.conditional["wire"] == 0


async def test_backfill_alerts_on_the_newest_n_at_baseline(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a", "b", "c")})
    path = config / "sources.d" / "feeds.toml"
    text = path.read_text().replace('topics = ["news"]', 'topics = ["news"]\nbackfill = 2')
    path.write_text(text)
    rt = await runtime_factory(config)  # type: ignore[misc]
    await poll(rt, "wire")
    assert sorted(sink.titles()) == ["Item b", "Item c"]


async def test_a_flood_is_capped_and_the_excess_summarised(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
    path = config / "sources.d" / "feeds.toml"
    path.write_text(
        path.read_text().replace('topics = ["news"]', 'topics = ["news"]\nmax_events = 5')
    )
    rt = await runtime_factory(config)  # type: ignore[misc]
    await poll(rt, "wire")
    server.add("wire", *[f"n{i:02d}" for i in range(30)])
    await poll(rt, "wire")
    kinds = [d.event.kind for d in sink.sent]
    assert kinds == [EventKind.NEW] * 4 + [EventKind.SUMMARY]
    summary = sink.sent[-1].event
    assert summary.fields["count"] == 26
    assert summary.title == "26 more updates from wire"


async def test_subscriptions_route_by_topic_kind_and_keyword(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
    rt = await runtime_factory(config)  # type: ignore[misc]
    for room in ("room-ice", "room-all", "room-updates"):
        await rt.store.upsert_destination(Destination(room, "console"))
    await rt.store.add_subscription(Subscription("room-ice", topic="news", include=("palantir",)))
    await rt.store.add_subscription(Subscription("room-all", topic="news", exclude=("sports",)))
    await rt.store.add_subscription(
        Subscription("room-updates", topic="news", kinds=frozenset({EventKind.UPDATED}))
    )
    await poll(rt, "wire")
    server.feeds["wire"].items += [("p", "Palantir wins ICE deal"), ("s", "Sports results")]
    await poll(rt, "wire")
    assert sink.titles("room-ice") == ["Palantir wins ICE deal"]
    assert sink.titles("room-all") == ["Palantir wins ICE deal"]
    assert sink.titles("room-updates") == []
    assert sorted(sink.titles("console")) == ["Palantir wins ICE deal", "Sports results"]


async def test_the_running_service_polls_on_its_own_and_stops_cleanly(
    server: FeedServer, sink: RecordingSink, runtime_factory: Callable[..., object], tmp_path: Path
) -> None:
    config = write_config(tmp_path, {"wire": server.feed("wire", "a")})
    rt = await runtime_factory(config)  # type: ignore[misc]
    task = asyncio.create_task(rt.run())
    for _ in range(100):
        row = await rt.store.get_source("wire")
        if row is not None and row.baselined:
            break
        await asyncio.sleep(0.05)
    server.add("wire", "b")
    await rt.store.set_next_due("wire", utcnow())
    for _ in range(100):
        if sink.sent:
            break
        await asyncio.sleep(0.05)
    rt.stop()
    await asyncio.wait_for(task, timeout=10)
    assert sink.titles() == ["Item b"]


def test_dead_local_owners_are_recognised() -> None:
    import os
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    me = f"box:{os.getpid()}:aaaaaa"
    owners = {
        me,
        f"box:{dead_pid}:bbbbbb",  # exited
        f"box:{os.getpid()}:cccccc",  # our pid, another incarnation (container restart)
        f"box:{os.getppid()}:dddddd",  # alive
        f"other-host:{dead_pid}:eeeeee",  # not ours to judge
        "garbage",
    }
    assert sorted(dead_local_owners(owners, me)) == sorted(
        [f"box:{dead_pid}:bbbbbb", f"box:{os.getpid()}:cccccc"]
    )
