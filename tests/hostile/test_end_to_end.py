"""The hostile corpus end to end: every adapter that takes strangers' text, served on
loopback through the real ``HttpClient``, through the real ``Runtime`` (scheduler,
adapters, detector, router, outbox, dispatcher) into the real sinks: Matrix against
Synapse (events read back from the room), the Discord bot and webhook against the
fake Discord (payloads as it recorded them, each checked against Discord's OpenAPI
spec). Every message must pass ``checks.matrix_problems`` / ``discord_problems``,
nothing may be lost, and the room member whose user id the corpus names must have
no highlight.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import pytest
import yarl
from discord_openapi import OpenApi
from fake_discord import FakeDiscord, Limits

from alerts.config import Settings, load_config
from alerts.fixture_server import FixtureServer
from alerts.model import DeliveryState, Event
from alerts.platforms.matrix.render import room_link
from alerts.render.facts import facts_of, safe_link
from alerts.runtime import Runtime
from alerts.scheduler import Timing

from ..matrix.helpers import Peer
from ..matrix.synapse_server import SynapseServer
from .checks import discord_problems, matrix_problems
from .world import ADAPTERS, HostileWorld, LinkCase, config_toml, load_corpus, shards

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord.gateway
    import discord.http

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


def test_the_corpus_is_big_and_named() -> None:
    texts, links = load_corpus("@member:localhost")
    assert len(texts) + len(links) >= 150
    ids = [c.id for c in texts] + [c.id for c in links]
    assert len(ids) == len(set(ids))
    assert all(c.rule.count("/") == 1 for c in [*texts, *links])


def room_events(synapse: SynapseServer, room_id: str, token: str) -> Iterator[dict[str, Any]]:
    """Every event of a room, newest first, through the client-server API."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=1000"
    start = ""
    while True:
        page = synapse.request("GET", path + (f"&from={start}" if start else ""), token=token)
        yield from page.get("chunk", [])
        if not page.get("end") or not page.get("chunk"):
            return
        start = page["end"]


def expected_links(
    event: Event, links: dict[str, LinkCase], feed_base: str
) -> tuple[str | None, str | None]:
    """(Discord link, Matrix link) an alert may carry: the corpus says so for link
    cases; any other event links to its adapter's own URL, made safe. A feed resolves
    relative links against its own URL (as feed readers do), so for the feed adapter
    a relative link case links to that resolution, and a link with white space inside
    it is not a URL to the feed adapter (it drops it, as it is not one to follow)."""
    case = links.get(event.key.removeprefix("link-")) if event.key.startswith("link-") else None
    if case is None:
        return safe_link(event.url), room_link(facts_of(event))
    if case.rule == "links/relative" and event.source_id.startswith("feed-"):
        resolved = safe_link(urljoin(feed_base, case.url))
        return resolved, resolved
    if event.source_id.startswith("feed-") and any(c.isspace() for c in case.url.strip()):
        return None, None
    return case.expect, case.matrix


def expected_events(adapter: str, texts: int, links: int) -> int:
    per_adapter = {
        "feed": texts + links,
        "federal_register": texts + links,
        "petition": texts + len(shards(range(texts))),  # type: ignore[arg-type]
    }
    return per_adapter.get(adapter, texts)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_hostile_corpus_end_to_end(
    adapter: str,
    synapse: SynapseServer,
    openapi: OpenApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = synapse.register(unique("hbot"))
    reader = Peer(synapse, synapse.register(unique("reader")))
    room_id = await reader.create_room(invite=[bot.user_id], power={bot.user_id: 100})
    synapse.request("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {}, token=bot.access_token)
    texts, links = load_corpus(reader.user_id)
    world = HostileWorld(adapter, texts, links)

    unlimited = Limits(global_per_s=100_000, messages_per_channel=100_000, webhook_per_id=100_000)
    fake = FakeDiscord(api=openapi, limits=unlimited)
    base = await fake.start()
    monkeypatch.setattr(discord.http.Route, "BASE", base + "/api/v10")
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        yarl.URL(base.replace("http", "ws", 1) + "/gateway"),
    )
    guild = fake.add_guild()
    channel, hook_channel = fake.add_channel(guild, "alerts"), fake.add_channel(guild, "hooks")
    for name, value in {
        "MATRIX_HOMESERVER": synapse.url, "MATRIX_USER": bot.user_id,
        "MATRIX_PASSWORD": bot.password, "MATRIX_SYNC_TIMEOUT_S": "1",
        "DISCORD_TOKEN": fake.token, "DISCORD_WEBHOOK_URL": fake.add_webhook(hook_channel),
        "DISCORD_GLOBAL_RATE_PER_S": "100000", "DISCORD_GUILD_READY_TIMEOUT_S": "0.1",
    }.items():  # fmt: skip
        monkeypatch.setenv(f"ALERTS_{name}", value)

    try:
        async with FixtureServer() as server:
            world.install(server)
            config_dir = tmp_path / "config"
            config_dir.mkdir()
            targets = {"matrix": room_id, "discord": str(channel)}
            (config_dir / "alerts.toml").write_text(config_toml(world, server.base_url, targets))
            rows = await run_service(tmp_path, config_dir, world)
            feed_base = server.url("/feeds/0.json")
        messages = {str(m.id): m for m in fake.messages}
    finally:
        await fake.close()
        await reader.close()
    assert fake.violations == [], fake.violations[:5]

    events = {(row.event.source_id, row.event.key) for row in rows}
    assert len(events) == expected_events(adapter, len(texts), len(links))
    assert {row.state for row in rows} == {DeliveryState.SENT}, "nothing lost, nothing dead"
    assert len(rows) == 3 * len(events)

    contents = {
        e["event_id"]: e["content"]
        for e in await asyncio.to_thread(
            lambda: list(room_events(synapse, room_id, reader.account.access_token))
        )
        if e.get("sender") == bot.user_id and e.get("type") == "m.room.message"
    }
    by_id = {c.id: c for c in links}
    problems: list[str] = []
    for row in rows:
        discord_link, matrix_link = expected_links(row.event, by_id, feed_base)
        where = f"{row.destination_id} {row.event.key!r}"
        if row.destination_id == "room":
            found = contents.get(row.remote_id or "")
            found_problems = (
                ["not in the room"] if found is None else matrix_problems(found, link=matrix_link)
            )
        else:
            message = messages.get(row.remote_id or "")
            found_problems = (
                ["not at Discord"]
                if message is None
                else discord_problems(
                    {**message.payload, "embeds": message.embeds}, link=discord_link
                )
            )
        problems += [f"{where}: {p}" for p in found_problems]
    kinds = sorted({p.split(": ", 1)[1] for p in problems})
    assert problems == [], "\n".join(kinds[:30] + problems[:30])

    assert reader.highlights() == []


async def run_service(tmp_path: Path, config_dir: Path, world: HostileWorld) -> list[Any]:
    """Open the real runtime, poll every source at both stages, send everything."""
    settings = Settings(
        config_dir=config_dir,
        database_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        data_dir=tmp_path / "data",
        http_bind="",
    )
    timing = Timing(jitter=0.0, first_spread_s=0.0, idle_s=0.05)
    runtime = await Runtime.open(settings, load_config(config_dir), timing=timing)
    try:
        await runtime._start_sinks()
        assert set(runtime.dispatcher.sinks) == {"matrix", "discord", "discord_webhook"}
        for stage in (0, 1):
            world.stage = stage
            for source_id in runtime.config.sources:
                report = await runtime.scheduler.poll_now(source_id)
                assert report.ok, f"{source_id}: {report.error}"
        await runtime.dispatcher.drain(timeout_s=500)
        return await runtime.store.list_deliveries(limit=100_000)
    finally:
        await runtime.close()
