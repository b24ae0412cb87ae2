"""The SQLite queries of inbound messages: receiving, the durable webhook job queue, and opt-outs.

A mixin of :class:`kittiwake.store.sqlite.SqliteStore`. Receiving writes the message, its webhook job
and any opt-out change in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from kittiwake.models import Message
from kittiwake.store import rows
from kittiwake.store.base import OptChange
from kittiwake.store.sqlite_writer import GroupCommitWriter

_COLUMNS = ", ".join(f"m.{c}" for c in rows.MESSAGE_COLUMNS)
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(rows.MESSAGE_COLUMNS[:-1])}) "
    f"VALUES ({', '.join('?' * (len(rows.MESSAGE_COLUMNS) - 1))})"
)


class SqliteInboundMixin:
    writer: GroupCommitWriter
    inbound_listeners: list[Any]

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    async def receive_message(self, message: Message, opt: OptChange | None, *, webhook: bool) -> Message:
        """Store an inbound message (with its webhook job when the number has a URL) and apply ``opt``."""
        values = rows.message_row(message)
        now = message.date_created

        def op(conn: sqlite3.Connection) -> int:
            seq = conn.execute(_INSERT_MESSAGE, values).lastrowid or 0
            if webhook:
                conn.execute(
                    "INSERT INTO inbound_jobs (message_sid, account_sid, created_at, next_attempt_at) "
                    "VALUES (?, ?, ?, ?)",
                    (message.sid, message.account_sid, now, now),
                )
            # The handset is the inbound From; the sender it opts out of is our number, the inbound To.
            if opt is OptChange.OUT:
                conn.execute(
                    "INSERT INTO opt_outs (sender, handset, account_sid, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (message.to, message.from_, message.account_sid, now),
                )
            elif opt is OptChange.IN:
                conn.execute("DELETE FROM opt_outs WHERE sender = ? AND handset = ?", (message.to, message.from_))
            return seq

        seq = await self.writer.submit(op)
        if webhook:
            for listener in self.inbound_listeners:
                listener()
        return replace(message, seq=seq)

    def add_inbound_listener(self, listener: Any) -> None:
        """Call ``listener()`` after each committed inbound message with a webhook to make."""
        self.inbound_listeners.append(listener)

    async def claim_inbound(self, now: int, limit: int, lease_until: int) -> list[tuple[int, Message]]:
        """Due webhook jobs with their messages, oldest first, leased until ``lease_until``."""

        def op(conn: sqlite3.Connection) -> list[tuple[int, Message]]:
            found = conn.execute(
                f"SELECT j.id, {_COLUMNS} FROM inbound_jobs j JOIN messages m ON m.sid = j.message_sid "
                "WHERE j.state = 'pending' AND j.next_attempt_at <= ? ORDER BY j.next_attempt_at, j.id LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE inbound_jobs SET next_attempt_at = ?, attempts = attempts + 1 WHERE id = ?",
                [(lease_until, r[0]) for r in found],
            )
            return [(r[0], rows.message_from(r[1:])) for r in found]

        return await self.writer.submit(op)

    async def inbound_finished(self, job_id: int, now: int) -> None:
        await self.writer.submit(
            lambda conn: conn.execute(
                "UPDATE inbound_jobs SET state = 'done', finished_at = ? WHERE id = ?", (now, job_id)
            )
        )

    async def is_opted_out(self, sender: str, handset: str) -> bool:
        return bool(self._query("SELECT 1 FROM opt_outs WHERE sender = ? AND handset = ?", (sender, handset)))
