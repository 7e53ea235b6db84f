"""A fresh PostgreSQL database per test, on the server at 127.0.0.1:5432.

Trust auth is assumed (as ``scripts/test-services`` sets it up); the user is
``postgres`` or, failing that, ``root``. When no server answers, tests that need it
skip with the reason — except when ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

HOST, PORT = "127.0.0.1", 5432
USERS = ("postgres", "root")


async def _admin() -> tuple[asyncpg.Connection, str]:
    errors = []
    for user in USERS:
        try:
            conn = await asyncpg.connect(
                host=HOST, port=PORT, user=user, database="postgres", timeout=5
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            errors.append(f"{user}: {type(exc).__name__}: {exc}")
            continue
        return conn, user
    reason = f"PostgreSQL is not reachable on {HOST}:{PORT} ({'; '.join(errors)})"
    if os.environ.get("CI") == "true":
        pytest.fail(reason + " and CI=true requires it", pytrace=False)
    pytest.skip(reason + "; run scripts/test-services to start it")


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create a uniquely named database, yield its URL, drop it afterwards."""
    admin, user = await _admin()
    name = f"alerts_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://{user}@{HOST}:{PORT}/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
