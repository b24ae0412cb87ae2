"""Store engines for the contract suite: SQLite always, PostgreSQL when a server is given.

Set ``KITTIWAKE_TEST_DATABASE_URL`` to an admin URL (e.g. postgresql://postgres@127.0.0.1:PORT/postgres);
every test then gets a database of its own (``CREATE DATABASE kw_<random>``), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from kittiwake.store.base import FullStore
from kittiwake.store.postgres import PostgresStore
from kittiwake.store.sqlite import SqliteStore

PG_ADMIN_URL = os.environ.get("KITTIWAKE_TEST_DATABASE_URL", "")
PG_SKIP_REASON = (
    "PostgreSQL tests skipped: set KITTIWAKE_TEST_DATABASE_URL "
    "(scripts/test starts a throwaway cluster when PostgreSQL is installed)"
)
needs_postgres = pytest.mark.skipif(not PG_ADMIN_URL, reason=PG_SKIP_REASON)

ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=needs_postgres),
]


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The conninfo of a new, empty database on the test server; dropped on exit."""
    name = f"kw_{secrets.token_hex(6)}"
    async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(PG_ADMIN_URL, dbname=name)
    finally:
        async with await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True) as admin:
            await admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=ENGINES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FullStore]:
    """An open, empty store of each engine."""
    if request.param == "sqlite":
        engine: FullStore = SqliteStore(tmp_path / "kittiwake.db", synchronous="NORMAL")
        await engine.open()
        try:
            yield engine
        finally:
            await engine.close()
        return
    async with fresh_database() as url:
        engine = PostgresStore(url, max_pool=4)
        await engine.open()
        try:
            yield engine
        finally:
            await engine.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for tests that open several stores on it (like several processes)."""
    if not PG_ADMIN_URL:
        pytest.skip(PG_SKIP_REASON)
    async with fresh_database() as url:
        yield url
