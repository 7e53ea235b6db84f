"""The fan-out bench, small: nothing lost, nothing invalid, on the spec."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest


@pytest.fixture
def bench() -> object:
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.append(root)
    return importlib.import_module("bench.discord_fanout")


async def test_small_fan_out(bench: object, openapi: object) -> None:
    figures = await bench.fan_out(60, validate=True)  # type: ignore[attr-defined]
    assert figures["deliveries"] == 60
    assert figures["lost"] == 0
    assert figures["duplicates"] == 0
    assert figures["invalid_4xx"] == 0
    assert figures["spec_violations"] == 0
    assert figures["validated"] == 1.0
