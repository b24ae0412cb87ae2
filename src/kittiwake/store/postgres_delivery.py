"""The PostgreSQL queries of the delivery engine: the per-sender queue and its leases, guarded
transitions, the callback outbox, the simulated carrier's record and the carrier connectors' part ids.

A mixin of :class:`kittiwake.store.postgres.PostgresStore`, the twin of
:mod:`kittiwake.store.sqlite_delivery` and :mod:`kittiwake.store.sqlite_carrier`, with the same
semantics. Every write runs inside the group-commit writer, so a transition, its callback row and the
sender's backlog counter always change together.

Several processes share the database, so claims lock what they take: ``claim_queued`` first locks the
sender's row (which also serialises it with enqueues and lease changes of that sender, keeping the
backlog counter exact) and takes the messages ``FOR UPDATE SKIP LOCKED``; ``claim_callbacks`` takes due
rows ``FOR UPDATE SKIP LOCKED``, so two workers never lease the same callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from psycopg.rows import TupleRow

from kittiwake.models import Callback, Message
from kittiwake.store import rows
from kittiwake.store.base import NewCallback, PartOutcome, QueueFull, SimRecord, Transition
from kittiwake.store.postgres_writer import Cursor, PgGroupCommitWriter, Statement, first_int, rowcount

QUEUE_CHANNEL = "kittiwake_queue"

_SELECT_MESSAGE = f"SELECT {', '.join(rows.MESSAGE_COLUMNS)} FROM messages"
# Insert the message and grow its sender's backlog in one statement; no row back means the cap refused
# the growth, and the caller raises QueueFull, which rolls the message back with it.
_ENQUEUE = (
    f"WITH m AS (INSERT INTO messages ({', '.join(rows.MESSAGE_COLUMNS[:-1])}) "
    f"VALUES ({', '.join(['%s'] * (len(rows.MESSAGE_COLUMNS) - 1))}) RETURNING seq, from_number, num_segments) "
    "INSERT INTO senders AS s (phone_number, queued_segments) SELECT from_number, num_segments FROM m "
    "ON CONFLICT (phone_number) DO UPDATE SET queued_segments = s.queued_segments + excluded.queued_segments "
    "WHERE s.queued_segments + excluded.queued_segments <= %s "
    "RETURNING (SELECT seq FROM m)"
)
_CLAIM = (
    f"WITH picked AS ({_SELECT_MESSAGE} WHERE from_number = %s AND status = 'queued' ORDER BY seq LIMIT %s "
    "FOR UPDATE SKIP LOCKED) "
    "UPDATE messages SET status = 'sending', date_updated = %s FROM picked WHERE messages.seq = picked.seq "
    f"RETURNING {', '.join(f'picked.{c}' for c in rows.MESSAGE_COLUMNS)}"
)
_CALLBACK_COLUMNS = ("id", "account_sid", "url", "method", "params", "idempotency_key", "attempts", "created_at",
                     "next_attempt_at")  # fmt: skip
# Returns the rows as they were before the lease moved next_attempt_at (as SQLite does).
_CLAIM_CALLBACKS = (
    f"WITH due AS (SELECT {', '.join(_CALLBACK_COLUMNS)} FROM callbacks WHERE state = 'pending' "
    "AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
    "UPDATE callbacks SET next_attempt_at = %s FROM due WHERE callbacks.id = due.id "
    f"RETURNING {', '.join(f'due.{c}' for c in _CALLBACK_COLUMNS)}"
)
# Messages of a sender left ``sending`` by a previous lease holder go back to the queue, and their
# segments back to the sender's backlog.
_REQUEUE_IN_FLIGHT = (
    "WITH r AS (UPDATE messages SET status = 'queued' WHERE from_number = %s AND status = 'sending' "
    "RETURNING num_segments) "
    "UPDATE senders SET queued_segments = queued_segments + (SELECT SUM(num_segments) FROM r) "
    "WHERE phone_number = %s AND EXISTS (SELECT 1 FROM r)"
)


_INSERT_CALLBACK = (
    f"INSERT INTO callbacks ({', '.join(rows.CALLBACK_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(rows.CALLBACK_INSERT_COLUMNS))})"
)


async def _insert_callback(cursor: Cursor, callback: NewCallback, now: int) -> None:
    await cursor.execute(_INSERT_CALLBACK, rows.callback_row(callback, now))


class PostgresDeliveryMixin:
    writer: PgGroupCommitWriter
    queue_listeners: list[Callable[[str], None]]

    def add_queue_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(sender)`` after each committed enqueue, by this process or (via NOTIFY) another."""
        self.queue_listeners.append(listener)

    async def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        """One write statement in the next group commit; its row count."""
        return await self.writer.submit(Statement(sql, params, rowcount))

    # -- the queue -----------------------------------------------------------------------------------

    async def enqueue_message(self, message: Message, queue_cap_segments: int | None) -> Message:
        """Insert a queued message, refusing it (QueueFull) if its sender's backlog would pass the cap."""
        params = (*rows.message_row(message), queue_cap_segments if queue_cap_segments is not None else 1 << 62)

        def admitted(row: TupleRow | None, _count: int) -> int:
            if row is None:  # the cap refused to grow the backlog; the message goes with the rollback
                raise QueueFull(message.from_)
            return int(row[0])

        enqueue = Statement(_ENQUEUE, params, admitted, duplicate_error=True)
        seq = await self.writer.submit(enqueue, notify=(QUEUE_CHANNEL, message.from_), lock_key=message.from_)
        for listener in self.queue_listeners:
            listener(message.from_)
        return replace(message, seq=seq)

    async def senders_with_work(self) -> list[tuple[str, int]]:
        """Every sender with a queued backlog, and its persisted tat (epoch microseconds)."""
        found = await self._query("SELECT phone_number, tat FROM senders WHERE queued_segments > 0")
        return [(r[0], r[1]) for r in found]

    async def claim_queued(
        self, sender: str, limit: int, now: int, owner: str, interval_micros: int = 0
    ) -> list[Message] | None:
        """Move the sender's oldest ``limit`` queued messages to ``sending`` and return them, oldest first.

        Only for the holder of the sender's lease (``owner``); anyone else gets None. The claimed
        segments are reserved in the sender's tat (``interval_micros`` per segment).
        """

        async def op(cursor: Cursor) -> list[Message] | None:
            await cursor.execute(
                "SELECT tat FROM senders WHERE phone_number = %s AND lease_owner = %s FOR UPDATE", (sender, owner)
            )
            held = await cursor.fetchone()
            if held is None:
                return None
            await cursor.execute(_CLAIM, (sender, limit, now))
            claimed = sorted((rows.message_from(r) for r in await cursor.fetchall()), key=lambda m: m.seq)
            if not claimed:
                await cursor.execute("UPDATE senders SET queued_segments = 0 WHERE phone_number = %s", (sender,))
                return []
            segments = sum(m.num_segments for m in claimed)
            reserved = max(now, held[0]) + segments * interval_micros
            await cursor.execute(
                "UPDATE senders SET queued_segments = GREATEST(0, queued_segments - %s), tat = %s "
                "WHERE phone_number = %s",
                (segments, reserved, sender),
            )
            return claimed

        return await self.writer.submit(op, lock_key=sender)

    async def acquire_senders(self, owner: str, senders: Sequence[str], now: int, lease_until: int) -> dict[str, int]:
        """Take or renew the lease on each sender that is free, expired or already ours; their tats.

        Taking a sender over from another (dead or stopped) dispatcher re-drives the messages it left in
        ``sending``: back to the queue, in their original order.
        """
        # One lock order for every process, so two acquirers cannot deadlock on each other's rows.
        ordered = sorted(set(senders))

        async def op(cursor: Cursor) -> dict[str, int]:
            acquired: dict[str, int] = {}
            for sender in ordered:
                await cursor.execute(
                    "SELECT lease_owner, lease_expires, tat FROM senders WHERE phone_number = %s FOR UPDATE",
                    (sender,),
                )
                row = await cursor.fetchone()
                if row is None or (row[0] not in (None, owner) and (row[1] or 0) >= now):
                    continue
                await cursor.execute(
                    "UPDATE senders SET lease_owner = %s, lease_expires = %s WHERE phone_number = %s",
                    (owner, lease_until, sender),
                )
                if row[0] != owner:
                    await cursor.execute(_REQUEUE_IN_FLIGHT, (sender, sender))
                acquired[sender] = int(row[2])
            return acquired

        found = await self.writer.submit(op, lock_key=ordered[0] if ordered else None)
        return {s: found[s] for s in senders if s in found}

    async def release_senders(self, owner: str, senders: Sequence[tuple[str, int]]) -> None:
        """Give up the leases on idle senders, persisting each one's tat (never moving it backwards)."""
        if not senders:
            return
        params = [(tat, sender, owner) for sender, tat in sorted(senders)]

        async def op(cursor: Cursor) -> None:
            await cursor.executemany(
                "UPDATE senders SET lease_owner = NULL, lease_expires = NULL, tat = GREATEST(tat, %s) "
                "WHERE phone_number = %s AND lease_owner = %s",
                params,
            )

        await self.writer.submit(op, lock_key=params[0][1])

    async def apply_transitions(
        self, transitions: Sequence[Transition], now: int, sender_tat: tuple[str, int] | None = None
    ) -> list[bool]:
        """Apply each guarded transition; True for those whose guard held. Optionally persist a tat."""
        statements: list[tuple[str, list[Any]]] = []
        for t in transitions:
            columns = [c for c in t.values if c in rows.MESSAGE_UPDATABLE]
            if len(columns) != len(t.values):
                raise ValueError(f"not updatable: {sorted(set(t.values) - rows.MESSAGE_UPDATABLE)}")
            sets = ", ".join([f"{c} = %s" for c in columns] + ["date_updated = %s"])
            statements.append(
                (
                    f"UPDATE messages SET {sets} WHERE sid = %s AND status = ANY(%s) RETURNING from_number",
                    [*(t.values[c] for c in columns), now, t.sid, sorted(t.expected)],
                )
            )

        async def op(cursor: Cursor) -> list[bool]:
            applied: list[bool] = []
            for t, (sql, params) in zip(transitions, statements, strict=True):
                await cursor.execute(sql, params)
                row = await cursor.fetchone()
                if row is not None and t.callback is not None:
                    await _insert_callback(cursor, t.callback, now)
                if row is not None and t.requeued_segments:
                    await cursor.execute(
                        "UPDATE senders SET queued_segments = queued_segments + %s WHERE phone_number = %s",
                        (t.requeued_segments, row[0]),
                    )
                applied.append(row is not None)
            if sender_tat is not None:
                await cursor.execute(
                    "UPDATE senders SET tat = GREATEST(tat, %s) WHERE phone_number = %s",
                    (sender_tat[1], sender_tat[0]),
                )
            return applied

        return await self.writer.submit(op, lock_key=sender_tat[0] if sender_tat is not None else None)

    async def recover_in_flight(self) -> int:
        """At start-up of the only dispatcher on this database: every lease is stale, messages left
        ``sending`` go back to the queue in their original order, and every sender's backlog counter is
        recounted. (With several dispatchers, leases re-drive per sender instead; see acquire_senders.)"""

        async def op(cursor: Cursor) -> int:
            await cursor.execute("UPDATE messages SET status = 'queued' WHERE status = 'sending'")
            requeued = cursor.rowcount
            await cursor.execute(
                "UPDATE senders SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner IS NOT NULL"
            )
            await cursor.execute("UPDATE senders SET queued_segments = 0 WHERE queued_segments <> 0")
            await cursor.execute(
                "INSERT INTO senders (phone_number, queued_segments) "
                "SELECT from_number, SUM(num_segments)::bigint FROM messages WHERE status = 'queued' "
                "GROUP BY from_number "
                "ON CONFLICT (phone_number) DO UPDATE SET queued_segments = excluded.queued_segments"
            )
            return requeued

        return await self.writer.submit(op)

    async def expired_queued(self, now: int, limit: int) -> list[Message]:
        found = await self._query(
            f"{_SELECT_MESSAGE} WHERE status = 'queued' AND expires_at < %s ORDER BY expires_at LIMIT %s", (now, limit)
        )
        return [rows.message_from(r) for r in found]

    async def find_by_carrier_id(self, carrier_message_id: str) -> Message | None:
        found = await self._query(f"{_SELECT_MESSAGE} WHERE carrier_message_id = %s", (carrier_message_id,))
        return rows.message_from(found[0]) if found else None

    async def get_message_by_sid(self, sid: str) -> Message | None:
        found = await self._query(f"{_SELECT_MESSAGE} WHERE sid = %s", (sid,))
        return rows.message_from(found[0]) if found else None

    # -- the callback outbox -------------------------------------------------------------------------

    async def claim_callbacks(self, now: int, limit: int, lease_until: int) -> list[Callback]:
        async def op(cursor: Cursor) -> list[Callback]:
            await cursor.execute(_CLAIM_CALLBACKS, (now, limit, lease_until))
            return [rows.callback_from(r) for r in await cursor.fetchall()]

        claimed = await self.writer.submit(op)
        return sorted(claimed, key=lambda c: (c.next_attempt_at, c.id))

    async def callback_delivered(self, callback_id: int, now: int, status: int) -> None:
        await self._execute(
            "UPDATE callbacks SET state = 'delivered', finished_at = %s, last_status = %s, attempts = attempts + 1 "
            "WHERE id = %s",
            (now, status, callback_id),
        )

    async def callback_retry(self, callback_id: int, attempts: int, next_attempt_at: int, error: str) -> None:
        await self._execute(
            "UPDATE callbacks SET attempts = %s, next_attempt_at = %s, last_error = %s WHERE id = %s",
            (attempts, next_attempt_at, error[:500], callback_id),
        )

    async def callback_dead(self, callback_id: int, now: int, error: str) -> None:
        await self._execute(
            "UPDATE callbacks SET state = 'dead', finished_at = %s, last_error = %s, attempts = attempts + 1 "
            "WHERE id = %s",
            (now, error[:500], callback_id),
        )

    async def auth_token(self, account_sid: str) -> str | None:
        found = await self._query("SELECT auth_token FROM accounts WHERE sid = %s", (account_sid,))
        return str(found[0][0]) if found else None

    async def pending_callbacks(self) -> int:
        return int((await self._query("SELECT COUNT(*) FROM callbacks WHERE state = 'pending'"))[0][0])

    # -- the simulated carrier's record --------------------------------------------------------------

    async def record_sim_submission(self, record: SimRecord) -> int:
        params = (
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
        )

        sql = (
            "INSERT INTO sim_messages (account_sid, message_sid, carrier_message_id, from_number, to_number, "
            "body, segments, submitted_at, outcome, error_code, receipt_due_at, receipt_done) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
        )
        return await self.writer.submit(Statement(sql, params, first_int))

    async def pending_sim_receipts(self) -> list[SimRecord]:
        found = await self._query(
            f"SELECT {rows.SIM_COLUMNS} FROM sim_messages WHERE receipt_done = 0 ORDER BY receipt_due_at, id"
        )
        return [rows.sim_from(r) for r in found]

    async def sim_receipt_sent(self, record_id: int) -> None:
        await self._execute("UPDATE sim_messages SET receipt_done = 1 WHERE id = %s", (record_id,))

    async def list_sim_submissions(
        self, account_sid: str, from_: str | None = None, to: str | None = None, limit: int = 10_000
    ) -> list[SimRecord]:
        sql = f"SELECT {rows.SIM_COLUMNS} FROM sim_messages WHERE account_sid = %s"
        params: list[Any] = [account_sid]
        if from_ is not None:
            sql += " AND from_number = %s"
            params.append(from_)
        if to is not None:
            sql += " AND to_number = %s"
            params.append(to)
        sql += " ORDER BY submitted_at, id LIMIT %s"
        params.append(limit)
        return [rows.sim_from(r) for r in await self._query(sql, params)]

    async def clear_sim_submissions(self, account_sid: str) -> int:
        return await self._execute("DELETE FROM sim_messages WHERE account_sid = %s", (account_sid,))

    # -- carrier connectors: the SMSC's id of each part, and the receipts that match them ----------------

    async def record_parts(self, carrier: str, message_sid: str, smsc_ids: Sequence[str], now: int) -> None:
        """Remember the SMSC's id of each part (ids already normalised by the caller)."""
        params = [(carrier, smsc_id, message_sid, i + 1, len(smsc_ids), now) for i, smsc_id in enumerate(smsc_ids)]
        if not params:
            return

        async def op(cursor: Cursor) -> None:
            await cursor.executemany(
                "INSERT INTO carrier_parts (carrier, smsc_id, message_sid, part, parts, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (carrier, smsc_id) DO UPDATE SET "
                "message_sid = excluded.message_sid, part = excluded.part, parts = excluded.parts, state = NULL, "
                "error_code = NULL, created_at = excluded.created_at",
                params,
            )

        await self.writer.submit(op)

    async def part_receipt(
        self, carrier: str, id_forms: Sequence[str], delivered: bool, error_code: int | None
    ) -> PartOutcome | None:
        """Apply one part's receipt (matching any of the id's forms); the message's outcome so far.

        Idempotent: a repeated receipt changes nothing, and a part's first final state stands. The
        message's parts are locked first, so receipts for two parts handled at once (in two processes)
        cannot both miss each other and leave the message pending for ever.
        """
        forms = list(id_forms)

        async def op(cursor: Cursor) -> PartOutcome | None:
            await cursor.execute(
                "SELECT smsc_id, message_sid FROM carrier_parts WHERE carrier = %s AND smsc_id = ANY(%s) "
                "ORDER BY created_at DESC LIMIT 1",
                (carrier, forms),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            smsc_id, message_sid = row
            await cursor.execute(
                "SELECT 1 FROM carrier_parts WHERE message_sid = %s ORDER BY carrier, smsc_id FOR UPDATE",
                (message_sid,),
            )
            await cursor.execute(
                "UPDATE carrier_parts SET state = %s, error_code = %s "
                "WHERE carrier = %s AND smsc_id = %s AND state IS NULL",
                ("delivered" if delivered else "undelivered", error_code, carrier, smsc_id),
            )
            await cursor.execute(
                "SELECT state, error_code FROM carrier_parts WHERE message_sid = %s ORDER BY part", (message_sid,)
            )
            parts = await cursor.fetchall()
            failed = [p for p in parts if p[0] == "undelivered"]
            if failed:
                return PartOutcome(message_sid, False, failed[0][1])
            if all(p[0] == "delivered" for p in parts):
                return PartOutcome(message_sid, True, None)
            return PartOutcome(message_sid, None, None)

        return await self.writer.submit(op)

    async def acquire_bind(self, carrier: str, slots: int, owner: str, now: int, lease_until: int) -> bool:
        """Take or renew one of the carrier's ``slots`` bind slots for ``owner``; False if all are held."""

        async def op(cursor: Cursor) -> bool:
            await cursor.executemany(
                "INSERT INTO carrier_binds (carrier, slot) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(carrier, slot) for slot in range(slots)],
            )
            await cursor.execute(
                "SELECT slot FROM carrier_binds WHERE carrier = %s AND slot < %s "
                "AND (owner = %s OR owner IS NULL OR expires < %s) "
                "ORDER BY owner IS NOT DISTINCT FROM %s DESC, slot LIMIT 1 FOR UPDATE SKIP LOCKED",
                (carrier, slots, owner, now, owner),
            )
            row = await cursor.fetchone()
            if row is None:
                return False
            await cursor.execute(
                "UPDATE carrier_binds SET owner = %s, expires = %s WHERE carrier = %s AND slot = %s",
                (owner, lease_until, carrier, row[0]),
            )
            return True

        return await self.writer.submit(op)

    async def release_bind(self, carrier: str, owner: str) -> None:
        await self._execute(
            "UPDATE carrier_binds SET owner = NULL, expires = NULL WHERE carrier = %s AND owner = %s", (carrier, owner)
        )
