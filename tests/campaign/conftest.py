"""Fixtures of the campaign adapter tests: a scripted loopback server and the real HttpClient."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from alerts.fixture_server import FixtureServer
from alerts.sources.http import HttpClient

from ..support import loopback_http


@pytest.fixture
async def server() -> AsyncIterator[FixtureServer]:
    async with FixtureServer() as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = loopback_http()
    yield client
    await client.close()
