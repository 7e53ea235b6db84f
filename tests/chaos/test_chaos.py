"""kill -9 at random moments and mid-send, on SQLite and on three PostgreSQL replicas
(issue 11 "Done when", issue 15 "the chaos test covers edits").

Real ``alerts run`` processes, a real Synapse with one encrypted room, the Discord fake
with a bot channel and a webhook; new items and retitled ones (whose updates edit the
earlier messages). After the kills, every alert is in every room exactly once: 0 lost,
0 duplicates in Matrix and in the bot's channel, 0 undecryptable, at most one duplicate
per kill through the webhook, every story showing its latest revision, one Matrix
device. The long run (50 kills each) is ``python -m bench.chaos``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_discord import FakeDiscord

from ..matrix.synapse_server import SynapseServer
from ..pg_support import fresh_database
from ..support import FeedServer
from .world import Chaos, make_rooms

pytestmark = [pytest.mark.slow, pytest.mark.synapse]

KILLS = 10


async def _chaos(
    tmp_path: Path,
    db_url: str,
    replicas: int,
    synapse: SynapseServer,
    fake: FakeDiscord,
    feeds: FeedServer,
) -> None:
    rooms = await make_rooms(
        synapse, fake, f"chaos{replicas}x{tmp_path.name[-6:]}", tmp_path / "reader"
    )
    fake_base = fake.base_url
    chaos = Chaos(
        root=tmp_path,
        db_url=db_url,
        replicas=replicas,
        kills=KILLS,
        synapse=synapse,
        fake=fake,
        feeds=feeds,
        rooms=rooms,
        fake_base=fake_base,
    )
    try:
        await chaos.run()
        verdict = await chaos.verdict()
    finally:
        await rooms.reader.close()
    assert verdict.kills == KILLS
    assert verdict.deliveries >= 3 * 2 * KILLS  # every round's items reached three rooms
    assert verdict.problems() == [], f"{verdict}\n{chaos.logs()}"


@pytest.mark.timeout(300)
async def test_kill_9_on_sqlite(
    tmp_path: Path,
    chaos_synapse: SynapseServer,
    chaos_discord: FakeDiscord,
    chaos_feeds: FeedServer,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'alerts.db'}"
    await _chaos(tmp_path, db_url, 1, chaos_synapse, chaos_discord, chaos_feeds)


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_kill_9_on_three_postgres_replicas(
    tmp_path: Path,
    chaos_synapse: SynapseServer,
    chaos_discord: FakeDiscord,
    chaos_feeds: FeedServer,
) -> None:
    async with fresh_database() as db_url:
        await _chaos(tmp_path, db_url, 3, chaos_synapse, chaos_discord, chaos_feeds)
