"""The chaos world: real ``alerts run`` processes killed with SIGKILL, real peers.

``Chaos.run`` starts ``replicas`` processes of the service (one on SQLite, or several
sharing PostgreSQL), feeds them new items and retitled ones (updates that edit earlier
messages) and SIGKILLs a process ``kills`` times: half of the kills at a random moment,
half once the victim holds leased deliveries (mid-send, between a send and its
record). Each killed process is restarted at once. The destinations are one encrypted
room on a real Synapse, a Discord channel through the bot and one through a webhook,
both on the protocol-faithful fake Discord. ``Chaos.verdict`` then reads every room
back and counts what was lost, shown twice, or could not be decrypted.

Shared by ``tests/chaos`` (a short run in the suite) and ``bench/chaos.py`` (the long
run whose figures are in ``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nio
from fake_discord import FakeDiscord

from alerts.model import utcnow
from alerts.platforms.discord.render import has_marker
from alerts.platforms.matrix.render import MARKER
from alerts.platforms.matrix.session import txn_id_for
from alerts.store import open_store
from alerts.store.codec import idempotency_key

from ..matrix.helpers import Peer
from ..matrix.synapse_server import Account, SynapseServer
from ..support import FeedServer, write_config

REPO = Path(__file__).resolve().parents[2]
LAUNCH = Path(__file__).with_name("launch.py")
FEEDS = ("wire", "desk")
STORY = "story"  # the item of each feed that is retitled every round: its updates edit
LEASE = {"poll_lease": "5s", "delivery_lease": "4s", "account_lease": "3s"}


@dataclass
class Verdict:
    """What the rooms show once everything settled."""

    kills: int
    deliveries: int
    lost: int = 0
    dead: int = 0
    matrix_duplicates: int = 0
    matrix_missing: int = 0
    undecryptable: int = 0
    bot_duplicates: int = 0
    bot_missing: int = 0
    webhook_duplicates: int = 0
    webhook_missing: int = 0
    edits_wrong: list[str] = field(default_factory=list)
    devices: int = 0
    exits: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Every broken promise, in words (empty: the run kept them all)."""
        found = [
            f"{name} = {value}"
            for name, value in (
                ("lost", self.lost),
                ("dead", self.dead),
                ("matrix duplicates", self.matrix_duplicates),
                ("matrix missing", self.matrix_missing),
                ("undecryptable", self.undecryptable),
                ("discord bot duplicates", self.bot_duplicates),
                ("discord bot missing", self.bot_missing),
                ("webhook missing", self.webhook_missing),
            )
            if value
        ]
        if self.webhook_duplicates > self.kills:
            found.append(f"webhook duplicates {self.webhook_duplicates} > {self.kills} kills")
        if self.devices != 1:
            found.append(f"the bot used {self.devices} devices")
        return found + self.edits_wrong + self.exits


@dataclass
class Rooms:
    """Where alerts go: the room, the bot's channel, the webhook's channel."""

    room_id: str
    bot: Account
    reader: Peer
    channel: int
    hook_channel: int
    webhook_url: str


async def make_rooms(synapse: SynapseServer, fake: FakeDiscord, prefix: str, keys: Path) -> Rooms:
    """An encrypted room with a reader (end-to-end, its keys under ``keys``) and the
    bot, and two Discord channels (the bot's, and a webhook's)."""
    bot = synapse.register(f"{prefix}bot")
    reader = Peer(synapse, synapse.register(f"{prefix}reader"), keys)
    await reader.sync()
    room_id = await reader.create_room(encrypted=True, invite=[bot.user_id])
    path = f"/_matrix/client/v3/join/{urllib.parse.quote(room_id)}"
    synapse.request("POST", path, {}, token=bot.access_token)
    guild = fake.add_guild()
    channel, hook_channel = fake.add_channel(guild, "alerts"), fake.add_channel(guild, "hooks")
    return Rooms(room_id, bot, reader, channel, hook_channel, fake.add_webhook(hook_channel))


@dataclass
class Chaos:
    """One run; see the module docstring."""

    root: Path
    db_url: str
    replicas: int
    kills: int
    synapse: SynapseServer
    fake: FakeDiscord
    feeds: FeedServer
    rooms: Rooms
    seed: int = 20261201
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)
    rounds: int = 0
    killed: int = 0
    exits: list[str] = field(default_factory=list)
    log: Callable[[str], None] = lambda _line: None

    # --- set-up ------------------------------------------------------------------

    def config(self) -> Path:
        urls = {name: self.feeds.feed(name, STORY, f"{name}-base") for name in FEEDS}
        extra = (
            f'\n[destinations.room]\nsink = "matrix"\ntarget = "{self.rooms.room_id}"\n\n'
            f'[destinations.bot]\nsink = "discord"\ntarget = "{self.rooms.channel}"\n\n'
            '[destinations.hook]\nsink = "discord_webhook"\ntarget = "default"\n\n'
            + "".join(
                f'[[routes]]\ndestination = "{dest}"\ntopics = ["news"]\n\n'
                for dest in ("room", "bot", "hook")
            )
        )
        config = write_config(self.root, urls, extra=extra, interval="1h")
        alerts_toml = config / "alerts.toml"
        leases = "".join(f'{key} = "{value}"\n' for key, value in LEASE.items())
        alerts_toml.write_text(
            alerts_toml.read_text().replace("[service]\n", f"[service]\n{leases}", 1)
        )
        return config

    def env(self, config: Path, n: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTS_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "tests" / "discord")]),
            CHAOS_DISCORD_BASE=self.fake_base,
            ALERTS_CONFIG_DIR=str(config),
            ALERTS_DATABASE_URL=self.db_url,
            ALERTS_DATA_DIR=str(self.root / f"data-{n}"),
            ALERTS_HTTP_BIND="",
            ALERTS_INSTANCE_NAME=f"r{n}",
            ALERTS_LOG_LEVEL="INFO",
            ALERTS_MATRIX_HOMESERVER=self.synapse.url,
            ALERTS_MATRIX_USER=self.rooms.bot.user_id,
            ALERTS_MATRIX_PASSWORD=self.rooms.bot.password,
            ALERTS_MATRIX_SYNC_TIMEOUT_S="1",
            ALERTS_MATRIX_TXN_WINDOW_S="0",  # every retry reconciles first
            ALERTS_DISCORD_TOKEN=self.fake.token,
            ALERTS_DISCORD_WEBHOOK_URL=self.rooms.webhook_url,
            ALERTS_DISCORD_NONCE_WINDOW_S="0",
            ALERTS_DISCORD_GLOBAL_RATE_PER_S="100000",
            ALERTS_DISCORD_GUILD_READY_TIMEOUT_S="0.1",
        )
        return env

    fake_base: str = ""

    async def start(self, n: int) -> asyncio.subprocess.Process:
        with (self.root / f"r{n}.log").open("ab") as out:
            return await asyncio.create_subprocess_exec(
                sys.executable, str(LAUNCH), "run", env=self._envs[n], stdout=out, stderr=out
            )

    _envs: dict[int, dict[str, str]] = field(default_factory=dict)

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.root.glob("r*.log"))
        )

    # --- the run -------------------------------------------------------------------

    async def run(self) -> None:
        rng = random.Random(self.seed)
        config = self.config()
        self._envs = {n: self.env(config, n) for n in range(self.replicas)}
        self.procs = [await self.start(n) for n in range(self.replicas)]
        try:
            await until(self._all_running, 60, "the replicas to start", self.logs)
            await self.force_polls()  # the baseline: no alert
            await until(self._baselined, 60, "the baseline", self.logs)
            for kill in range(self.kills):
                self.next_round(rng)
                await self.force_polls()
                victim = rng.randrange(self.replicas)
                if kill % 2:
                    await self._until_leased(victim, 4.0)
                    await asyncio.sleep(rng.uniform(0.0, 0.05))
                else:
                    await asyncio.sleep(rng.uniform(0.0, 1.5))
                await self.kill(victim)
                await asyncio.sleep(rng.uniform(0.0, 0.5))
            self.next_round(rng)
            await self.force_polls()
            await until(self._settled, 180, "the outbox to drain", self.logs)
        finally:
            await self.stop()

    def next_round(self, rng: random.Random) -> None:
        """New items in one feed, and the story of every feed retitled (an update)."""
        self.rounds += 1
        name = rng.choice(FEEDS)
        self.feeds.add(name, *(f"{name}-{self.rounds}-{i}" for i in range(2)))
        for feed in FEEDS:
            items = self.feeds.feeds[feed].items
            items[0] = (STORY, f"{feed} story, revision {self.rounds}")

    async def kill(self, n: int) -> None:
        proc = self.procs[n]
        if proc.returncode is not None:  # it stopped by itself: a finding, not a kill
            self.exits.append(f"r{n} exited by itself with status {proc.returncode}")
        else:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            self.killed += 1
        self.log(f"kill {self.killed}: r{n}")
        self.procs[n] = await self.start(n)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    # --- looking at the store ---------------------------------------------------------

    async def query(self, sql: str, *args: Any) -> list[Any]:
        store = await open_store(self.db_url)
        try:
            return await store._db.fetch(sql, *args)
        finally:
            await store.close()

    async def force_polls(self) -> None:
        store = await open_store(self.db_url)
        try:
            for name in FEEDS:
                await store.set_next_due(name, utcnow())
        finally:
            await store.close()

    def _all_running(self) -> bool:
        return (
            all(
                "alerts running" in (self.root / f"r{n}.log").read_text(errors="replace")
                for n in range(self.replicas)
                if (self.root / f"r{n}.log").exists()
            )
            and len(list(self.root.glob("r*.log"))) == self.replicas
        )

    async def _baselined(self) -> bool:
        rows = await self.query("SELECT count(*) FROM sources WHERE baselined")
        return bool(rows[0][0] == len(FEEDS))

    async def _until_leased(self, victim: int, timeout_s: float) -> None:
        with contextlib.suppress(AssertionError):
            await until(lambda: self._holds_deliveries(f"r{victim}:%"), timeout_s, "a lease", None)

    async def _holds_deliveries(self, pattern: str) -> bool:
        rows = await self.query(
            "SELECT count(*) FROM deliveries WHERE state = 'pending' AND lease_owner LIKE $1",
            pattern,
        )
        return bool(rows[0][0])

    async def _settled(self) -> bool:
        pending = await self.query("SELECT count(*) FROM deliveries WHERE state = 'pending'")
        if pending[0][0]:
            return False
        rows = await self.query("SELECT source_id, snapshot FROM items WHERE key = $1", STORY)
        want = f"revision {self.rounds}"
        return len(rows) == len(FEEDS) and all(want in str(r["snapshot"]) for r in rows)

    # --- the verdict -------------------------------------------------------------------

    async def verdict(self) -> Verdict:
        install = (await self.query("SELECT value FROM meta WHERE key = 'install_id'"))[0][0]
        rows = await self.query(
            "SELECT d.id, d.destination_id, d.state, e.kind, e.source_id, e.key "
            "FROM deliveries d JOIN events e ON e.id = d.event_id ORDER BY d.id"
        )
        verdict = Verdict(kills=self.killed, deliveries=len(rows), exits=list(self.exits))
        verdict.dead = sum(1 for r in rows if r["state"] == "dead")
        verdict.lost = sum(1 for r in rows if r["state"] == "pending")
        verdict.lost += self._unalerted(rows)
        keys = {r["id"]: idempotency_key(str(install), r["id"]) for r in rows}
        sent = [r for r in rows if r["state"] == "sent"]
        await self._matrix(
            verdict, [(r, keys[r["id"]]) for r in sent if r["destination_id"] == "room"]
        )
        self._discord(verdict, [(r, keys[r["id"]]) for r in sent if r["destination_id"] == "bot"])
        self._webhook(verdict, [(r, keys[r["id"]]) for r in sent if r["destination_id"] == "hook"])
        verdict.devices = len(self._bot_devices())
        return verdict

    def _unalerted(self, rows: list[Any]) -> int:
        """Items added after the baseline with no ``new`` delivery to some room."""
        delivered = {
            (r["source_id"], r["key"], r["destination_id"]) for r in rows if r["kind"] == "new"
        }
        missing = 0
        for name, state in self.feeds.feeds.items():
            for key, _title in state.items:
                if key in (STORY, f"{name}-base"):
                    continue
                missing += sum(
                    (name, key, dest) not in delivered for dest in ("room", "bot", "hook")
                )
        return missing

    def _bot_devices(self) -> set[str]:
        bot = self.rooms.bot
        found = self.synapse.request("GET", "/_matrix/client/v3/devices", token=bot.access_token)
        return {d["device_id"] for d in found["devices"]} - {bot.device_id}

    async def _matrix(self, verdict: Verdict, sent: list[tuple[Any, str]]) -> None:
        events = await read_room(self.rooms.reader, self.rooms.room_id, self.rooms.bot.user_id)
        verdict.undecryptable = sum(isinstance(e, nio.MegolmEvent) for e in events)
        markers = Counter(
            str(e.source.get("content", {}).get(MARKER))
            for e in events
            if not isinstance(e, nio.MegolmEvent)
        )
        verdict.matrix_duplicates = sum(n - 1 for n in markers.values() if n > 1)
        for _row, key in sent:
            if not any(txn_id_for(key + suffix) in markers for suffix in ("", ".edit", ".reply")):
                verdict.matrix_missing += 1
        for feed in FEEDS:
            latest = _latest_matrix_title(events, feed)
            if latest is None or f"revision {self.rounds}" not in latest:
                verdict.edits_wrong.append(f"matrix: the {feed} story shows {latest!r}")

    def _discord(self, verdict: Verdict, sent: list[tuple[Any, str]]) -> None:
        messages = [m.to_json() for m in self.fake.messages_in(self.rooms.channel)]
        refs = Counter(_ref(m) for m in messages)
        verdict.bot_duplicates = sum(n - 1 for ref, n in refs.items() if ref and n > 1)
        posted = {r for r in refs if r}
        for row, key in sent:
            if row["kind"] == "new" and key not in posted:
                verdict.bot_missing += 1
        self._stories_shown(verdict, messages, "discord bot")

    def _webhook(self, verdict: Verdict, sent: list[tuple[Any, str]]) -> None:
        messages = [m.to_json() for m in self.fake.messages_in(self.rooms.hook_channel)]
        refs = Counter(_ref(m) for m in messages)
        verdict.webhook_duplicates = sum(n - 1 for ref, n in refs.items() if ref and n > 1)
        for row, key in sent:
            if row["kind"] == "new" and key not in refs:
                verdict.webhook_missing += 1
        self._stories_shown(verdict, messages, "webhook")

    def _stories_shown(self, verdict: Verdict, messages: list[dict[str, Any]], where: str) -> None:
        for feed in FEEDS:
            titles = [
                str(e.get("title", ""))
                for m in messages
                for e in m.get("embeds", [])
                if f"{feed} story" in str(e.get("title", ""))
            ]
            if not any(f"revision {self.rounds}" in t for t in titles):
                verdict.edits_wrong.append(f"{where}: the {feed} story shows {titles[-1:]}")


def _ref(message: dict[str, Any]) -> str | None:
    for embed in message.get("embeds") or ():
        footer = str((embed.get("footer") or {}).get("text") or "")
        if " · ref " in footer:
            ref = footer.rsplit(" · ref ", 1)[1]
            return ref if has_marker(message, ref) else None
    return None


def _latest_matrix_title(events: list[Any], feed: str) -> str | None:
    latest = None
    for event in events:  # oldest first: the last edit or message of the story wins
        content = getattr(event, "source", {}).get("content", {})
        body = str(content.get("m.new_content", content).get("body", ""))
        if f"{feed} story" in body:
            latest = body.splitlines()[0]
    return latest


async def read_room(reader: Peer, room_id: str, sender: str) -> list[Any]:
    """Every event ``sender`` sent to the room, oldest first, decrypted where the
    reader can (``MegolmEvent`` where it cannot, after asking for the keys)."""
    for _ in range(3):  # to-device room keys first
        await reader.sync(timeout_ms=500)
    client = reader.client
    events: list[Any] = []
    start: str | None = None
    while True:
        resp = await client.room_messages(room_id, start=start, limit=100)
        assert isinstance(resp, nio.RoomMessagesResponse), resp
        events += [e for e in resp.chunk if getattr(e, "sender", None) == sender]
        if not resp.chunk or not resp.end or resp.end == start:
            break
        start = resp.end
    events.reverse()
    return [e for e in events if isinstance(e, nio.RoomMessage | nio.MegolmEvent)]


async def until(
    predicate: Callable[[], Any],
    timeout_s: float,
    what: str,
    logs: Callable[[], str] | None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs() if logs else ''}")
