"""A throw-away PostgreSQL database on the local server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    admin, user = None, ""
    for user in ("postgres", "root"):
        try:
            admin = await asyncpg.connect(
                host="127.0.0.1", port=5432, user=user, database="postgres"
            )
            break
        except (OSError, asyncpg.PostgresError):
            continue
    if admin is None:
        raise SystemExit("bench: PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"alerts_bench_{os.getpid()}_{secrets.token_hex(3)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://{user}@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
