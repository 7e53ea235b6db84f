"""Fixtures of the hostile corpus: one real Synapse for the module, Discord's spec."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..matrix.synapse_server import SynapseServer, synapse_python

# The fake Discord lives with the Discord suite, which imports its helpers by name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "discord"))

from discord_openapi import OpenApi, load, locate_spec


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def openapi() -> OpenApi:
    path = locate_spec()
    if path is None:
        pytest.skip("Discord's OpenAPI spec is absent (../shared/specs/discord-openapi.json)")
    return load(path)
