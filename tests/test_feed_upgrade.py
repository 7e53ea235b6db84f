"""Upgrading never re-alerts: a store written by alerts 0.1 polls its unchanged feeds silently.

``fixtures/feeds/upgrade-0.1-items.json`` holds the items alerts 0.1 (commit bd77d82,
fastfeedparser) read from the feed fixtures. The test stores them exactly as 0.1 did
(its keys, its fingerprints, no item format in the detector state) in a real SQLite
store, then polls the same feeds over loopback with the real runtime: zero events.
The items' keys and fingerprints really did change (links are now canonical, text is
read better), so the carry-over and the format transition are what keep it silent;
and after the upgrade a genuinely new item still alerts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.config import Settings, SourceSpec, load_config
from alerts.detect import FINGERPRINT_VERSION, Detection, detect, fingerprint, snapshot
from alerts.model import Item, Observation, utcnow
from alerts.records import ItemState, PollCommit
from alerts.runtime import Runtime
from alerts.scheduler import Timing
from alerts.sources.feed import FeedSource, parse_feed

from .support import FeedServer, FeedState, RecordingSink, serving, write_config

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
OLD_ITEMS = json.loads((FEEDS / "upgrade-0.1-items.json").read_text(encoding="utf-8"))["feeds"]
FIELDS = FeedSource.fingerprint_fields


def source_id(fixture: str) -> str:
    return fixture.rsplit(".", 1)[0].replace("/", "-").replace("_", "-")


def old_item(row: Mapping[str, Any], base: str) -> Item:
    def sub(value: Any) -> Any:
        return value.replace("{base}", base) if isinstance(value, str) else value

    published = row["published"]
    return Item(
        key=sub(row["key"]),
        title=sub(row["title"]),
        url=sub(row["url"]),
        summary=sub(row["summary"]),
        published=datetime.fromisoformat(published) if published else None,
        author=row["author"],
        fields=row["fields"],
    )


def old_states(fixture: str, base: str) -> dict[str, ItemState]:
    """What alerts 0.1 stored: its keys, its fingerprint (links as written), its snapshot."""
    items = [old_item(row, base) for row in OLD_ITEMS[fixture]]
    return {
        it.key: ItemState(fingerprint(it, FIELDS, version=1), snapshot(it, FIELDS)) for it in items
    }


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    feeds = FeedServer()
    for fixture in OLD_ITEMS:
        feeds.feeds[source_id(fixture)] = FeedState(body=(FEEDS / fixture).read_bytes())
    async with serving(feeds) as running:
        yield running


@pytest.fixture
async def runtime(
    server: FeedServer, tmp_path: Path
) -> AsyncIterator[tuple[Runtime, RecordingSink]]:
    config = write_config(tmp_path, {source_id(f): server.url(source_id(f)) for f in OLD_ITEMS})
    sink = RecordingSink()
    settings = Settings(
        config_dir=config,
        database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        data_dir=tmp_path / "data",
    )
    rt = await Runtime.open(
        settings,
        load_config(config),
        sink_overrides={"console": sink},
        timing=Timing(jitter=0.0, first_spread_s=0.0, idle_s=0.05),
    )
    await rt._start_sinks()
    try:
        yield rt, sink
    finally:
        await rt.close()


async def store_as_0_1(rt: Runtime, fixture: str, base: str) -> None:
    """Write a source's state the way alerts 0.1 committed its polls."""
    sid, now = source_id(fixture), utcnow()
    await rt.store.set_next_due(sid, now)
    [row] = await rt.store.claim_due_sources(
        now, owner="alerts-0.1", lease_s=60, limit=1, only=[sid]
    )
    assert not row.baselined
    await rt.store.commit_poll(
        PollCommit(
            source_id=sid,
            now=now,
            next_due=now + timedelta(hours=1),
            detector={},
            baselined=True,
            items=old_states(fixture, base),
        ),
        owner="alerts-0.1",
    )


def test_the_old_items_really_are_keyed_and_read_differently() -> None:
    """Without the carry-over and the format transition this upgrade would alert."""
    base = "http://127.0.0.1:1"
    rekeyed = refingerprinted = 0
    for fixture in OLD_ITEMS:
        states = old_states(fixture, base)
        url = f"{base}/feeds/{source_id(fixture)}.xml"
        for item in parse_feed((FEEDS / fixture).read_bytes(), base_url=url):
            if item.key not in states:
                rekeyed += 1
                assert any(k in states for k in item.former_keys), (fixture, item.key)
            elif states[item.key].fingerprint != fingerprint(item, FIELDS):
                refingerprinted += 1
    assert rekeyed >= 5
    assert refingerprinted >= 5


async def test_an_upgraded_store_raises_no_alert_on_unchanged_feeds(
    runtime: tuple[Runtime, RecordingSink], server: FeedServer
) -> None:
    rt, sink = runtime
    for fixture in OLD_ITEMS:
        await store_as_0_1(rt, fixture, server.base)
    for fixture in OLD_ITEMS:
        report = await rt.scheduler.poll_now(source_id(fixture))
        assert report.ok, (fixture, report.error)
        assert report.events == (), (fixture, [e.title for e in report.events])
        assert not report.baseline
    await rt.dispatcher.drain()
    assert sink.sent == []

    # the states moved to the new keys: polling again is silent without any lookup of old ones
    for fixture in OLD_ITEMS:
        sid = source_id(fixture)
        server.feeds[sid].body = (FEEDS / fixture).read_bytes() + b"\n"  # new ETag, same feed
        report = await rt.scheduler.poll_now(sid)
        assert report.ok and report.events == (), fixture
        url = server.url(sid)
        keys = [it.key for it in parse_feed((FEEDS / fixture).read_bytes(), base_url=url)]
        assert set(await rt.store.load_items(sid, keys)) == set(keys)


async def test_after_the_upgrade_a_new_item_still_alerts(
    runtime: tuple[Runtime, RecordingSink], server: FeedServer
) -> None:
    rt, sink = runtime
    fixture = "real/hackernews.xml"
    await store_as_0_1(rt, fixture, server.base)
    newer = (
        b"<item><title>New: a story nobody has seen</title>"
        b"<link>https://example.org/new-story</link>"
        b"<pubDate>Wed, 27 Nov 2024 08:00:00 +0000</pubDate></item>"
    )
    body = (FEEDS / fixture).read_bytes()
    at = body.index(b"<item>")
    server.feeds[source_id(fixture)].body = body[:at] + newer + body[at:]
    report = await rt.scheduler.poll_now(source_id(fixture))
    assert report.ok, report.error
    assert [e.title for e in report.events] == ["New: a story nobody has seen"]
    await rt.dispatcher.drain()
    assert sink.titles() == ["New: a story nobody has seen"]


# --- the detector's rules, one at a time -------------------------------------------------------


class Awards:
    """An adapter whose items are read as before (no ``item_format``): only the
    detector's fingerprint changed (links compared in canonical form)."""


def award_spec() -> SourceSpec:
    return SourceSpec(
        id="awards",
        kind="awards",
        url="https://api.example.gov/awards",
        interval_s=600,
        topics=("contracts",),
        options=FeedSource.Options(),
        fingerprint=("title", "url"),
        backfill=0,
        max_events=50,
        name="",
        origin="test",
    )


def detect_once(
    spec: SourceSpec,
    items: list[Item],
    known: dict[str, ItemState],
    adapter: object,
    detector: Mapping[str, Any] | None = None,
) -> Detection:
    return detect(
        spec=spec,
        observation=Observation(items=tuple(items)),
        known=known,
        baselined=True,
        detector_state=detector or {},
        adapter=adapter,
        now=utcnow(),
    )


AWARD = Item(key="A-1", title="$30M to Palantir", url="https://www.example.gov/a/1?utm_source=x")


def stored_v1(item: Item, fields: tuple[str, ...]) -> dict[str, ItemState]:
    return {item.key: ItemState(fingerprint(item, fields, version=1), snapshot(item, fields))}


@pytest.mark.parametrize(
    ("now", "alerts"),
    [
        pytest.param(AWARD, [], id="unchanged"),
        pytest.param(replace(AWARD, url="https://example.gov/a/1"), [], id="url-noise-only"),
        pytest.param(replace(AWARD, title="$45M to Palantir"), ["updated"], id="real-change"),
    ],
)
def test_the_first_poll_after_the_upgrade_still_alerts_real_changes(
    now: Item, alerts: list[str]
) -> None:
    spec = award_spec()
    found = detect_once(spec, [now], stored_v1(AWARD, spec.fingerprint), Awards())
    assert [e.kind.value for e in found.events] == alerts
    assert found.detector["item_format"] == [FINGERPRINT_VERSION, 1]


def test_once_upgraded_every_change_alerts_again() -> None:
    spec = award_spec()
    first = detect_once(spec, [AWARD], stored_v1(AWARD, spec.fingerprint), Awards())
    changed = replace(AWARD, title="$45M to Palantir")
    again = detect_once(spec, [changed], first.items, Awards(), first.detector)
    assert [e.kind.value for e in again.events] == ["updated"]


def test_a_feed_whose_text_is_read_anew_is_recorded_again_once() -> None:
    spec = replace(award_spec(), kind="feed", fingerprint=FeedSource.fingerprint_fields)
    old = Item(key="g", title="How do I convert List to String[]", summary="x")
    new = replace(old, title="How do I convert List<String> to String[]")
    first = detect_once(spec, [new], stored_v1(old, spec.fingerprint), FeedSource)
    assert first.events == []
    assert first.items["g"].fingerprint == fingerprint(new, spec.fingerprint)
    edited = replace(new, summary="y")
    again = detect_once(spec, [edited], first.items, FeedSource, first.detector)
    assert [e.kind.value for e in again.events] == ["updated"]


def test_a_former_key_claimed_twice_goes_to_the_matching_item() -> None:
    spec = replace(award_spec(), kind="feed", fingerprint=FeedSource.fingerprint_fields)
    upgraded = {"item_format": [FINGERPRINT_VERSION, FeedSource.item_format]}
    alone = Item(key="https://x.example/p", title="Release one", summary="one")
    stored = {alone.key: ItemState("stale fingerprint", {"title": "Release one"})}
    newcomer = Item(key="https://x.example/p#1", title="Release two", former_keys=(alone.key,))
    incumbent = replace(alone, key="https://x.example/p#2", former_keys=(alone.key,))
    found = detect_once(spec, [newcomer, incumbent], stored, FeedSource, upgraded)
    assert [(e.kind.value, e.title) for e in found.events] == [("new", "Release two")]
    assert set(found.items) == {newcomer.key, incumbent.key}
