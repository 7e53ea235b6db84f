"""Fixtures: the real discord.py pointed at the local fake Discord."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yarl
from discord_helpers import TOPICS
from discord_openapi import OpenApi, load, locate_spec
from fake_discord import FakeDiscord, Limits

from alerts.chat.commands import CommandService
from alerts.platforms.discord import DiscordSettings, DiscordSink
from alerts.sinks import SinkContext
from alerts.store import Store
from alerts.store.sqlite import SqliteStore

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord.gateway
    import discord.http


@pytest.fixture(scope="session")
def openapi() -> OpenApi:
    path = locate_spec()
    if path is None:
        pytest.skip(
            "Discord's OpenAPI spec is absent (expected at ../shared/specs/discord-openapi.json "
            "next to the repository); the fake cannot be checked against Discord without it"
        )
    return load(path)


@pytest.fixture
def limits() -> Limits:
    return Limits()


@pytest.fixture
async def fake(
    openapi: OpenApi, limits: Limits, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(api=openapi, limits=limits)
    base = await server.start()
    monkeypatch.setattr(discord.http.Route, "BASE", base + "/api/v10")
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        yarl.URL(base.replace("http", "ws", 1) + "/gateway"),
    )
    try:
        yield server
    finally:
        await server.close()
    assert server.violations == [], "\n".join(server.violations)


@pytest.fixture
def guild(fake: FakeDiscord) -> int:
    return fake.add_guild()


@pytest.fixture
def channel(fake: FakeDiscord, guild: int) -> int:
    return fake.add_channel(guild, "alerts")


@pytest.fixture
def settings(fake: FakeDiscord) -> DiscordSettings:
    return DiscordSettings(token=fake.token, guild_ready_timeout_s=0.1)


@pytest.fixture
async def sink(settings: DiscordSettings, tmp_path: object) -> AsyncIterator[DiscordSink]:
    context = SinkContext(settings=None, store=None, data_dir=str(tmp_path))  # type: ignore[arg-type]
    bot = DiscordSink(context=context, settings=settings)
    await bot.start()
    try:
        yield bot
    finally:
        await bot.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def service(store: Store) -> CommandService:
    return CommandService(store=store, topics=TOPICS)


@pytest.fixture
async def bot(
    fake: FakeDiscord, guild: int, store: Store, service: CommandService, tmp_path: Path
) -> AsyncIterator[DiscordSink]:
    settings = DiscordSettings(token=fake.token, guilds=[guild], guild_ready_timeout_s=0.1)
    context = SinkContext(settings=None, store=store, data_dir=str(tmp_path))  # type: ignore[arg-type]
    sink = DiscordSink(context=context, settings=settings)
    await sink.start()
    listener = asyncio.create_task(sink.listen(service))
    try:
        await fake.wait_identified()
        await asyncio.wait_for(sink.session.client.wait_until_ready(), 10)
        yield sink
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await sink.close()
