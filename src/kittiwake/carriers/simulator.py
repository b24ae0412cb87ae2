"""The simulated carrier: deterministic, scriptable, and the default.

Every valid destination is accepted, then delivered after ``receipt_delay`` seconds. Rules by number
or prefix (longest prefix wins) script other fates: rejected at submission (the message fails) or
accepted and later undelivered. Each submission is recorded in the database (``GET /sim/messages``
lists them, per account, in submission order); receipts not yet sent when the process stops are sent
after it starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import replace
from typing import Protocol

from kittiwake.carriers.base import MoHandler, Receipt, ReceiptHandler, Submission, SubmitResult
from kittiwake.clock import Clock
from kittiwake.config import SimRule, SimulatorSettings
from kittiwake.store.base import SimRecord

log = logging.getLogger(__name__)

# Twilio's texts for the error codes the simulator gives (twilio-api.md §9).
ERROR_MESSAGES = {
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}


class SimulatorStore(Protocol):
    async def record_sim_submission(self, record: SimRecord) -> int: ...
    async def pending_sim_receipts(self) -> list[SimRecord]: ...
    async def sim_receipt_sent(self, record_id: int) -> None: ...


def rule_for(rules: tuple[SimRule, ...], to: str) -> SimRule | None:
    """The rule with the longest prefix of ``to``, if any."""
    best: SimRule | None = None
    for rule in rules:
        if to.startswith(rule.prefix) and (best is None or len(rule.prefix) > len(best.prefix)):
            best = rule
    return best


class SimulatedCarrier:
    name = "simulator"

    def __init__(
        self, store: SimulatorStore, clock: Clock, settings: SimulatorSettings, *, name: str = "simulator"
    ) -> None:
        self.name = name
        self._store = store
        self._clock = clock
        self._settings = settings
        self._on_receipt: ReceiptHandler | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.submitted = 0

    async def start(self, on_receipt: ReceiptHandler, on_mo: MoHandler | None = None) -> None:
        self._on_receipt = on_receipt
        for record in await self._store.pending_sim_receipts():
            self._schedule(record)

    def bind_limits(self) -> dict[str, int]:
        return {}  # the simulator has no binds to share

    def allow_bind(self, name: str, allowed: bool) -> None:
        return None

    async def submit(self, submission: Submission) -> SubmitResult:
        rule = rule_for(self._settings.rules, submission.to)
        outcome = rule.outcome if rule else "delivered"
        error_code = rule.error_code if rule and outcome != "delivered" else None
        if outcome != "delivered" and error_code is None:
            error_code = 30003 if outcome == "undelivered" else 30008
        delay = rule.receipt_delay if rule and rule.receipt_delay is not None else self._settings.receipt_delay
        now = self._clock.now_micros()
        carrier_id = secrets.token_hex(8)
        record = SimRecord(
            id=0,
            account_sid=submission.account_sid,
            message_sid=submission.message_sid,
            carrier_message_id=carrier_id,
            from_=submission.from_,
            to=submission.to,
            body=submission.body,
            segments=submission.segments,
            submitted_at=now,
            outcome=outcome,
            error_code=error_code,
            receipt_due_at=None if outcome == "failed" else now + round(delay * 1_000_000),
        )
        self.submitted += 1
        # The record is written in the background: pacing must not wait for the disk. Its receipt is
        # scheduled once the row exists (a crash before that re-drives the message, which is not sent yet
        # as far as the store knows, so the record never shows it twice).
        task = asyncio.get_running_loop().create_task(self._record(record, outcome != "failed"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if outcome == "failed":
            return SubmitResult(False, carrier_id, error_code, ERROR_MESSAGES.get(error_code or 0, "Unknown error"))
        return SubmitResult(True, carrier_id)

    async def _record(self, record: SimRecord, with_receipt: bool) -> None:
        try:
            record_id = await self._store.record_sim_submission(record)
        except Exception:
            log.exception("recording the simulated submission of %s failed", record.message_sid)
            return
        if with_receipt:
            self._schedule(replace(record, id=record_id))

    def _schedule(self, record: SimRecord) -> None:
        due = record.receipt_due_at or 0
        delay = max(0.0, (due - self._clock.now_micros()) / 1_000_000)
        loop = asyncio.get_running_loop()
        self._timers[record.id] = loop.call_later(delay, self._fire, record)

    def _fire(self, record: SimRecord) -> None:
        self._timers.pop(record.id, None)
        task = asyncio.get_running_loop().create_task(self._deliver_receipt(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_receipt(self, record: SimRecord) -> None:
        delivered = record.outcome == "delivered"
        receipt = Receipt(
            record.carrier_message_id,
            delivered,
            None if delivered else record.error_code,
            None if delivered else ERROR_MESSAGES.get(record.error_code or 0, "Unknown error"),
        )
        try:
            if self._on_receipt is not None:
                await self._on_receipt(receipt)
            await self._store.sim_receipt_sent(record.id)
        except Exception:  # a receipt must never take the carrier down; it is retried after a restart
            log.exception("simulated receipt for %s failed", record.message_sid)

    async def stop(self) -> None:
        """Cancel receipt timers (their rows stay pending and fire after the next start)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
