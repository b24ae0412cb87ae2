"""The PostgreSQL queries of inbound messages: receiving, the durable webhook job queue, and opt-outs.

A mixin of :class:`kittiwake.store.postgres.PostgresStore`, the twin of
:mod:`kittiwake.store.sqlite_inbound`. Receiving writes the message, its webhook job and any opt-out
change in one transaction, which also sends ``pg_notify('kittiwake_inbound', '')`` when there is a job,
so inbound workers in every process wake up. Jobs are claimed ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from kittiwake.models import Message
from kittiwake.store import rows
from kittiwake.store.base import OptChange
from kittiwake.store.postgres_writer import Cursor, PgGroupCommitWriter, Statement, rowcount

INBOUND_CHANNEL = "kittiwake_inbound"

_COLUMNS = ", ".join(f"m.{c}" for c in rows.MESSAGE_COLUMNS)
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(rows.MESSAGE_COLUMNS[:-1])}) "
    f"VALUES ({', '.join(['%s'] * (len(rows.MESSAGE_COLUMNS) - 1))}) RETURNING seq"
)
_CLAIM = (
    f"SELECT j.id, {_COLUMNS} FROM inbound_jobs j JOIN messages m ON m.sid = j.message_sid "
    "WHERE j.state = 'pending' AND j.next_attempt_at <= %s ORDER BY j.next_attempt_at, j.id LIMIT %s "
    "FOR UPDATE OF j SKIP LOCKED"
)


class PostgresInboundMixin:
    writer: PgGroupCommitWriter
    inbound_listeners: list[Callable[[], None]]

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def receive_message(self, message: Message, opt: OptChange | None, *, webhook: bool) -> Message:
        """Store an inbound message (with its webhook job when the number has a URL) and apply ``opt``."""
        values = rows.message_row(message)
        now = message.date_created

        async def op(cursor: Cursor) -> int:
            await cursor.execute(_INSERT_MESSAGE, values)
            row = await cursor.fetchone()
            if webhook:
                await cursor.execute(
                    "INSERT INTO inbound_jobs (message_sid, account_sid, created_at, next_attempt_at) "
                    "VALUES (%s, %s, %s, %s)",
                    (message.sid, message.account_sid, now, now),
                )
            # The handset is the inbound From; the sender it opts out of is our number, the inbound To.
            if opt is OptChange.OUT:
                await cursor.execute(
                    "INSERT INTO opt_outs (sender, handset, account_sid, created_at) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    (message.to, message.from_, message.account_sid, now),
                )
            elif opt is OptChange.IN:
                await cursor.execute(
                    "DELETE FROM opt_outs WHERE sender = %s AND handset = %s", (message.to, message.from_)
                )
            return int(row[0]) if row else 0

        seq = await self.writer.submit(op, notify=(INBOUND_CHANNEL, "") if webhook else None)
        if webhook:
            for listener in self.inbound_listeners:
                listener()
        return replace(message, seq=seq)

    def add_inbound_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after each committed inbound message with a webhook, in any process."""
        self.inbound_listeners.append(listener)

    async def claim_inbound(self, now: int, limit: int, lease_until: int) -> list[tuple[int, Message]]:
        """Due webhook jobs with their messages, oldest first, leased until ``lease_until``."""

        async def op(cursor: Cursor) -> list[tuple[int, Message]]:
            await cursor.execute(_CLAIM, (now, limit))
            found = await cursor.fetchall()
            if found:
                await cursor.execute(
                    "UPDATE inbound_jobs SET next_attempt_at = %s, attempts = attempts + 1 WHERE id = ANY(%s)",
                    (lease_until, [r[0] for r in found]),
                )
            return [(int(r[0]), rows.message_from(r[1:])) for r in found]

        return await self.writer.submit(op)

    async def inbound_finished(self, job_id: int, now: int) -> None:
        sql = "UPDATE inbound_jobs SET state = 'done', finished_at = %s WHERE id = %s"
        await self.writer.submit(Statement(sql, (now, job_id), rowcount))

    async def is_opted_out(self, sender: str, handset: str) -> bool:
        found = await self._query("SELECT 1 FROM opt_outs WHERE sender = %s AND handset = %s", (sender, handset))
        return bool(found)
