"""The long chaos run: ``--kills`` kill -9s of ``alerts run`` on SQLite, then on three
PostgreSQL replicas, against a real Synapse (one encrypted room) and the fake Discord
(a bot channel and a webhook), with updates that edit earlier messages.

It is the run of ``tests/chaos`` (same world, ``tests/chaos/world.py``) with more
kills; it prints, per backend, what the rooms show afterwards. Its figures are in
``docs/benchmarks.md``.

Run: ``python -m bench.chaos`` (PostgreSQL on 127.0.0.1:5432 with trust auth, Synapse
installed by ``scripts/test-services``, Discord's OpenAPI spec next to the repository).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "discord"))

from discord_openapi import load, locate_spec  # noqa: E402
from fake_discord import FakeDiscord, Limits  # noqa: E402
from tests.chaos.world import Chaos, make_rooms  # noqa: E402
from tests.matrix.synapse_server import SynapseServer, synapse_python  # noqa: E402
from tests.support import FeedServer, serving  # noqa: E402

from bench.pg import scratch_database  # noqa: E402


async def one_run(
    synapse: SynapseServer, root: Path, db_url: str, replicas: int, kills: int, seed: int
) -> None:
    spec = locate_spec()
    if spec is None:
        raise SystemExit("bench.chaos: Discord's OpenAPI spec is absent")
    fake = FakeDiscord(
        api=load(spec),
        limits=Limits(
            global_per_s=100_000,
            messages_per_channel=100_000,
            webhook_per_id=100_000,
            edits_per_channel=100_000,
            webhook_edits_per_id=100_000,
            history_per_channel=100_000,
            nonce_window_s=2.0,
        ),
    )
    base = await fake.start()
    try:
        async with serving(FeedServer()) as feeds:
            rooms = await make_rooms(synapse, fake, f"bench{replicas}x{seed}", root / "reader")
            chaos = Chaos(
                root=root,
                db_url=db_url,
                replicas=replicas,
                kills=kills,
                synapse=synapse,
                fake=fake,
                feeds=feeds,
                rooms=rooms,
                fake_base=base,
                seed=seed,
            )
            started = time.monotonic()
            try:
                await chaos.run()
                verdict = await chaos.verdict()
            finally:
                await rooms.reader.close()
    finally:
        await fake.close()
    backend = "SQLite, 1 process" if replicas == 1 else f"PostgreSQL, {replicas} replicas"
    print(
        f"{backend}: {verdict.kills} kills in {time.monotonic() - started:.0f} s, "
        f"{verdict.deliveries} deliveries ({chaos.rounds} rounds); lost {verdict.lost}, "
        f"dead {verdict.dead}; Matrix duplicates {verdict.matrix_duplicates}, missing "
        f"{verdict.matrix_missing}, undecryptable {verdict.undecryptable}, devices "
        f"{verdict.devices}; Discord bot duplicates {verdict.bot_duplicates}, missing "
        f"{verdict.bot_missing}; webhook duplicates {verdict.webhook_duplicates} "
        f"(at most {verdict.kills}), missing {verdict.webhook_missing}; stories wrong: "
        f"{len(verdict.edits_wrong)}; Discord fake spec violations: {len(fake.violations)}"
    )
    for problem in verdict.problems():
        print(f"  PROBLEM: {problem}")


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--keep", type=Path, help="keep the logs and files in this directory")
    args = parser.parse_args(argv)
    python = synapse_python()
    if python is None:
        raise SystemExit("bench.chaos: Synapse is not installed (scripts/test-services)")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        synapse = SynapseServer(root / "synapse", python=python)
        synapse.start()
        try:
            sqlite_root = root / "sqlite"
            sqlite_root.mkdir()
            await one_run(
                synapse,
                sqlite_root,
                f"sqlite:///{sqlite_root / 'alerts.db'}",
                1,
                args.kills,
                args.seed,
            )
            pg_root = root / "postgres"
            pg_root.mkdir()
            async with scratch_database() as url:
                await one_run(synapse, pg_root, url, 3, args.kills, args.seed)
        finally:
            synapse.stop()


if __name__ == "__main__":
    asyncio.run(main())
