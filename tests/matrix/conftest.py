"""Fixtures of the Matrix suite: one real Synapse per session, users, the bot sink."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.chat.commands import CommandService
from alerts.config import Settings
from alerts.platforms.matrix import MatrixSettings, MatrixSink
from alerts.sinks import SinkContext
from alerts.store.sqlite import SqliteStore

from .helpers import Peer
from .synapse_server import Account, SynapseServer, synapse_python

TOPICS = {"news": "Press coverage", "contracts": "Federal contract awards"}
_names = itertools.count()


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    python = synapse_python()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("Synapse is not installed: run scripts/setup-synapse")
        pytest.skip("Synapse is not installed (scripts/setup-synapse)")
    server = SynapseServer(tmp_path_factory.mktemp("synapse"), python=python)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_names)}"


@pytest.fixture
def register(synapse: SynapseServer) -> Callable[[str], Account]:
    return lambda prefix: synapse.register(unique(prefix))


@pytest.fixture
def bot_account(register: Callable[[str], Account]) -> Account:
    return register("bot")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield opened
    await opened.close()


@pytest.fixture
async def peers(
    synapse: SynapseServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Peer]]]:
    opened: list[Peer] = []

    async def make(prefix: str, *, e2e: bool = False) -> Peer:
        account = synapse.register(unique(prefix))
        peer = Peer(synapse, account, tmp_path / f"peer-{account.device_id}" if e2e else None)
        opened.append(peer)
        await peer.sync()
        return peer

    yield make
    for peer in opened:
        await peer.close()


def bot_settings(synapse: SynapseServer, account: Account, **extra: Any) -> MatrixSettings:
    return MatrixSettings(
        homeserver=synapse.url,
        user=account.user_id,
        password=account.password,
        sync_timeout_s=1.0,
        **extra,
    )


@pytest.fixture
async def make_sink(
    synapse: SynapseServer, bot_account: Account, store: SqliteStore, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[MatrixSink]]]:
    opened: list[MatrixSink] = []

    async def make(**extra: Any) -> MatrixSink:
        context = SinkContext(settings=Settings(), store=store, data_dir=str(tmp_path / "data"))
        sink = MatrixSink(context=context, settings=bot_settings(synapse, bot_account, **extra))
        await sink.start()
        opened.append(sink)
        return sink

    yield make
    for sink in opened:
        await sink.close()


@pytest.fixture
def commands(store: SqliteStore) -> CommandService:
    return CommandService(store=store, topics=TOPICS)
