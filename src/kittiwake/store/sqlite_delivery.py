"""The SQLite queries of the delivery engine: the per-sender queue, guarded transitions, the callback
outbox and the simulated carrier's record.

A mixin of :class:`kittiwake.store.sqlite.SqliteStore`, kept apart so each file stays about one thing.
Every write runs inside the group-commit writer, so a transition, its callback row and the sender's
backlog counter always change together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from kittiwake.models import Callback, Message
from kittiwake.store import rows
from kittiwake.store.base import NewCallback, QueueFull, SimRecord, Transition
from kittiwake.store.sqlite_writer import GroupCommitWriter

_SELECT_MESSAGE = f"SELECT {', '.join(rows.MESSAGE_COLUMNS)} FROM messages"
_INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(rows.MESSAGE_COLUMNS[:-1])}) "
    f"VALUES ({', '.join('?' * (len(rows.MESSAGE_COLUMNS) - 1))})"
)
_INSERT_CALLBACK = (
    f"INSERT INTO callbacks ({', '.join(rows.CALLBACK_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(['?'] * len(rows.CALLBACK_INSERT_COLUMNS))})"
)


def _insert_callback(conn: sqlite3.Connection, callback: NewCallback, now: int) -> None:
    conn.execute(_INSERT_CALLBACK, rows.callback_row(callback, now))


def _requeue_in_flight(conn: sqlite3.Connection, sender: str) -> None:
    """Messages of ``sender`` left ``sending`` by a previous lease holder go back to the queue."""
    segments = conn.execute(
        "SELECT COALESCE(SUM(num_segments), 0) FROM messages WHERE from_number = ? AND status = 'sending'", (sender,)
    ).fetchone()[0]
    if segments:
        conn.execute("UPDATE messages SET status = 'queued' WHERE from_number = ? AND status = 'sending'", (sender,))
        conn.execute(
            "UPDATE senders SET queued_segments = queued_segments + ? WHERE phone_number = ?", (segments, sender)
        )


class SqliteDeliveryMixin:
    writer: GroupCommitWriter
    queue_listeners: list[Callable[[str], None]]

    def add_queue_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(sender)`` after each committed enqueue (in-process wake-up of the dispatcher)."""
        self.queue_listeners.append(listener)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    # -- the queue -----------------------------------------------------------------------------------

    async def enqueue_message(self, message: Message, queue_cap_segments: int | None) -> Message:
        """Insert a queued message, refusing it (QueueFull) if its sender's backlog would pass the cap."""
        values = rows.message_row(message)

        cap = queue_cap_segments if queue_cap_segments is not None else 1 << 62
        k = message.num_segments

        def op(conn: sqlite3.Connection) -> int:
            # One statement creates or grows the sender's backlog, refusing growth past the cap.
            grown = conn.execute(
                "INSERT INTO senders (phone_number, queued_segments) VALUES (?, ?) "
                "ON CONFLICT (phone_number) DO UPDATE SET queued_segments = queued_segments + excluded.queued_segments "
                "WHERE senders.queued_segments + excluded.queued_segments <= ?",
                (message.from_, k, cap),
            )
            if grown.rowcount == 0:
                raise QueueFull(message.from_)
            return conn.execute(_INSERT_MESSAGE, values).lastrowid or 0

        seq = await self.writer.submit(op)
        for listener in self.queue_listeners:
            listener(message.from_)
        return replace(message, seq=seq)

    async def senders_with_work(self) -> list[tuple[str, int]]:
        """Every sender with a queued backlog, and its persisted tat (epoch microseconds)."""
        return [(r[0], r[1]) for r in self._query("SELECT phone_number, tat FROM senders WHERE queued_segments > 0")]

    async def claim_queued(
        self, sender: str, limit: int, now: int, owner: str, interval_micros: int = 0
    ) -> list[Message] | None:
        """Move the sender's oldest ``limit`` queued messages to ``sending`` and return them, oldest first.

        Only for the holder of the sender's lease (``owner``); anyone else gets None. The claimed
        segments are reserved in the sender's tat (``interval_micros`` per segment), so a dispatcher that
        takes the sender over never submits inside time this claim may still use. One indexed range read
        on (from_number, seq) among queued rows: the cost does not grow with the depth of the queue.
        """

        def op(conn: sqlite3.Connection) -> list[Message] | None:
            held = conn.execute(
                "SELECT tat FROM senders WHERE phone_number = ? AND lease_owner = ?", (sender, owner)
            ).fetchone()
            if held is None:
                return None
            found = conn.execute(
                f"{_SELECT_MESSAGE} WHERE from_number = ? AND status = 'queued' ORDER BY seq LIMIT ?", (sender, limit)
            ).fetchall()
            if not found:
                conn.execute("UPDATE senders SET queued_segments = 0 WHERE phone_number = ?", (sender,))
                return []
            claimed = [rows.message_from(r) for r in found]
            conn.executemany(
                "UPDATE messages SET status = 'sending', date_updated = ? WHERE seq = ?",
                [(now, m.seq) for m in claimed],
            )
            segments = sum(m.num_segments for m in claimed)
            reserved = max(now, held[0]) + segments * interval_micros
            conn.execute(
                "UPDATE senders SET queued_segments = MAX(0, queued_segments - ?), tat = ? WHERE phone_number = ?",
                (segments, reserved, sender),
            )
            return claimed

        return await self.writer.submit(op)

    async def acquire_senders(self, owner: str, senders: Sequence[str], now: int, lease_until: int) -> dict[str, int]:
        """Take or renew the lease on each sender that is free, expired or already ours; their tats.

        Taking a sender over from another (dead or stopped) dispatcher re-drives the messages it left in
        ``sending``: back to the queue, in their original order (a possible duplicate if one was on the wire).
        """

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            acquired: dict[str, int] = {}
            for sender in senders:
                row = conn.execute(
                    "SELECT lease_owner, lease_expires, tat FROM senders WHERE phone_number = ?", (sender,)
                ).fetchone()
                if row is None or (row[0] not in (None, owner) and (row[1] or 0) >= now):
                    continue
                conn.execute(
                    "UPDATE senders SET lease_owner = ?, lease_expires = ? WHERE phone_number = ?",
                    (owner, lease_until, sender),
                )
                if row[0] != owner:
                    _requeue_in_flight(conn, sender)
                acquired[sender] = row[2]
            return acquired

        return await self.writer.submit(op)

    async def release_senders(self, owner: str, senders: Sequence[tuple[str, int]]) -> None:
        """Give up the leases on idle senders, persisting each one's tat (never moving it backwards)."""

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE senders SET lease_owner = NULL, lease_expires = NULL, tat = MAX(tat, ?) "
                "WHERE phone_number = ? AND lease_owner = ?",
                [(tat, sender, owner) for sender, tat in senders],
            )

        await self.writer.submit(op)

    async def apply_transitions(
        self, transitions: Sequence[Transition], now: int, sender_tat: tuple[str, int] | None = None
    ) -> list[bool]:
        """Apply each guarded transition; True for those whose guard held. Optionally persist a tat."""

        def op(conn: sqlite3.Connection) -> list[bool]:
            applied: list[bool] = []
            for t in transitions:
                columns = [c for c in t.values if c in rows.MESSAGE_UPDATABLE]
                if len(columns) != len(t.values):
                    raise ValueError(f"not updatable: {sorted(set(t.values) - rows.MESSAGE_UPDATABLE)}")
                sets = ", ".join([f"{c} = ?" for c in columns] + ["date_updated = ?"])
                guard = ", ".join("?" * len(t.expected))
                changed = conn.execute(
                    f"UPDATE messages SET {sets} WHERE sid = ? AND status IN ({guard})",
                    [*(t.values[c] for c in columns), now, t.sid, *sorted(t.expected)],
                ).rowcount
                if changed and t.callback is not None:
                    _insert_callback(conn, t.callback, now)
                if changed and t.requeued_segments:
                    conn.execute(
                        "UPDATE senders SET queued_segments = queued_segments + ? "
                        "WHERE phone_number = (SELECT from_number FROM messages WHERE sid = ?)",
                        (t.requeued_segments, t.sid),
                    )
                applied.append(bool(changed))
            if sender_tat is not None:
                conn.execute(
                    "UPDATE senders SET tat = MAX(tat, ?) WHERE phone_number = ?", (sender_tat[1], sender_tat[0])
                )
            return applied

        return await self.writer.submit(op)

    async def recover_in_flight(self) -> int:
        """At start-up of the only dispatcher on this database (SQLite: one serve per data directory):
        every lease is stale, messages left ``sending`` go back to the queue in their original order, and
        every sender's backlog counter is recounted."""

        def op(conn: sqlite3.Connection) -> int:
            requeued = conn.execute("UPDATE messages SET status = 'queued' WHERE status = 'sending'").rowcount
            conn.execute("UPDATE senders SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner IS NOT NULL")
            conn.execute("UPDATE senders SET queued_segments = 0 WHERE queued_segments <> 0")
            conn.execute(
                "INSERT INTO senders (phone_number, queued_segments) "
                "SELECT from_number, SUM(num_segments) FROM messages WHERE status = 'queued' GROUP BY from_number "
                "ON CONFLICT (phone_number) DO UPDATE SET queued_segments = excluded.queued_segments"
            )
            return requeued

        return await self.writer.submit(op)

    async def expired_queued(self, now: int, limit: int) -> list[Message]:
        found = self._query(
            f"{_SELECT_MESSAGE} WHERE status = 'queued' AND expires_at < ? ORDER BY expires_at LIMIT ?", (now, limit)
        )
        return [rows.message_from(r) for r in found]

    async def find_by_carrier_id(self, carrier_message_id: str) -> Message | None:
        found = self._query(f"{_SELECT_MESSAGE} WHERE carrier_message_id = ?", (carrier_message_id,))
        return rows.message_from(found[0]) if found else None

    async def get_message_by_sid(self, sid: str) -> Message | None:
        found = self._query(f"{_SELECT_MESSAGE} WHERE sid = ?", (sid,))
        return rows.message_from(found[0]) if found else None

    # -- the callback outbox -------------------------------------------------------------------------

    async def claim_callbacks(self, now: int, limit: int, lease_until: int) -> list[Callback]:
        def op(conn: sqlite3.Connection) -> list[Callback]:
            found = conn.execute(
                f"SELECT {rows.CALLBACK_COLUMNS} FROM callbacks WHERE state = 'pending' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE callbacks SET next_attempt_at = ? WHERE id = ?", [(lease_until, r[0]) for r in found]
            )
            return [rows.callback_from(r) for r in found]

        return await self.writer.submit(op)

    async def callback_delivered(self, callback_id: int, now: int, status: int) -> None:
        await self.writer.submit(
            lambda conn: conn.execute(
                "UPDATE callbacks SET state = 'delivered', finished_at = ?, last_status = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (now, status, callback_id),
            )
        )

    async def callback_retry(self, callback_id: int, attempts: int, next_attempt_at: int, error: str) -> None:
        await self.writer.submit(
            lambda conn: conn.execute(
                "UPDATE callbacks SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (attempts, next_attempt_at, error[:500], callback_id),
            )
        )

    async def callback_dead(self, callback_id: int, now: int, error: str) -> None:
        await self.writer.submit(
            lambda conn: conn.execute(
                "UPDATE callbacks SET state = 'dead', finished_at = ?, last_error = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (now, error[:500], callback_id),
            )
        )

    async def auth_token(self, account_sid: str) -> str | None:
        found = self._query("SELECT auth_token FROM accounts WHERE sid = ?", (account_sid,))
        return str(found[0][0]) if found else None

    async def pending_callbacks(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM callbacks WHERE state = 'pending'")[0][0])

    # -- the simulated carrier's record --------------------------------------------------------------

    async def record_sim_submission(self, record: SimRecord) -> int:
        def op(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO sim_messages (account_sid, message_sid, carrier_message_id, from_number, to_number, "
                "body, segments, submitted_at, outcome, error_code, receipt_due_at, receipt_done) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.account_sid,
                    record.message_sid,
                    record.carrier_message_id,
                    record.from_,
                    record.to,
                    record.body,
                    record.segments,
                    record.submitted_at,
                    record.outcome,
                    record.error_code,
                    record.receipt_due_at,
                    0 if record.receipt_due_at is not None else 1,
                ),
            )
            return cursor.lastrowid or 0

        return await self.writer.submit(op)

    async def pending_sim_receipts(self) -> list[SimRecord]:
        found = self._query(
            f"SELECT {rows.SIM_COLUMNS} FROM sim_messages WHERE receipt_done = 0 ORDER BY receipt_due_at, id"
        )
        return [rows.sim_from(r) for r in found]

    async def sim_receipt_sent(self, record_id: int) -> None:
        await self.writer.submit(
            lambda conn: conn.execute("UPDATE sim_messages SET receipt_done = 1 WHERE id = ?", (record_id,))
        )

    async def list_sim_submissions(
        self, account_sid: str, from_: str | None = None, to: str | None = None, limit: int = 10_000
    ) -> list[SimRecord]:
        sql = f"SELECT {rows.SIM_COLUMNS} FROM sim_messages WHERE account_sid = ?"
        params: list[Any] = [account_sid]
        if from_ is not None:
            sql += " AND from_number = ?"
            params.append(from_)
        if to is not None:
            sql += " AND to_number = ?"
            params.append(to)
        sql += " ORDER BY submitted_at, id LIMIT ?"
        params.append(limit)
        return [rows.sim_from(r) for r in self._query(sql, params)]

    async def clear_sim_submissions(self, account_sid: str) -> int:
        return await self.writer.submit(
            lambda conn: conn.execute("DELETE FROM sim_messages WHERE account_sid = ?", (account_sid,)).rowcount
        )
