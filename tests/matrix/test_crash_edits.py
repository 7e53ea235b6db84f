"""kill -9 during edits loses nothing and applies nothing twice (issue 15).

A real ``alerts run`` process polls a feed whose item keeps being retitled and posts
to a room on a real Synapse: the first update is a new message, every later one an
edit of it (``m.replace``). The test SIGKILLs the process at random moments (mid-poll,
mid-edit, between the edit and the outbox's record of it) and restarts it. At the end
every update committed is sent, the room has one message for the item, and it was
edited exactly once per later update: a retried edit reuses its transaction id on
the same device, which Synapse applies once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import urllib.parse
from pathlib import Path

import nio
import pytest

from alerts.model import DeliveryState, EventKind
from alerts.store.sqlite import SqliteStore

from ..support import feed_server, write_config
from ..test_crash import _env, _force_poll, _start, _wait_for
from .helpers import Peer
from .synapse_server import Account, SynapseServer

pytestmark = [pytest.mark.synapse, pytest.mark.slow]

ROUNDS = 8


async def bot_joins(synapse: SynapseServer, bot: Account, room_id: str) -> None:
    client = nio.AsyncClient(synapse.url, bot.user_id)
    client.restore_login(bot.user_id, bot.device_id, bot.access_token)
    try:
        joined = await client.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
    finally:
        await client.close()


def replacements(synapse: SynapseServer, reader: Peer, room_id: str, event_id: str) -> list[str]:
    path = (
        f"/_matrix/client/v1/rooms/{urllib.parse.quote(room_id)}/relations/"
        f"{urllib.parse.quote(event_id)}/m.replace?limit=100"
    )
    chunk = synapse.request("GET", path, token=reader.account.access_token)["chunk"]
    ordered = sorted(chunk, key=lambda e: e["origin_server_ts"])
    return [str(e["content"]["m.new_content"]["body"]) for e in ordered]


@pytest.mark.timeout(300)
async def test_kill_9_during_edits_loses_nothing_and_applies_nothing_twice(
    synapse: SynapseServer, peers: object, tmp_path: Path
) -> None:
    rng = random.Random(20261201)
    bot = synapse.register(f"crashbot{rng.randrange(10**6)}")
    alice: Peer = await peers("alice")  # type: ignore[operator]
    room_id = await alice.create_room(invite=[bot.user_id])
    await bot_joins(synapse, bot, room_id)
    log = tmp_path / "alerts.log"
    async with feed_server() as server:
        url = server.feed("wire", "story")
        extra = (
            f'\n[destinations.room]\nsink = "matrix"\ntarget = "{room_id}"\n\n'
            '[[routes]]\ndestination = "room"\ntopics = ["news"]\n'
        )
        env = _env(tmp_path, write_config(tmp_path, {"wire": url}, extra=extra))
        env.update(
            ALERTS_MATRIX_HOMESERVER=synapse.url,
            ALERTS_MATRIX_USER=bot.user_id,
            ALERTS_MATRIX_PASSWORD=bot.password,
            ALERTS_MATRIX_SYNC_TIMEOUT_S="1",
        )
        db_url = env["ALERTS_DATABASE_URL"]
        proc = await _start(env, log)
        try:
            assert await _wait_for(lambda: (tmp_path / "alerts.db").exists(), 30)
            await asyncio.sleep(1.0)
            await _force_poll(db_url, "wire")  # the baseline: no message
            assert await _wait_for(lambda: server.hits["wire"] >= 1, 30), log.read_text()
            await asyncio.sleep(0.5)
            for round_no in range(ROUNDS):
                server.feeds["wire"].items = [("story", f"Story revision {round_no}")]
                await _force_poll(db_url, "wire")
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                proc = await _start(env, log)
                await asyncio.sleep(rng.uniform(0.3, 1.0))
            await _force_poll(db_url, "wire")
            assert await _settled(db_url, 90), log.read_text()[-3000:]
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    updates = await _sent_updates(db_url)
    assert len(updates) >= 2, "the rounds produced too few updates to edit"
    await alice.sync()
    originals = [
        e.event_id
        for e in alice.messages(room_id, bot.user_id)
        if "m.relates_to" not in e.source.get("content", {})
    ]
    assert len(originals) == 1, originals  # one message for the item, whatever the kills
    edits = replacements(synapse, alice, room_id, originals[0])
    assert len(edits) == len(updates) - 1  # every later update edited it, exactly once
    assert len(set(edits)) == len(edits)
    assert edits[-1].startswith(f"Updated: Story revision {ROUNDS - 1}")


async def _settled(db_url: str, timeout_s: float) -> bool:
    """Wait until the last revision is committed and nothing is pending."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        store = await SqliteStore.open(db_url)
        try:
            stats = await store.outbox_stats()
            items = await store.load_items("wire", ["story"])
        finally:
            await store.close()
        last = items.get("story")
        if (
            stats.pending == 0
            and last is not None
            and last.snapshot.get("title") == (f"Story revision {ROUNDS - 1}")
        ):
            return stats.dead == 0
        await asyncio.sleep(0.5)
    return False


async def _sent_updates(db_url: str) -> list[int]:
    store = await SqliteStore.open(db_url)
    try:
        rows = await store.list_deliveries(limit=1000)
    finally:
        await store.close()
    assert all(r.state is DeliveryState.SENT for r in rows), [(r.id, r.state) for r in rows]
    return [r.id for r in rows if r.event.kind is EventKind.UPDATED and r.destination_id == "room"]
