"""Test peers for the Matrix suite: human users driven with matrix-nio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import nio

from .synapse_server import Account, SynapseServer


class Peer:
    """A human Matrix user (room creator, moderator, reader) on the test homeserver."""

    def __init__(self, server: SynapseServer, account: Account, store_dir: Path | None = None):
        self.account = account
        self.user_id = account.user_id
        self.server = server
        config = nio.AsyncClientConfig(
            encryption_enabled=store_dir is not None, store_sync_tokens=False
        )
        self.client = nio.AsyncClient(
            server.url, account.user_id, store_path=str(store_dir or ""), config=config
        )
        if store_dir is not None:
            store_dir.mkdir(parents=True, exist_ok=True)
        self.client.restore_login(account.user_id, account.device_id, account.access_token)
        self.events: dict[str, list[Any]] = {}

    async def close(self) -> None:
        await self.client.close()

    def highlights(self) -> list[Any]:
        """What the homeserver counts as notifying this user by name or ``@room``."""
        found = self.server.request(
            "GET",
            "/_matrix/client/v3/notifications?only=highlight",
            token=self.account.access_token,
        )
        return list(found["notifications"])

    async def sync(self, timeout_ms: int = 0) -> nio.SyncResponse:
        resp = await self.client.sync(timeout=timeout_ms)
        assert isinstance(resp, nio.SyncResponse), resp
        for room_id, info in resp.rooms.join.items():
            self.events.setdefault(room_id, []).extend(info.timeline.events)
        for room_id, info in resp.rooms.leave.items():
            self.events.setdefault(room_id, []).extend(info.timeline.events)
        if self.client.olm is not None:
            if self.client.should_upload_keys:
                await self.client.keys_upload()
            if self.client.should_query_keys:
                await self.client.keys_query()
            if self.client.should_claim_keys:
                await self.client.keys_claim(self.client.get_users_for_key_claiming())
            await self.client.send_to_device_messages()
        return resp

    async def create_room(
        self,
        *,
        encrypted: bool = False,
        invite: Iterable[str] = (),
        power: dict[str, int] | None = None,
        is_direct: bool = False,
        room_version: str | None = None,
    ) -> str:
        initial_state = []
        if encrypted:
            initial_state.append(
                {"type": "m.room.encryption", "state_key": "",
                 "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
            )  # fmt: skip
        override = None
        if power is not None:
            override = {"users": dict(power)}
        resp = await self.client.room_create(
            invite=list(invite),
            initial_state=initial_state,
            power_level_override=override,
            is_direct=is_direct,
            room_version=room_version,
        )
        assert isinstance(resp, nio.RoomCreateResponse), resp
        await self.sync()
        return str(resp.room_id)

    async def say(self, room_id: str, text: str) -> str:
        resp = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": text},
            ignore_unverified_devices=True,
        )  # fmt: skip
        assert isinstance(resp, nio.RoomSendResponse), resp
        return str(resp.event_id)

    async def wait_for(
        self, room_id: str, predicate: Callable[[Any], bool], *, timeout_s: float = 15.0
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events.get(room_id, []):
                if predicate(event):
                    return event
            if time.monotonic() > deadline:
                seen = [type(e).__name__ for e in self.events.get(room_id, [])]
                raise AssertionError(f"no matching event in {room_id} within {timeout_s} s: {seen}")
            await self.sync(timeout_ms=500)

    async def wait_until(self, check: Callable[[], Any], *, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not await _maybe_await(check()):
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await self.sync(timeout_ms=200)

    def messages(self, room_id: str, sender: str) -> list[Any]:
        return [
            e
            for e in self.events.get(room_id, [])
            if getattr(e, "sender", None) == sender
            and isinstance(e, nio.RoomMessage | nio.MegolmEvent)
        ]


async def _maybe_await(value: Any) -> Any:
    if asyncio.iscoroutine(value):
        return await value
    return value


def replying_to(event_id: str) -> Callable[[Any], bool]:
    def match(event: Any) -> bool:
        source = getattr(event, "source", {}) or {}
        relates = source.get("content", {}).get("m.relates_to", {})
        return bool(relates.get("m.in_reply_to", {}).get("event_id") == event_id)

    return match
