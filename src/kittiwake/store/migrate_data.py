"""Moving an embedded deployment (SQLite data directory) to PostgreSQL without losing a message.

The source must be at rest: the copy takes the data directory's serve lock, so it refuses to run while a
``kittiwake serve`` uses it (and no serve can start until it is done). The target's schema is migrated,
must be empty, and receives every table in one transaction (COPY, keeping ids and sequence numbers, then
moving each identity sequence past the copied ids); row counts are compared before it commits.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from psycopg import AsyncConnection, sql

from kittiwake.errors import ConfigError
from kittiwake.store.lock import exclusive_data_dir
from kittiwake.store.migrations import migrations_for
from kittiwake.store.postgres import apply_migrations

# Parents before children (foreign keys), then the rest.
TABLES = (
    "accounts", "phone_numbers", "applications", "messages", "senders", "callbacks", "sim_messages",
    "inbound_jobs", "opt_outs", "carrier_parts",
)  # fmt: skip
IDENTITY = {"messages": "seq", "callbacks": "id", "sim_messages": "id", "inbound_jobs": "id"}
CHUNK = 5000


def migrate_data(source: Path, target_url: str) -> dict[str, int]:
    """Copy everything from the SQLite database in ``source`` into ``target_url``; rows copied per table."""
    database = source / "kittiwake.sqlite3"
    if not database.exists():
        raise ConfigError(f"no Kittiwake database in {source}")
    with exclusive_data_dir(source, f"stop kittiwake serve on {source} first: the copy needs it at rest"):
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            return asyncio.run(_copy(conn, target_url))
        finally:
            conn.close()


async def _copy(source: sqlite3.Connection, target_url: str) -> dict[str, int]:
    versions = {row[0] for row in source.execute("SELECT version FROM schema_migrations")}
    latest = {m.version for m in migrations_for("sqlite")}
    if versions != latest:
        raise ConfigError("the source schema is not up to date: run `kittiwake migrate --data-dir ...` first")
    await apply_migrations(target_url)
    copied: dict[str, int] = {}
    async with await AsyncConnection.connect(target_url) as target, target.transaction():
        for table in TABLES:
            cursor = await target.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            row = await cursor.fetchone()
            if row is not None and row[0]:
                raise ConfigError(f"the target database is not empty ({table} has rows): use a new database")
        for table in TABLES:
            columns = [r[1] for r in source.execute(f"PRAGMA table_info({table})")]
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            rows = source.execute(f"SELECT {', '.join(columns)} FROM {table}")
            count = 0
            async with target.cursor().copy(statement) as copy:
                while chunk := rows.fetchmany(CHUNK):
                    for values in chunk:
                        await copy.write_row(values)
                    count += len(chunk)
            copied[table] = count
            if table in IDENTITY:
                column = IDENTITY[table]
                await target.execute(
                    sql.SQL(
                        "SELECT setval(pg_get_serial_sequence({}, {}), GREATEST(COALESCE(MAX({}), 0), 1)) FROM {}"
                    ).format(sql.Literal(table), sql.Literal(column), sql.Identifier(column), sql.Identifier(table))
                )
        for table, count in copied.items():
            cursor = await target.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            row = await cursor.fetchone()
            if row is None or row[0] != count:
                raise ConfigError(f"copy of {table} does not add up; nothing was written")
    return copied
