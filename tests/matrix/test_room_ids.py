"""Rooms named every way the spec allows: room version 12 ids (no server part), older
ids and aliases, in config destinations, chat subscriptions and ``alerts check``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from alerts.errors import ConfigError
from alerts.model import Destination
from alerts.platforms.matrix import MatrixSink, target_problem

from .helpers import Peer
from .test_sink import by_id, delivery_to, joined_room

V12 = "!8lsnbjajp2zNhbE7J5vh7PqymoI6HQKrZoxGoI1ZUb8"


@pytest.mark.parametrize(
    "target",
    [
        V12,
        "!abc:example.org",
        "!abc:example.org:8448",
        "!abc:[2001:db8::1]:8448",
        "!abc:192.0.2.1",
        "#alerts:example.org",
        "#ice-watch.fr:matrix.example.org",
    ],
)
def test_every_room_id_form_of_the_spec_is_accepted(target: str) -> None:
    assert target_problem(target) is None
    MatrixSink.check_destination(Destination("d", "matrix", target))


@pytest.mark.parametrize(
    "target",
    ["general", "#general", "@alice:example.org", "!", "!abc def", "!a\nb", "", "!" + "x" * 300],
)
def test_what_is_no_room_is_refused_with_the_key_path(target: str) -> None:
    with pytest.raises(ConfigError, match=r"^destinations\.d\.target: "):
        MatrixSink.check_destination(Destination("d", "matrix", target))


@pytest.mark.synapse
async def test_synapse_makes_v12_rooms_and_the_sink_sends_to_them(
    make_sink: Callable[..., Awaitable[MatrixSink]], peers: Callable[..., Awaitable[Peer]]
) -> None:
    sink = await make_sink()
    alice = await peers("alice")
    room_id = await joined_room(alice, sink)
    assert ":" not in room_id  # Synapse 1.163 creates room version 12 by default
    destination = Destination(Destination.chat_id("matrix", room_id), "matrix", room_id)
    MatrixSink.check_destination(destination)

    event_id = await sink.send(delivery_to(room_id))

    await alice.wait_for(room_id, by_id(event_id))


def check(tmp_path: Path, target: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "alerts.toml").write_text(
        f'[destinations.room]\nsink = "matrix"\ntarget = "{target}"\n', encoding="utf-8"
    )
    return subprocess.run(
        [sys.executable, "-m", "alerts", "--config", str(config), "check"],
        capture_output=True, text=True, timeout=60, check=False, env={"PATH": ""},
    )  # fmt: skip


def test_alerts_check_accepts_a_v12_room_and_refuses_a_name(tmp_path: Path) -> None:
    assert check(tmp_path, V12).returncode == 0
    refused = check(tmp_path, "general")
    assert refused.returncode == 2
    assert "destinations.room.target: 'general' is not a Matrix room id or alias" in refused.stderr
    assert "Traceback" not in refused.stderr
