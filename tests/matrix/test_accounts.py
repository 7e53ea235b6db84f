"""One process at a time owns the bot's device; the next owner continues it (issue 11).

Each sink here stands for a process: its own data directory, one shared store. The
device id and the key store live in the store (``accounts``), so a failover logs in
on the same device, reads the encrypted room it wrote to, and a retry whose outcome is
unknown is found in the room's history instead of being sent again.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path
from typing import Any

import nio
import pytest

from alerts.accounts import AccountLost
from alerts.config import Settings
from alerts.model import utcnow
from alerts.platforms.matrix import MatrixSink
from alerts.platforms.matrix.render import MARKER
from alerts.platforms.matrix.session import txn_id_for
from alerts.sinks import SinkContext
from alerts.store.sqlite import SqliteStore

from .conftest import bot_settings
from .helpers import Peer
from .synapse_server import Account, SynapseServer
from .test_sink import by_id, delivery_to, joined_room

pytestmark = [pytest.mark.synapse, pytest.mark.slow]


def process(
    synapse: SynapseServer, bot: Account, store: SqliteStore, data: Path, **extra: Any
) -> MatrixSink:
    """A sink as one ``alerts`` process would run it (its own data directory)."""
    context = SinkContext(settings=Settings(), store=store, data_dir=str(data))
    return MatrixSink(context=context, settings=bot_settings(synapse, bot, **extra))


def bot_devices(synapse: SynapseServer, bot: Account) -> set[str]:
    """The bot's devices, less the one its registration made."""
    found = synapse.request("GET", "/_matrix/client/v3/devices", token=bot.access_token)
    return {d["device_id"] for d in found["devices"]} - {bot.device_id}


async def test_a_failover_continues_the_device_and_reads_its_encrypted_room(
    synapse: SynapseServer,
    bot_account: Account,
    store: SqliteStore,
    peers: Any,
    tmp_path: Path,
) -> None:
    alice: Peer = await peers("alice", e2e=True)
    first = process(synapse, bot_account, store, tmp_path / "r1")
    await first.start()
    second = process(synapse, bot_account, store, tmp_path / "r2")
    with pytest.raises(AccountLost, match="in use"):  # one owner at a time
        await second.start()
    try:
        room_id = await joined_room(alice, first, encrypted=True)
        delivery = delivery_to(room_id, key="failover-1")
        sent = await first.send(delivery)
        device = first.session.device_id
    finally:
        await first.close()  # the owner stops: its lease is given back

    await second.start()
    try:
        assert second.session.device_id == device  # never a new device
        retried = dataclasses.replace(delivery, tried_at=utcnow() - timedelta(hours=1))
        found = await second.session.find_marked(
            room_id, txn_id_for("failover-1"), since=utcnow() - timedelta(hours=1)
        )
        assert found == sent  # the new owner decrypts what the last one sent
        assert await second.send(retried) == sent
        later = await second.send(delivery_to(room_id, key="failover-2", id=2))
    finally:
        await second.close()
    assert bot_devices(synapse, bot_account) == {device}
    for event_id in (sent, later):
        seen = await alice.wait_for(room_id, by_id(event_id))
        assert isinstance(seen, nio.RoomMessageNotice), seen  # decrypted by the reader
    assert len(alice.messages(room_id, bot_account.user_id)) == 2


async def test_a_send_the_homeserver_forgot_is_found_by_its_marker(
    synapse: SynapseServer,
    bot_account: Account,
    store: SqliteStore,
    peers: Any,
    tmp_path: Path,
) -> None:
    """Synapse deduplicates a transaction id only for a while and only on its device:
    here the retry comes from a new device (the store's device row was lost), which
    Synapse would take as a new message. Reconciliation finds the first one."""
    alice: Peer = await peers("alice")
    first = process(synapse, bot_account, store, tmp_path / "r1")
    await first.start()
    try:
        room_id = await joined_room(alice, first)
        delivery = delivery_to(room_id, key="forgot-1")
        sent = await first.send(delivery)
    finally:
        await first.close()
    await store._db.execute("UPDATE accounts SET device_id = NULL, keys = NULL")

    later = process(synapse, bot_account, store, tmp_path / "r2", txn_window_s=0)
    await later.start()
    try:
        retried = dataclasses.replace(delivery, tried_at=utcnow() - timedelta(seconds=5))
        assert await later.send(retried) == sent
        again = await later.send(delivery)  # no earlier try known: sent, as a new device
    finally:
        await later.close()
    assert again != sent  # what reconciliation prevents
    await alice.sync()
    bodies = alice.messages(room_id, bot_account.user_id)
    assert [e.event_id for e in bodies] == [sent, again]
    assert bodies[0].source["content"][MARKER] == txn_id_for("forgot-1")
