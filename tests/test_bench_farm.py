"""The benchmark farm keeps its promises: ETags, 304s and ground truth (tiny N, in-process)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

try:
    import bench  # noqa: F401  (found when pytest runs from the repository root)
except ImportError:  # pragma: no cover - plain `pytest` from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baseline import AdapterPoller, BarePoller, FeedparserPoller, drive
from bench.farm import FarmSpec, FarmState, make_app, render_feed

from alerts.sources.feed import parse_feed

N = 8


@pytest.fixture
async def farm() -> AsyncIterator[tuple[FarmState, str]]:
    # baseline, unchanged (304), unchanged without validators, every feed changes, 10 %
    state = FarmState(FarmSpec(n_feeds=N, fractions=(0.0, 0.0, 0.0, 1.0, 0.1), plain=(2,)))
    runner = web.AppRunner(make_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield state, f"http://{host}:{port}"
    await runner.cleanup()


def test_schedule_and_truth_are_consistent() -> None:
    spec = FarmSpec(n_feeds=2000, fractions=(0.0, 0.0, 1.0, 0.1), plain=())
    assert spec.changed_feeds(0) == []
    assert spec.changed_feeds(1) == []
    assert len(spec.changed_feeds(2)) == 2000
    assert 150 <= len(spec.changed_feeds(3)) <= 250
    feed = spec.changed_feeds(3)[0]
    before, after = spec.keys(feed, 2), spec.keys(feed, 3)
    assert len(after) == spec.items_per_feed
    assert set(after) - set(before) == spec.new_keys(feed, 2, 3)
    assert len(spec.new_keys(feed, 0, 3)) == 2 * spec.new_per_change
    assert spec.etag(feed, 2) != spec.etag(feed, 3)


def test_feed_is_about_60_kb_and_parses_to_the_truth() -> None:
    spec = FarmSpec(n_feeds=1)
    body = render_feed(spec, 0, 0)
    assert 55_000 <= len(body) <= 70_000
    items = parse_feed(body, base_url="http://127.0.0.1/feed/0.xml")
    assert [it.key for it in items] == spec.keys(0, 0)


async def test_serves_etags_304s_and_changes(farm: tuple[FarmState, str]) -> None:
    state, base = farm
    spec = state.spec
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/feed/3.xml") as resp:
            assert resp.status == 200
            etag = resp.headers["ETag"]
            first = parse_feed(await resp.read(), base_url=base)
        assert etag == spec.etag(3, 0)
        assert [it.key for it in first] == spec.keys(3, 0)
        assert state.all_served(0, [3])
        assert not state.all_served(0)

        async with session.get(f"{base}/feed/3.xml", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304

        state.set_round(2)  # no validators: the same body in full, never a 304
        async with session.get(f"{base}/feed/3.xml", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 200
            assert "ETag" not in resp.headers and "Last-Modified" not in resp.headers
            assert parse_feed(await resp.read(), base_url=base) == first

        state.set_round(3)  # every feed changes in round 3
        async with session.get(f"{base}/feed/3.xml", headers={"If-None-Match": etag}) as resp:
            assert resp.status == 200
            assert resp.headers["ETag"] == spec.etag(3, 3)
            second = parse_feed(await resp.read(), base_url=base)
        new = {it.key for it in second} - {it.key for it in first}
        assert new == spec.new_keys(3, 0, 3)
        assert len(new) == spec.new_per_change

        async with session.get(f"{base}/feed/{N}.xml") as resp:
            assert resp.status == 404
    assert state.hit_count() == 4  # the 404 is not a feed


@pytest.mark.parametrize("poller", [BarePoller, FeedparserPoller, AdapterPoller])
async def test_clients_find_exactly_the_truth(farm: tuple[FarmState, str], poller: type) -> None:
    state, base = farm
    client = poller(lambda i: f"{base}/feed/{i}.xml", 4)
    try:
        rounds = await drive(client, state, concurrency=4, rounds=range(5))
    finally:
        await client.close()
    assert [r.kind for r in rounds] == ["baseline", "unchanged", "no-etag", "changed", "mixed"]
    assert [r.status_200 for r in rounds[:4:3]] == [N, N]
    assert rounds[1].status_304 == N
    # without validators every answer is a 200; the adapter tells the body it last
    # read (an unchanged poll, as it reports a 304) from one to parse
    unchanged = rounds[2].status_304 if poller is AdapterPoller else rounds[2].status_200
    assert unchanged == N
    assert all(r.errors == 0 and r.polls == N for r in rounds)
    if client.detects:
        assert (rounds[2].events, rounds[2].expected) == (0, 0)  # the same body again
        changed = rounds[3]
        assert changed.checked
        assert changed.events == changed.expected == N * state.spec.new_per_change
        assert (changed.missed, changed.duplicates, changed.unexpected) == (0, 0, 0)
        assert rounds[4].missed == rounds[4].duplicates == 0


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_thread_cpu_is_split_by_role() -> None:
    """The service's rounds report CPU by thread; SQLite's thread must count as store."""
    from bench.baseline import cpu_by_role, thread_cpu

    burnt, release = threading.Event(), threading.Event()

    def burn() -> None:
        until = time.thread_time() + 0.1
        while time.thread_time() < until:
            pass
        burnt.set()
        release.wait(10)  # alive at the second reading: an ended thread is not counted

    worker = threading.Thread(target=burn, name="alerts-sqlite:test.db")
    before = thread_cpu()
    worker.start()
    try:
        assert burnt.wait(10)
        spent = cpu_by_role(before, thread_cpu())
    finally:
        release.set()
        worker.join()
    assert spent["store"] >= 0.08
    assert spent.get("main", 0.0) < 0.08
