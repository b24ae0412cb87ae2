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
