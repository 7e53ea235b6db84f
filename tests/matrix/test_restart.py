"""Idempotency across a Synapse restart, and an offline homeserver (its own Synapse)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from alerts.config import Settings
from alerts.errors import PlatformUnavailable
from alerts.platforms.matrix import MatrixSink
from alerts.sinks import SinkContext
from alerts.store.sqlite import SqliteStore

from .conftest import bot_settings
from .helpers import Peer
from .synapse_server import SynapseServer, synapse_python
from .test_sink import by_id, delivery_to, joined_room

pytestmark = [pytest.mark.synapse, pytest.mark.slow]


@pytest.fixture
def own_synapse(tmp_path: Path) -> Iterator[SynapseServer]:
    python = synapse_python()
    if python is None:
        pytest.skip("Synapse is not installed (scripts/setup-synapse)")
    server = SynapseServer(tmp_path / "synapse", python=python)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield opened
    await opened.close()


async def test_retry_after_crash_and_synapse_restart_is_one_event(
    own_synapse: SynapseServer, store: SqliteStore, tmp_path: Path
) -> None:
    bot = own_synapse.register("bot")
    context = SinkContext(settings=Settings(), store=store, data_dir=str(tmp_path / "data"))
    alice = Peer(own_synapse, own_synapse.register("alice"))
    sink = MatrixSink(context=context, settings=bot_settings(own_synapse, bot))
    await sink.start()
    try:
        room_id = await joined_room(alice, sink)
        delivery = delivery_to(room_id, key="crash-1")
        first = await sink.send(delivery)

        own_synapse.stop()
        with pytest.raises(PlatformUnavailable):  # waited out, not counted
            await sink.send(delivery)
        await sink.close()  # the service "crashes" before recording the send
        own_synapse.start()

        sink = MatrixSink(context=context, settings=bot_settings(own_synapse, bot))
        await sink.start()
        again = await sink.send(delivery)
        later = await sink.send(delivery_to(room_id, key="crash-2"))

        assert again == first
        await alice.wait_for(room_id, by_id(later))
        assert [e.event_id for e in alice.messages(room_id, bot.user_id)] == [first, later]
    finally:
        await sink.close()
        await alice.close()
