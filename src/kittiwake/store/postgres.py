"""The PostgreSQL implementation of :class:`kittiwake.store.base.FullStore` (several processes, one database).

Owns the connections and the plain resources (accounts, numbers, applications, messages); the delivery
queries live in :mod:`kittiwake.store.postgres_delivery`, the inbound ones in
:mod:`kittiwake.store.postgres_inbound`, group commit in :mod:`kittiwake.store.postgres_writer`.

- Reads use an ``AsyncConnectionPool`` of autocommit connections: each query sees everything committed.
- Writes go through :class:`PgGroupCommitWriter`, so a burst of concurrent creates shares one commit.
- ``open()`` applies the packaged migrations under ``pg_advisory_xact_lock``, so processes starting at
  once are safe, then starts the writer, the pool and the LISTEN connection.
- Cross-process wake-ups: an enqueue commits with ``pg_notify('kittiwake_queue', sender)``, an inbound
  message with a webhook with ``pg_notify('kittiwake_inbound', '')``. This process's own listeners are
  called straight after the commit (as with SQLite); a dedicated autocommit connection LISTENs on both
  channels and calls them for notifications sent by other processes (its own are recognised by the
  writer's backend pid and skipped). After that connection is lost and re-established, every listener is
  called once for the work that may have been announced meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import AsyncConnection, Notify
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from kittiwake.models import Account, Application, Message, PhoneNumber
from kittiwake.store import rows
from kittiwake.store.base import (
    AccountFilter,
    Changes,
    MessageFilter,
    NumberFilter,
    Page,
    PageRequest,
)
from kittiwake.store.cache import CACHE_SECONDS, TtlCache
from kittiwake.store.migrations import migrations_for
from kittiwake.store.postgres_delivery import QUEUE_CHANNEL, PostgresDeliveryMixin
from kittiwake.store.postgres_inbound import INBOUND_CHANNEL, PostgresInboundMixin
from kittiwake.store.postgres_writer import PgGroupCommitWriter, Statement, first_int

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key held while migrating ("kittiwak" in ASCII).
MIGRATION_LOCK = 0x6B69747469776B
RECONNECT_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)


def _insert_sql(table: str, columns: Sequence[str], returning: str | None = None) -> str:
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    return f"{sql} RETURNING {returning}" if returning else sql


_INSERT_ACCOUNT = _insert_sql("accounts", rows.ACCOUNT_COLUMNS)
_INSERT_NUMBER = _insert_sql("phone_numbers", rows.NUMBER_COLUMNS)
_INSERT_APPLICATION = _insert_sql("applications", rows.APPLICATION_COLUMNS)
_INSERT_MESSAGE = _insert_sql("messages", rows.MESSAGE_COLUMNS[:-1], "seq")
_SELECT_ACCOUNT = f"SELECT {', '.join(rows.ACCOUNT_COLUMNS)} FROM accounts"
_SELECT_NUMBER = f"SELECT {', '.join(rows.NUMBER_COLUMNS)} FROM phone_numbers"
_SELECT_APPLICATION = f"SELECT {', '.join(rows.APPLICATION_COLUMNS)} FROM applications"
_SELECT_MESSAGE = f"SELECT {', '.join(rows.MESSAGE_COLUMNS)} FROM messages"


async def apply_migrations(conninfo: str) -> list[int]:
    """Apply every packaged migration not yet applied, in one transaction under an advisory lock."""
    applied: list[int] = []
    async with await AsyncConnection.connect(conninfo, autocommit=False) as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cursor.fetchall()}
        for migration in migrations_for("postgresql"):
            if migration.version in done:
                continue
            for statement in migration.statements():
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    return applied


class PostgresStore(PostgresDeliveryMixin, PostgresInboundMixin):
    """Kittiwake's data in a PostgreSQL database shared by any number of processes."""

    def __init__(self, url: str, *, min_pool: int = 1, max_pool: int = 10, max_batch: int = 512) -> None:
        self.url = url
        self.writer = PgGroupCommitWriter(url, max_batch=max_batch)
        self._pool: AsyncConnectionPool[AsyncConnection[TupleRow]] = AsyncConnectionPool(
            url, min_size=min_pool, max_size=max_pool, kwargs={"autocommit": True}, open=False, name="kittiwake"
        )
        self._listen_task: asyncio.Task[None] | None = None
        self._listen_conn: AsyncConnection[TupleRow] | None = None
        self.queue_listeners: list[Callable[[str], None]] = []
        self.inbound_listeners: list[Callable[[], None]] = []
        # As SqliteStore: found accounts are kept for a moment; this process's updates drop them.
        self._accounts: TtlCache[Account] = TtlCache(CACHE_SECONDS)

    async def open(self) -> None:
        await apply_migrations(self.url)
        await self.writer.start()
        try:
            await self._pool.open(wait=True)
            listen = await self._listen_connection()
        except BaseException:
            await self.writer.stop()
            await self._pool.close()
            raise
        self._listen_conn = listen
        self._listen_task = asyncio.create_task(self._listen(), name="kittiwake-postgres-listen")

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen_task
            self._listen_task = None
        if self._listen_conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._listen_conn.close()
            self._listen_conn = None
        await self.writer.stop()
        await self._pool.close()

    # -- notifications -------------------------------------------------------------------------------

    async def _listen_connection(self) -> AsyncConnection[TupleRow]:
        conn = await AsyncConnection.connect(self.url, autocommit=True)
        await conn.execute(f"LISTEN {QUEUE_CHANNEL}")
        await conn.execute(f"LISTEN {INBOUND_CHANNEL}")
        return conn

    async def _listen(self) -> None:
        """Call the listeners for every notification another process sends; reconnect when cut off."""
        while True:
            conn = self._listen_conn
            assert conn is not None
            try:
                async for notify in conn.notifies():
                    self._dispatch(notify)
            except psycopg.Error:
                log.warning("the PostgreSQL LISTEN connection was lost; reconnecting", exc_info=True)
            with contextlib.suppress(psycopg.Error):
                await conn.close()
            self._listen_conn = None
            self._listen_conn = await self._reconnect_listen()
            await self._announce_missed()

    async def _reconnect_listen(self) -> AsyncConnection[TupleRow]:
        attempt = 0
        while True:
            try:
                return await self._listen_connection()
            except psycopg.OperationalError:
                await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
                attempt += 1

    async def _announce_missed(self) -> None:
        """Notifications sent while the LISTEN connection was down are lost: wake everyone once."""
        try:
            senders = await self.senders_with_work()
        except psycopg.Error:
            log.exception("could not list senders after reconnecting")
            senders = []
        for sender, _ in senders:
            self._call_queue_listeners(sender)
        self._call_inbound_listeners()

    def _dispatch(self, notify: Notify) -> None:
        if notify.pid == self.writer.backend_pid:
            return  # this process's own commit: its listeners were called right after it
        if notify.channel == QUEUE_CHANNEL:
            self._call_queue_listeners(notify.payload)
        elif notify.channel == INBOUND_CHANNEL:
            self._call_inbound_listeners()

    def _call_queue_listeners(self, sender: str) -> None:
        for listener in self.queue_listeners:
            try:
                listener(sender)
            except Exception:
                log.exception("queue listener failed")

    def _call_inbound_listeners(self) -> None:
        for listener in self.inbound_listeners:
            try:
                listener()
            except Exception:
                log.exception("inbound listener failed")

    # -- helpers -------------------------------------------------------------------------------------

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def _insert(self, sql: str, values: tuple[Any, ...]) -> int:
        """An INSERT (its RETURNING value, if any); a unique or foreign-key violation is DuplicateError."""
        return await self.writer.submit(Statement(sql, values, first_int, duplicate_error=True))

    async def _update(
        self, table: str, allowed: frozenset[str], key: dict[str, str], changes: Changes, now: int
    ) -> bool:
        columns = [c for c in changes.values if c in allowed]
        if len(columns) != len(changes.values):
            raise ValueError(f"not updatable in {table}: {sorted(set(changes.values) - allowed)}")
        assignments = ", ".join([f"{c} = %s" for c in columns] + ["date_updated = %s"])
        where = " AND ".join(f"{c} = %s" for c in key)
        sql = f"UPDATE {table} SET {assignments} WHERE {where}"
        params = [changes.values[c] for c in columns] + [now, *key.values()]
        return await self.writer.submit(Statement(sql, params, _changed))

    async def _delete(self, table: str, account_sid: str, sid: str) -> bool:
        sql = f"DELETE FROM {table} WHERE account_sid = %s AND sid = %s"
        return await self.writer.submit(Statement(sql, (account_sid, sid), _changed))

    async def _offset_page(self, sql: str, params: list[Any], page: PageRequest) -> tuple[list[Any], bool, int]:
        found = await self._query(f"{sql} LIMIT %s OFFSET %s", [*params, page.size + 1, page.offset])
        return found[: page.size], len(found) > page.size, page.offset + min(len(found), page.size)

    # -- accounts ------------------------------------------------------------------------------------

    async def add_account(self, account: Account) -> None:
        await self._insert(_INSERT_ACCOUNT, rows.account_row(account))

    async def get_account(self, sid: str) -> Account | None:
        cached = self._accounts.get(sid)
        if cached is not None:
            return cached
        found = await self._query(f"{_SELECT_ACCOUNT} WHERE sid = %s", (sid,))
        return self._accounts.put(sid, rows.account_from(found[0])) if found else None

    async def all_accounts(self) -> list[Account]:
        found = await self._query(f"{_SELECT_ACCOUNT} ORDER BY date_created, sid")
        return [rows.account_from(r) for r in found]

    async def list_accounts(self, owner_sid: str, filters: AccountFilter, page: PageRequest) -> Page[Account]:
        # The owner itself comes first, then its subaccounts (Twilio lists both under /Accounts).
        sql = f"{_SELECT_ACCOUNT} WHERE (sid = %s OR owner_account_sid = %s)"
        params: list[Any] = [owner_sid, owner_sid]
        if filters.friendly_name is not None:
            sql += " AND friendly_name = %s"
            params.append(filters.friendly_name)
        if filters.status is not None:
            sql += " AND status = %s"
            params.append(filters.status)
        sql += " ORDER BY (sid <> %s), date_created, sid"
        params.append(owner_sid)
        found, more, next_offset = await self._offset_page(sql, params, page)
        return Page([rows.account_from(r) for r in found], more, next_offset)

    async def update_account(self, sid: str, changes: Changes, now: int) -> Account | None:
        self._accounts.drop(sid)
        await self._update("accounts", rows.ACCOUNT_UPDATABLE, {"sid": sid}, changes, now)
        self._accounts.drop(sid)
        return await self.get_account(sid)

    # -- phone numbers -------------------------------------------------------------------------------

    async def add_number(self, number: PhoneNumber) -> None:
        await self._insert(_INSERT_NUMBER, rows.number_row(number))

    async def get_number(self, account_sid: str, sid: str) -> PhoneNumber | None:
        found = await self._query(f"{_SELECT_NUMBER} WHERE account_sid = %s AND sid = %s", (account_sid, sid))
        return rows.number_from(found[0]) if found else None

    async def find_number(self, phone_number: str) -> PhoneNumber | None:
        found = await self._query(f"{_SELECT_NUMBER} WHERE phone_number = %s", (phone_number,))
        return rows.number_from(found[0]) if found else None

    async def list_numbers(self, account_sid: str, filters: NumberFilter, page: PageRequest) -> Page[PhoneNumber]:
        kind_test = "kind = 'short'" if filters.short_codes else "kind <> 'short'"
        sql = f"{_SELECT_NUMBER} WHERE account_sid = %s AND {kind_test}"
        params: list[Any] = [account_sid]
        if filters.friendly_name is not None:
            sql += " AND friendly_name = %s"
            params.append(filters.friendly_name)
        if filters.phone_number is not None:
            # Twilio matches a PhoneNumber filter on a pattern of digits; a substring match covers it.
            sql += " AND strpos(phone_number, %s) > 0"
            params.append(filters.phone_number)
        sql += " ORDER BY date_created, sid"
        found, more, next_offset = await self._offset_page(sql, params, page)
        return Page([rows.number_from(r) for r in found], more, next_offset)

    async def update_number(self, account_sid: str, sid: str, changes: Changes, now: int) -> PhoneNumber | None:
        key = {"account_sid": account_sid, "sid": sid}
        await self._update("phone_numbers", rows.NUMBER_UPDATABLE, key, changes, now)
        return await self.get_number(account_sid, sid)

    async def delete_number(self, account_sid: str, sid: str) -> bool:
        return await self._delete("phone_numbers", account_sid, sid)

    # -- applications --------------------------------------------------------------------------------

    async def add_application(self, application: Application) -> None:
        await self._insert(_INSERT_APPLICATION, rows.application_row(application))

    async def get_application(self, account_sid: str, sid: str) -> Application | None:
        found = await self._query(f"{_SELECT_APPLICATION} WHERE account_sid = %s AND sid = %s", (account_sid, sid))
        return rows.application_from(found[0]) if found else None

    async def list_applications(
        self, account_sid: str, friendly_name: str | None, page: PageRequest
    ) -> Page[Application]:
        sql = f"{_SELECT_APPLICATION} WHERE account_sid = %s"
        params: list[Any] = [account_sid]
        if friendly_name is not None:
            sql += " AND friendly_name = %s"
            params.append(friendly_name)
        sql += " ORDER BY date_created, sid"
        found, more, next_offset = await self._offset_page(sql, params, page)
        return Page([rows.application_from(r) for r in found], more, next_offset)

    async def update_application(self, account_sid: str, sid: str, changes: Changes, now: int) -> Application | None:
        key = {"account_sid": account_sid, "sid": sid}
        await self._update("applications", rows.APPLICATION_UPDATABLE, key, changes, now)
        return await self.get_application(account_sid, sid)

    async def delete_application(self, account_sid: str, sid: str) -> bool:
        return await self._delete("applications", account_sid, sid)

    # -- messages ------------------------------------------------------------------------------------

    async def add_message(self, message: Message) -> Message:
        seq = await self._insert(_INSERT_MESSAGE, rows.message_row(message))
        return replace(message, seq=seq)

    async def get_message(self, account_sid: str, sid: str) -> Message | None:
        found = await self._query(f"{_SELECT_MESSAGE} WHERE sid = %s AND account_sid = %s", (sid, account_sid))
        return rows.message_from(found[0]) if found else None

    async def list_messages(
        self, account_sid: str, filters: MessageFilter, page: PageRequest, *, with_total: bool = False
    ) -> Page[Message]:
        where, params = _message_where(account_sid, filters)
        total = None
        if with_total:
            total = int((await self._query(f"SELECT COUNT(*) FROM messages WHERE {where}", params))[0][0])
        # Newest first; a PageToken carries the last seq of the previous page (keyset paging).
        if page.after is not None:
            found = await self._query(
                f"{_SELECT_MESSAGE} WHERE {where} AND seq < %s ORDER BY seq DESC LIMIT %s",
                [*params, page.after, page.size + 1],
            )
        else:
            found = await self._query(
                f"{_SELECT_MESSAGE} WHERE {where} ORDER BY seq DESC LIMIT %s OFFSET %s",
                [*params, page.size + 1, page.offset],
            )
        items = [rows.message_from(r) for r in found[: page.size]]
        return Page(items, len(found) > page.size, items[-1].seq if items else None, total)

    async def update_message(self, account_sid: str, sid: str, changes: Changes, now: int) -> Message | None:
        key = {"account_sid": account_sid, "sid": sid}
        await self._update("messages", rows.MESSAGE_UPDATABLE, key, changes, now)
        return await self.get_message(account_sid, sid)

    async def delete_message(self, account_sid: str, sid: str) -> bool:
        return await self._delete("messages", account_sid, sid)


def _changed(_row: TupleRow | None, count: int) -> bool:
    return count > 0


def _message_where(account_sid: str, filters: MessageFilter) -> tuple[str, list[Any]]:
    clauses = ["account_sid = %s"]
    params: list[Any] = [account_sid]
    for clause, value in (
        ("to_number = %s", filters.to),
        ("from_number = %s", filters.from_),
        ("date_sent >= %s", filters.sent_from),
        ("date_sent < %s", filters.sent_until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " AND ".join(clauses), params
