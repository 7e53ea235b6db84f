"""Shared fixtures. Tests never read the developer's environment by accident."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop every ALERTS_* variable so settings come only from what a test sets."""
    for name in list(os.environ):
        if name.startswith("ALERTS_"):
            monkeypatch.delenv(name)
