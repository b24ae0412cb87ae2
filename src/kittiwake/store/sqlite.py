"""The SQLite implementation of :class:`kittiwake.store.base.Store` (the embedded default).

Writes go through :class:`GroupCommitWriter` (one writer thread, batched transactions). Reads run on a
connection of their own in the caller's thread: in WAL mode readers never wait for the writer, and the
indexed lookups the API makes take microseconds, so a hop to a thread pool would cost more than it saves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kittiwake.models import Account, Application, Message, PhoneNumber
from kittiwake.store import rows
from kittiwake.store.base import (
    AccountFilter,
    Changes,
    DuplicateError,
    MessageFilter,
    NumberFilter,
    Page,
    PageRequest,
)
from kittiwake.store.cache import CACHE_SECONDS, TtlCache
from kittiwake.store.migrations import migrations_for
from kittiwake.store.sqlite_carrier import SqliteCarrierMixin
from kittiwake.store.sqlite_delivery import SqliteDeliveryMixin
from kittiwake.store.sqlite_inbound import SqliteInboundMixin
from kittiwake.store.sqlite_writer import GroupCommitWriter, connect


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_placeholders(len(columns))})"


_INSERT_ACCOUNT = _insert_sql("accounts", rows.ACCOUNT_COLUMNS)
_INSERT_NUMBER = _insert_sql("phone_numbers", rows.NUMBER_COLUMNS)
_INSERT_APPLICATION = _insert_sql("applications", rows.APPLICATION_COLUMNS)
_INSERT_MESSAGE = _insert_sql("messages", rows.MESSAGE_COLUMNS[:-1])
_SELECT_MESSAGE = f"SELECT {', '.join(rows.MESSAGE_COLUMNS)} FROM messages"


def apply_migrations(conn: sqlite3.Connection) -> list[int]:
    """Apply every packaged migration not yet applied; safe when several processes start at once."""
    applied: list[int] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in migrations_for("sqlite"):
            if migration.version in done:
                continue
            for statement in migration.statements():
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


class SqliteStore(SqliteDeliveryMixin, SqliteInboundMixin, SqliteCarrierMixin):
    """Kittiwake's data in one SQLite file (WAL) inside the data directory."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", max_batch: int = 512) -> None:
        self.path = path
        self._synchronous = synchronous
        self.writer = GroupCommitWriter(path, synchronous=synchronous, max_batch=max_batch)
        self._reader: sqlite3.Connection | None = None
        self.queue_listeners = []
        self.inbound_listeners = []
        # Every API request authenticates an account and every create looks up its sender: keep the
        # rows found for a moment. Only found rows are kept (a row another process just added is seen at
        # once) and this process's own updates and deletes drop them; other processes only add rows.
        self._accounts: TtlCache[Account] = TtlCache(CACHE_SECONDS)
        self._numbers: TtlCache[PhoneNumber] = TtlCache(CACHE_SECONDS)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, synchronous=self._synchronous)
        try:
            apply_migrations(conn)
        finally:
            conn.close()
        self._reader = connect(self.path, synchronous=self._synchronous)
        self.writer.start()

    async def close(self) -> None:
        self.writer.stop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- helpers -------------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        assert self._reader is not None, "store is not open"
        return self._reader.execute(sql, params).fetchall()

    async def _insert(self, sql: str, values: tuple[Any, ...]) -> int:
        def op(conn: sqlite3.Connection) -> int:
            try:
                cursor = conn.execute(sql, values)
            except sqlite3.IntegrityError as exc:
                raise DuplicateError(str(exc)) from exc
            return cursor.lastrowid or 0

        return await self.writer.submit(op)

    async def _update(
        self, table: str, allowed: frozenset[str], key: dict[str, str], changes: Changes, now: int
    ) -> bool:
        columns = [c for c in changes.values if c in allowed]
        if len(columns) != len(changes.values):
            raise ValueError(f"not updatable in {table}: {sorted(set(changes.values) - allowed)}")
        assignments = ", ".join([f"{c} = ?" for c in columns] + ["date_updated = ?"])
        where = " AND ".join(f"{c} = ?" for c in key)
        sql = f"UPDATE {table} SET {assignments} WHERE {where}"
        params = [changes.values[c] for c in columns] + [now, *key.values()]
        return await self.writer.submit(lambda conn: conn.execute(sql, params).rowcount > 0)

    async def _delete(self, table: str, account_sid: str, sid: str) -> bool:
        sql = f"DELETE FROM {table} WHERE account_sid = ? AND sid = ?"
        return await self.writer.submit(lambda conn: conn.execute(sql, (account_sid, sid)).rowcount > 0)

    def _offset_page(self, sql: str, params: list[Any], page: PageRequest) -> tuple[list[Any], bool, int]:
        found = self._query(f"{sql} LIMIT ? OFFSET ?", [*params, page.size + 1, page.offset])
        return found[: page.size], len(found) > page.size, page.offset + min(len(found), page.size)

    # -- accounts ------------------------------------------------------------------------------------

    async def add_account(self, account: Account) -> None:
        await self._insert(_INSERT_ACCOUNT, rows.account_row(account))

    async def get_account(self, sid: str) -> Account | None:
        cached = self._accounts.get(sid)
        if cached is not None:
            return cached
        found = self._query(f"SELECT {', '.join(rows.ACCOUNT_COLUMNS)} FROM accounts WHERE sid = ?", (sid,))
        return self._accounts.put(sid, rows.account_from(found[0])) if found else None

    async def all_accounts(self) -> list[Account]:
        found = self._query(f"SELECT {', '.join(rows.ACCOUNT_COLUMNS)} FROM accounts ORDER BY date_created, sid")
        return [rows.account_from(r) for r in found]

    async def list_accounts(self, owner_sid: str, filters: AccountFilter, page: PageRequest) -> Page[Account]:
        # The owner itself comes first, then its subaccounts (Twilio lists both under /Accounts).
        sql = f"SELECT {', '.join(rows.ACCOUNT_COLUMNS)} FROM accounts WHERE (sid = ? OR owner_account_sid = ?)"
        params: list[Any] = [owner_sid, owner_sid]
        if filters.friendly_name is not None:
            sql += " AND friendly_name = ?"
            params.append(filters.friendly_name)
        if filters.status is not None:
            sql += " AND status = ?"
            params.append(filters.status)
        sql += " ORDER BY (sid <> ?), date_created, sid"
        params.append(owner_sid)
        found, more, next_offset = self._offset_page(sql, params, page)
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
        found = self._query(
            f"SELECT {', '.join(rows.NUMBER_COLUMNS)} FROM phone_numbers WHERE account_sid = ? AND sid = ?",
            (account_sid, sid),
        )
        return rows.number_from(found[0]) if found else None

    async def find_number(self, phone_number: str) -> PhoneNumber | None:
        found = self._query(
            f"SELECT {', '.join(rows.NUMBER_COLUMNS)} FROM phone_numbers WHERE phone_number = ?",
            (phone_number,),
        )
        return rows.number_from(found[0]) if found else None

    async def list_numbers(self, account_sid: str, filters: NumberFilter, page: PageRequest) -> Page[PhoneNumber]:
        kind_test = "kind = 'short'" if filters.short_codes else "kind <> 'short'"
        sql = f"SELECT {', '.join(rows.NUMBER_COLUMNS)} FROM phone_numbers WHERE account_sid = ? AND {kind_test}"
        params: list[Any] = [account_sid]
        if filters.friendly_name is not None:
            sql += " AND friendly_name = ?"
            params.append(filters.friendly_name)
        if filters.phone_number is not None:
            # Twilio matches a PhoneNumber filter on a pattern of digits; a substring match covers it.
            sql += " AND instr(phone_number, ?) > 0"
            params.append(filters.phone_number)
        sql += " ORDER BY date_created, sid"
        found, more, next_offset = self._offset_page(sql, params, page)
        return Page([rows.number_from(r) for r in found], more, next_offset)

    async def update_number(self, account_sid: str, sid: str, changes: Changes, now: int) -> PhoneNumber | None:
        key = {"account_sid": account_sid, "sid": sid}
        self._numbers.clear()
        await self._update("phone_numbers", rows.NUMBER_UPDATABLE, key, changes, now)
        self._numbers.clear()
        return await self.get_number(account_sid, sid)

    async def delete_number(self, account_sid: str, sid: str) -> bool:
        self._numbers.clear()
        deleted = await self._delete("phone_numbers", account_sid, sid)
        self._numbers.clear()
        return deleted

    # -- applications --------------------------------------------------------------------------------

    async def add_application(self, application: Application) -> None:
        await self._insert(_INSERT_APPLICATION, rows.application_row(application))

    async def get_application(self, account_sid: str, sid: str) -> Application | None:
        found = self._query(
            f"SELECT {', '.join(rows.APPLICATION_COLUMNS)} FROM applications WHERE account_sid = ? AND sid = ?",
            (account_sid, sid),
        )
        return rows.application_from(found[0]) if found else None

    async def list_applications(
        self, account_sid: str, friendly_name: str | None, page: PageRequest
    ) -> Page[Application]:
        sql = f"SELECT {', '.join(rows.APPLICATION_COLUMNS)} FROM applications WHERE account_sid = ?"
        params: list[Any] = [account_sid]
        if friendly_name is not None:
            sql += " AND friendly_name = ?"
            params.append(friendly_name)
        sql += " ORDER BY date_created, sid"
        found, more, next_offset = self._offset_page(sql, params, page)
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
        return _with_seq(message, seq)

    async def get_message(self, account_sid: str, sid: str) -> Message | None:
        found = self._query(f"{_SELECT_MESSAGE} WHERE sid = ? AND account_sid = ?", (sid, account_sid))
        return rows.message_from(found[0]) if found else None

    async def list_messages(
        self, account_sid: str, filters: MessageFilter, page: PageRequest, *, with_total: bool = False
    ) -> Page[Message]:
        where, params = _message_where(account_sid, filters)
        total = None
        if with_total:
            total = self._query(f"SELECT COUNT(*) FROM messages WHERE {where}", params)[0][0]
        # Newest first. A PageToken carries the last seq of the previous page (keyset paging), so deep
        # pages cost as little as the first; without one, Page is an offset.
        if page.after is not None:
            found = self._query(
                f"{_SELECT_MESSAGE} WHERE {where} AND seq < ? ORDER BY seq DESC LIMIT ?",
                [*params, page.after, page.size + 1],
            )
        else:
            found = self._query(
                f"{_SELECT_MESSAGE} WHERE {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
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


def _message_where(account_sid: str, filters: MessageFilter) -> tuple[str, list[Any]]:
    clauses = ["account_sid = ?"]
    params: list[Any] = [account_sid]
    for clause, value in (
        ("to_number = ?", filters.to),
        ("from_number = ?", filters.from_),
        ("date_sent >= ?", filters.sent_from),
        ("date_sent < ?", filters.sent_until),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return " AND ".join(clauses), params


def _with_seq(message: Message, seq: int) -> Message:
    from dataclasses import replace

    return replace(message, seq=seq)
