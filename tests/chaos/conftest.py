"""Fixtures of the chaos test: its own Synapse, the fake Discord, a feed server."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "discord"))

from discord_openapi import OpenApi, load, locate_spec
from fake_discord import FakeDiscord, Limits

from ..matrix.synapse_server import SynapseServer, synapse_python
from ..support import FeedServer, serving


@pytest.fixture(scope="session")
def chaos_synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    python = synapse_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("Synapse is not installed: run scripts/setup-synapse")
        pytest.skip("Synapse is not installed (scripts/setup-synapse)")
    server = SynapseServer(tmp_path_factory.mktemp("chaos-synapse"), python=python)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def chaos_discord() -> AsyncIterator[FakeDiscord]:
    """The fake Discord, checked against Discord's OpenAPI spec, rate limits out of
    the way (the kills are the subject here) and a nonce remembered for 2 s instead of
    Discord's "few minutes", so that retries come after Discord has forgotten it."""
    path = locate_spec()
    if path is None:
        pytest.skip("Discord's OpenAPI spec is absent (../shared/specs/discord-openapi.json)")
    api: OpenApi = load(path)
    unlimited = Limits(
        global_per_s=100_000,
        messages_per_channel=100_000,
        webhook_per_id=100_000,
        edits_per_channel=100_000,
        webhook_edits_per_id=100_000,
        history_per_channel=100_000,
        nonce_window_s=2.0,
    )
    fake = FakeDiscord(api=api, limits=unlimited)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()
    assert fake.violations == [], "\n".join(fake.violations)


@pytest.fixture
async def chaos_feeds() -> AsyncIterator[FeedServer]:
    async with serving(FeedServer()) as server:
        yield server
