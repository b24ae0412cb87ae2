"""The SQLite queries of carrier connectors: SMSC message ids per part and receipts that match them.

A mixin of :class:`kittiwake.store.sqlite.SqliteStore`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from kittiwake.store.base import PartOutcome
from kittiwake.store.sqlite_writer import GroupCommitWriter


class SqliteCarrierMixin:
    writer: GroupCommitWriter

    async def record_parts(self, carrier: str, message_sid: str, smsc_ids: Sequence[str], now: int) -> None:
        """Remember the SMSC's id of each part (ids already normalised by the caller)."""
        rows = [(carrier, smsc_id, message_sid, i + 1, len(smsc_ids), now) for i, smsc_id in enumerate(smsc_ids)]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO carrier_parts (carrier, smsc_id, message_sid, part, parts, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (carrier, smsc_id) DO UPDATE SET "
                "message_sid = excluded.message_sid, part = excluded.part, parts = excluded.parts, state = NULL, "
                "error_code = NULL, created_at = excluded.created_at",
                rows,
            )

        await self.writer.submit(op)

    async def part_receipt(
        self, carrier: str, id_forms: Sequence[str], delivered: bool, error_code: int | None
    ) -> PartOutcome | None:
        """Apply one part's receipt (matching any of the id's forms); the message's outcome so far.

        Idempotent: a repeated receipt changes nothing, and a part's first final state stands.
        """

        def op(conn: sqlite3.Connection) -> PartOutcome | None:
            marks = ", ".join("?" * len(id_forms))
            row = conn.execute(
                f"SELECT smsc_id, message_sid FROM carrier_parts WHERE carrier = ? AND smsc_id IN ({marks}) "
                "ORDER BY created_at DESC LIMIT 1",
                (carrier, *id_forms),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE carrier_parts SET state = ?, error_code = ? "
                "WHERE carrier = ? AND smsc_id = ? AND state IS NULL",
                ("delivered" if delivered else "undelivered", error_code, carrier, row[0]),
            )
            parts = conn.execute(
                "SELECT state, error_code FROM carrier_parts WHERE message_sid = ? ORDER BY part", (row[1],)
            ).fetchall()
            failed = [p for p in parts if p[0] == "undelivered"]
            if failed:
                return PartOutcome(row[1], False, failed[0][1])
            if all(p[0] == "delivered" for p in parts):
                return PartOutcome(row[1], True, None)
            return PartOutcome(row[1], None, None)

        return await self.writer.submit(op)

    async def acquire_bind(self, carrier: str, slots: int, owner: str, now: int, lease_until: int) -> bool:
        """Take or renew one of the carrier's ``slots`` bind slots for ``owner``; False if all are held."""

        def op(conn: sqlite3.Connection) -> bool:
            conn.executemany(
                "INSERT INTO carrier_binds (carrier, slot) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(carrier, slot) for slot in range(slots)],
            )
            row = conn.execute(
                "SELECT slot FROM carrier_binds WHERE carrier = ? AND slot < ? "
                "AND (owner = ? OR owner IS NULL OR expires < ?) ORDER BY owner = ? DESC, slot LIMIT 1",
                (carrier, slots, owner, now, owner),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "UPDATE carrier_binds SET owner = ?, expires = ? WHERE carrier = ? AND slot = ?",
                (owner, lease_until, carrier, row[0]),
            )
            return True

        return await self.writer.submit(op)

    async def release_bind(self, carrier: str, owner: str) -> None:
        await self.writer.submit(
            lambda conn: conn.execute(
                "UPDATE carrier_binds SET owner = NULL, expires = NULL WHERE carrier = ? AND owner = ?",
                (carrier, owner),
            )
        )
