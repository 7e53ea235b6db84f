"""Failure notices (issue 16), through the real scheduler and a real store (SQLite and
PostgreSQL): the operator room gets one notice when a source reaches
``failure_notice_after`` failed polls in a row and one when it recovers, never one
per failed poll nor a second after a restart; rooms that opted in
(``notify_failures=yes``) get their topic's; the flood breaker's hold and release
are notices too; the error text is redacted and neutral on every platform."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel

from alerts.chat.commands import CommandContext, CommandService
from alerts.config import SourceSpec, load_config
from alerts.errors import SourceError
from alerts.model import DeliveryState, Destination, Item, Observation, Subscription
from alerts.notices import Notice, NoticePolicy, notice_event
from alerts.platforms.discord.render import embed_payload
from alerts.platforms.matrix.render import render
from alerts.route import Router
from alerts.scheduler import Scheduler, Timing
from alerts.sources import SourceState
from alerts.store import Store
from alerts.store.postgres import open_postgres
from alerts.store.sqlite import SqliteStore

from .pg_support import fresh_database
from .test_config_cli import alerts
from .test_flood import rotated

SECRET_ERROR = (
    "HTTP 503 from https://feeds.example/rss?token=hunter22secret: "
    "@everyone <b>down</b> [x](https://evil.example)"
)


class Script:
    """An adapter that plays a script: an exception is raised, ``None`` answers 304,
    a list of items is the feed."""

    kind: ClassVar[str] = "test"

    class Options(BaseModel):
        pass

    def __init__(self) -> None:
        self.steps: Iterator[object] = iter(())

    def play(self, *steps: object) -> None:
        self.steps = iter(steps)

    async def fetch(self, state: SourceState) -> Observation:
        step = next(self.steps)
        if isinstance(step, Exception):
            raise step
        if step is None:
            return Observation(not_modified=True)
        assert isinstance(step, list)
        return Observation(items=tuple(step))


def spec(source_id: str = "wire", topics: tuple[str, ...] = ("news",)) -> SourceSpec:
    return SourceSpec(
        id=source_id,
        kind="test",
        url=f"https://feeds.example/{source_id}",
        interval_s=3600.0,
        topics=topics,
        options=Script.Options(),
        fingerprint=("title",),
        backfill=0,
        max_events=100,
        name="Wire",
        origin="test",
    )


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened: Store = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
        try:
            yield opened
        finally:
            await opened.close()
        return
    async with fresh_database() as url:
        opened = await open_postgres(url, max_connections=4)
        try:
            yield opened
        finally:
            await opened.close()


async def scheduler(
    store: Store, adapter: Script, *, owner: str = "replica-1", after: int = 3
) -> Scheduler:
    """A scheduler with an operator room ``ops`` (as a restart would build it)."""
    for room in ("ops", "room-opt", "room-plain"):
        await store.upsert_destination(Destination(room, "console"))
    router = Router()
    router.set_notices(NoticePolicy("ops", after))
    made = Scheduler(
        store=store,
        specs={"wire": spec()},
        adapters={"wire": adapter},  # type: ignore[dict-item]
        router=router,
        owner=owner,
        timing=Timing(jitter=0.0, first_spread_s=0.0),
    )
    await made.register()
    return made


async def notices(store: Store, room: str = "ops") -> list[str]:
    rows = await store.list_deliveries(limit=1000)
    return [
        str(r.event.fields["notice"])
        for r in sorted(rows, key=lambda r: r.id)
        if r.destination_id == room and "notice" in r.event.fields
    ]


async def test_a_failing_then_recovering_source_is_two_notices(store: Store) -> None:
    adapter = Script()
    sched = await scheduler(store, adapter)
    adapter.play(
        [Item(key="a", title="A")],  # baseline
        *[SourceError(SECRET_ERROR) for _ in range(6)],
        None,  # recovered: a 304 counts
        None,
        SourceError("one more"),  # below the threshold: no notice
        None,
    )
    for _ in range(11):
        await sched.poll_now("wire")
    assert await notices(store) == ["failing", "recovered"]
    rows = [r for r in await store.list_deliveries(limit=100) if "notice" in r.event.fields]
    failing, recovered = (r.event for r in sorted(rows, key=lambda r: r.id))
    assert failing.title == "Source failing: Wire (3 failed polls in a row)"
    assert recovered.title == "Source recovered: Wire (after 6 failed polls)"
    assert "hunter22secret" not in failing.summary and "feeds.example/rss" in failing.summary
    assert all(r.state is DeliveryState.PENDING for r in rows)  # in the outbox, like alerts
    [source] = [s for s in await store.list_sources() if s.source_id == "wire"]
    assert source.failures == 0


async def test_a_restart_in_the_middle_of_failures_does_not_notify_twice(store: Store) -> None:
    adapter = Script()
    first = await scheduler(store, adapter, owner="before")
    adapter.play(*[SourceError("timeout") for _ in range(3)])
    for _ in range(3):
        await first.poll_now("wire")
    second = await scheduler(store, adapter, owner="after")  # a restart, or another replica
    adapter.play(*[SourceError("timeout") for _ in range(4)], None)
    for _ in range(5):
        await second.poll_now("wire")
    assert await notices(store) == ["failing", "recovered"]


async def test_rooms_that_opted_in_get_their_topics_notices(store: Store) -> None:
    adapter = Script()
    sched = await scheduler(store, adapter, after=2)
    await store.add_subscription(Subscription("room-opt", topic="news", notify_failures=True))
    await store.add_subscription(Subscription("room-plain", topic="news"))
    await store.add_subscription(
        Subscription("room-plain", topic="contracts", notify_failures=True)
    )
    adapter.play(SourceError("boom"), SourceError("boom"), None)
    for _ in range(3):
        await sched.poll_now("wire")
    assert await notices(store, "ops") == ["failing", "recovered"]
    assert await notices(store, "room-opt") == ["failing", "recovered"]
    assert await notices(store, "room-plain") == []  # news without opt-in; contracts not wire's


async def test_the_flood_breaker_holding_and_releasing_a_source_are_notices(
    store: Store,
) -> None:
    adapter = Script()
    sched = await scheduler(store, adapter)
    adapter.play(rotated(0), rotated(1), rotated(2), rotated(0), rotated(0), rotated(0))
    for _ in range(6):
        await sched.poll_now("wire")
    assert await notices(store) == ["flood_held", "flood_resumed"]
    rows = await store.list_deliveries(limit=1000)
    held = next(r.event for r in rows if r.event.fields.get("notice") == "flood_held")
    assert "look like items already seen" in held.summary


def test_a_notice_is_neutral_and_redacted_on_every_platform() -> None:
    event = notice_event(
        Notice.FAILING,
        source_id="wire",
        label="Wire",
        topics=("news",),
        now=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        failures=3,
        detail=SECRET_ERROR,
    )
    embed = embed_payload(event)
    description = str(embed["description"])
    assert "hunter22secret" not in description
    assert "@everyone" not in description and "@\u200beveryone" in description
    assert (
        "\\<b\\>down\\</b\\>" in description
        and "\\[x\\]\\(https\\://evil.example\\)" in description
    )
    content = render(event)
    assert "hunter22secret" not in content["body"] + content["formatted_body"]
    assert "&lt;b&gt;down&lt;/b&gt;" in content["formatted_body"]
    assert "evil.example" not in " ".join(
        part for part in content["formatted_body"].split('"') if part.startswith("http")
    )


async def test_subscribe_notify_failures_is_stored_and_a_bad_value_refused(store: Store) -> None:
    commands = CommandService(store=store, topics={"news": ""})
    ctx = CommandContext("matrix", "!room:example.org", "@mod:example.org", may_manage=True)
    done = await commands.handle_text("subscribe news notify_failures=yes", ctx)
    assert done.text == "Subscribed: news notify_failures=yes"
    [sub] = await store.list_subscriptions(ctx.destination_id)
    assert sub.notify_failures
    bad = await commands.handle_text("subscribe news notify_failures=maybe", ctx)
    assert not bad.ok and bad.text == "notify_failures must be yes or no, not 'maybe'"
    assert [s.notify_failures for s in await store.list_subscriptions()] == [True]
    off = await commands.handle_text("subscribe news notify_failures=no", ctx)
    assert off.text == "Subscribed: news"
    [sub] = await store.list_subscriptions(ctx.destination_id)
    assert not sub.notify_failures


@pytest.mark.parametrize(
    ("service", "message"),
    [
        pytest.param(
            'operator_room = "opps"',
            "alerts.toml: service.operator_room: unknown destination 'opps'; defined: ops",
            id="unknown-room",
        ),
        pytest.param(
            "failure_notice_after = 0",
            "alerts.toml: service.failure_notice_after: Input should be greater than or equal to 1",
            id="zero",
        ),
    ],
)
def test_alerts_check_validates_the_operator_room_and_threshold(
    tmp_path: Path, service: str, message: str
) -> None:
    (tmp_path / "alerts.toml").write_text(
        f'[service]\n{service}\n[topics.news]\n[destinations.ops]\nsink = "console"\n'
    )
    result = alerts("--config", str(tmp_path), "check")
    assert result.returncode == 2
    assert any(message in line for line in result.stderr.splitlines()), result.stderr
    good = tmp_path / "good"
    good.mkdir()
    (good / "alerts.toml").write_text(
        '[service]\noperator_room = "ops"\nfailure_notice_after = 5\n'
        '[topics.news]\n[destinations.ops]\nsink = "console"\n'
    )
    assert load_config(good).service.notices == NoticePolicy("ops", 5)
