"""Store backends for the contract suite: every test in test_contract.py runs,
unchanged, against each backend registered in ``BACKENDS``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from alerts.store import Store
from alerts.store.postgres import open_postgres
from alerts.store.sqlite import SqliteStore

from ..pg_support import fresh_database

StoreFactory = Callable[[], Awaitable[Store]]
Backend = Callable[[Path], AbstractAsyncContextManager[StoreFactory]]


@asynccontextmanager
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    opened: list[Store] = []
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def make() -> Store:
        store = await SqliteStore.open(url)
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.close()


@asynccontextmanager
async def postgres_backend(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A database of its own per test on the local server (skips when there is none,
    fails when CI=true)."""
    async with fresh_database() as url:
        opened: list[Store] = []

        async def make() -> Store:
            store = await open_postgres(url, max_connections=4)
            opened.append(store)
            return store

        try:
            yield make
        finally:
            for store in opened:
                await store.close()


BACKENDS: dict[str, Backend] = {"sqlite": sqlite_backend, "postgres": postgres_backend}


@pytest.fixture(params=sorted(BACKENDS))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Opens handles on one fresh database per test (several handles = several workers)."""
    async with BACKENDS[request.param](tmp_path) as factory:
        yield factory


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
