"""The dispatcher: per-sender pacing, claims from the durable queue, submission, receipts.

One loop keeps senders with queued work in the GCRA scheduler (:mod:`kittiwake.pacing`) and sleeps
until the head sender is due (or new work arrives), never on a fixed tick. A due sender gets a task
that claims its oldest queued messages a little ahead of time (``LEAD``), waits for each message's
exact earliest instant, submits it, charges the sender's virtual clock and records the outcome. The
claim, the status change, the callback row and the sender's pacing state are written by the store in
group-committed transactions, so a restart neither loses nor bursts anything.

Pacing uses the monotonic clock; the persisted ``tat`` is converted to wall-clock microseconds, the
only clock two processes (or two boots) share.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kittiwake.carriers.base import Carrier, CarrierUnavailable, MoHandler, Receipt, Submission, SubmitResult
from kittiwake.clock import Clock
from kittiwake.dispatch.callbacks import status_callback
from kittiwake.domain import MessageStatus, NumberKind
from kittiwake.lifecycle import apply as decide
from kittiwake.models import Message
from kittiwake.pacing import Rate, RatePolicy, Scheduler
from kittiwake.store.base import DeliveryStore, Transition

log = logging.getLogger(__name__)

S = MessageStatus
EXPIRED_CODE = 30001
EXPIRED_MESSAGE = "Queue overflow"


# What Twilio bills a US SMS segment; the simulated carrier charges the same so `price` looks real.
PRICE_PER_SEGMENT = Decimal("0.00790")


def price_of(segments: int) -> str:
    """Twilio's price format: a negative decimal string with five places, per segment sent."""
    return f"-{PRICE_PER_SEGMENT * segments:.5f}"


class Dispatcher:
    # Claim this long before a sender is due, so the database round trip is off the critical path.
    LEAD = 0.05
    # A fast sender (a short code) claims up to this many seconds of its rate at once.
    BATCH_SECONDS = 0.25
    MAX_BATCH = 200
    # A dispatcher paces a sender only while it holds the sender's lease (several dispatchers can share one
    # database); leases are renewed well before they end, and a dead dispatcher's leases lapse after this.
    LEASE_SECONDS = 5.0
    # After the carrier could not take a submission, the sender waits this long before trying again.
    CARRIER_RETRY_SECONDS = 1.0

    def __init__(
        self,
        store: DeliveryStore,
        carrier: Carrier,
        clock: Clock,
        policy: RatePolicy,
        on_callbacks: Callable[[], None] = lambda: None,
        poll_interval: float = 1.0,
        on_mo: MoHandler | None = None,
    ) -> None:
        self._store = store
        self._carrier = carrier
        self._clock = clock
        self._policy = policy
        self._on_callbacks = on_callbacks
        self._poll_interval = poll_interval
        self._on_mo = on_mo
        self._scheduler = Scheduler()
        self._wake = asyncio.Event()
        self._kinds: dict[str, str] = {}
        self._notified_in_flight: set[str] = set()
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        # Senders whose lease this dispatcher holds, with the monotonic instant it ends.
        self._held: dict[str, float] = {}
        # Carriers whose binds are limited (several dispatchers), and those whose bind slot we hold.
        self._bind_limits: dict[str, int] = {}
        self._binds_held: set[str] = set()
        # Per sender, submissions whose status write has not committed yet.
        self._unrecorded: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        # Metrics (read by /metrics and the benchmarks).
        self.submitted = 0
        self.failed = 0
        self.expired = 0
        self.requeued_at_start = 0
        self.lateness: collections.deque[float] = collections.deque(maxlen=100_000)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, *, sole_dispatcher: bool = True) -> None:
        """Start pacing. ``sole_dispatcher`` (SQLite: one serve per data directory) re-drives everything a
        previous run left in flight at once; with several dispatchers that happens per sender, when a
        dispatcher takes over a lapsed lease."""
        if sole_dispatcher:
            self.requeued_at_start = await self._store.recover_in_flight()
        else:
            # Several dispatchers share the carriers' bind slots: bind only once a slot is ours.
            self._bind_limits = self._carrier.bind_limits()
            for name in self._bind_limits:
                self._carrier.allow_bind(name, False)
            await self._maintain_binds()
        if self.requeued_at_start:
            log.warning("re-driving %d messages left in flight by the previous run", self.requeued_at_start)
        await self._load_senders()
        await self._carrier.start(self._on_receipt, self._on_mo)
        self._loops = [asyncio.create_task(self._run()), asyncio.create_task(self._housekeeping())]

    async def stop(self) -> None:
        """Stop claiming; finish submissions under way and park claimed-but-unsent messages back in the queue."""
        self._stopping = True
        self._wake.set()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=10)
            if pending:  # a carrier that cannot finish (a throttling SMSC): stop it, the submissions park
                await self._carrier.stop()
                await asyncio.wait(pending, timeout=10)
        if self._held:  # hand the senders over at once instead of when the leases lapse
            with contextlib.suppress(Exception):
                await self._store.release_senders(self.owner, [(s, self._tat_wall(s)) for s in self._held])
            self._held.clear()
        for name in list(self._binds_held):
            with contextlib.suppress(Exception):
                await self._store.release_bind(name, self.owner)
        self._binds_held.clear()
        await self._carrier.stop()

    def notify(self, sender: str) -> None:
        """New queued work for ``sender`` (called on the dispatcher's loop after the row committed)."""
        if self._stopping:
            return
        if self._scheduler.is_in_flight(sender):
            self._notified_in_flight.add(sender)
            return
        if not self._scheduler.is_scheduled(sender):
            self._scheduler.mark_ready(sender, self._rate(sender), self._clock.monotonic())
            self._wake.set()

    # -- the loop ------------------------------------------------------------------------------------

    async def _load_senders(self) -> None:
        """Lease every sender with queued work that no other dispatcher holds, and schedule it."""
        waiting = [
            sender
            for sender, _ in await self._store.senders_with_work()
            if sender not in self._held and not self._scheduler.is_in_flight(sender)
        ]
        for sender, tat_wall in (await self._acquire(waiting)).items():
            await self._kind(sender)
            self._restore_tat(sender, tat_wall)
            self._scheduler.mark_ready(sender, self._rate(sender), self._clock.monotonic())
        if waiting:
            self._wake.set()

    async def _maintain_binds(self) -> None:
        """Take or renew a bind slot of each limited carrier; let the carrier bind only while we hold one.

        A dispatcher without every slot it needs takes no senders (a hot standby): with one bind per SMSC
        account, one dispatcher sends and the others take over when its slot lapses.
        """
        now = self._clock.now_micros()
        until = now + round(self.LEASE_SECONDS * 1_000_000)
        for name, slots in self._bind_limits.items():
            held = await self._store.acquire_bind(name, slots, self.owner, now, until)
            if held and name not in self._binds_held:
                log.info("bind slot of %s taken: binding", name)
                self._binds_held.add(name)
                self._carrier.allow_bind(name, True)
            elif not held and name in self._binds_held:
                log.warning("bind slot of %s lost: unbinding and handing senders over", name)
                self._binds_held.discard(name)
                self._carrier.allow_bind(name, False)

    def _may_take_senders(self) -> bool:
        return self._binds_held.issuperset(self._bind_limits)

    async def _acquire(self, senders: list[str]) -> dict[str, int]:
        if not senders or not self._may_take_senders():
            return {}
        now_mono, now_wall = self._clock.monotonic(), self._clock.now_micros()
        until = now_wall + round(self.LEASE_SECONDS * 1_000_000)
        acquired = await self._store.acquire_senders(self.owner, senders, now_wall, until)
        for sender in acquired:
            self._held[sender] = now_mono + self.LEASE_SECONDS
        return acquired

    def _restore_tat(self, sender: str, tat_wall: int) -> None:
        """Adopt the persisted tat (wall clock) when it is later than what this process knows."""
        now_mono, now_wall = self._clock.monotonic(), self._clock.now_micros()
        if tat_wall > now_wall:
            tat = now_mono + (tat_wall - now_wall) / 1_000_000
            known = self._scheduler.tat(sender)
            if known is None or tat > known:
                self._scheduler.set_tat(sender, tat)

    def _tat_wall(self, sender: str) -> int:
        tat = self._scheduler.tat(sender)
        now_mono, now_wall = self._clock.monotonic(), self._clock.now_micros()
        return now_wall + round(((tat if tat is not None else now_mono) - now_mono) * 1_000_000)

    async def _maintain_leases(self) -> None:
        """Renew the leases of senders with work; release those of idle senders (persisting their tat)."""
        now = self._clock.monotonic()
        # A sender whose last submissions are not recorded yet keeps its lease: released now, another
        # dispatcher taking it over would find those messages still `sending` and send them again.
        busy = [
            s
            for s in self._held
            if self._scheduler.is_scheduled(s) or self._scheduler.is_in_flight(s) or s in self._unrecorded
        ]
        idle = [s for s in self._held if s not in busy]
        if idle:
            # Forget them first: a sender that gets work while the release is on its way then acquires anew.
            released = [(s, self._tat_wall(s)) for s in idle]
            for sender in idle:
                del self._held[sender]
            await self._store.release_senders(self.owner, released)
        due = [s for s in busy if self._held[s] - now < self.LEASE_SECONDS * 0.6]
        renewed = await self._acquire(due)
        for sender in due:
            if sender not in renewed:  # another dispatcher has it now: stop pacing it here
                log.warning("lost the lease on %s", sender)
                self._held.pop(sender, None)
                if not self._scheduler.is_in_flight(sender):
                    self._scheduler.mark_idle(sender)

    async def _run(self) -> None:
        while not self._stopping:
            head = self._scheduler.next_due()
            now = self._clock.monotonic()
            wait = self._poll_interval if head is None else head[0] - self.LEAD - now
            if wait > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            assert head is not None
            sender = self._scheduler.pop_due(now + self.LEAD)
            if sender is None:
                continue
            due = head[0]
            task = asyncio.create_task(self._drive(sender, due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _housekeeping(self) -> None:
        """Every poll interval: pick up work queued by other processes, expire stale messages, prune."""
        while not self._stopping:
            await asyncio.sleep(self._poll_interval)
            try:
                if self._bind_limits:
                    await self._maintain_binds()
                await self._maintain_leases()
                await self._load_senders()
                await self._expire_queued()
                self._scheduler.prune(self._clock.monotonic())
            except Exception:
                log.exception("dispatcher housekeeping failed; retrying at the next interval")

    async def _drive(self, sender: str, due: float) -> None:
        """Submit the sender's next messages at their exact times, then hand the sender back.

        Whatever goes wrong, the sender is handed back (rescheduled after a poll interval): a sender left
        "in flight" by a dead task would never be paced again (nothing reschedules an in-flight sender).
        """
        try:
            await self._drive_once(sender, due)
        except Exception:
            log.exception("driving %s failed; retrying in %.1f s", sender, self._poll_interval)
        finally:
            if self._scheduler.is_in_flight(sender):
                self._scheduler.reschedule(sender, self._rate(sender), self._clock.monotonic() + self._poll_interval)
                self._wake.set()

    async def _drive_once(self, sender: str, due: float) -> None:
        await self._kind(sender)
        rate = self._rate(sender)
        limit = max(1, min(self.MAX_BATCH, int(rate.segments_per_second * self.BATCH_SECONDS)))
        self._notified_in_flight.discard(sender)
        try:
            if not self._lease_ok(sender):
                acquired = await self._acquire([sender])
                if sender not in acquired:  # another dispatcher paces this sender
                    self._scheduler.mark_idle(sender)
                    return
                self._restore_tat(sender, acquired[sender])
                if self._scheduler.earliest(sender, self._clock.monotonic()) > due:
                    self._scheduler.reschedule(sender, rate, self._clock.monotonic())
                    self._wake.set()
                    return
            interval_micros = round(rate.interval * 1_000_000)
            batch = await self._store.claim_queued(sender, limit, self._clock.now_micros(), self.owner, interval_micros)
        except Exception:
            log.exception("claim for %s failed; retrying in %.1f s", sender, self._poll_interval)
            self._scheduler.reschedule(sender, rate, self._clock.monotonic() + self._poll_interval)
            self._wake.set()
            return
        if not batch:
            if sender in self._notified_in_flight:
                self._notified_in_flight.discard(sender)
                self._scheduler.reschedule(sender, rate, self._clock.monotonic())
            else:
                self._scheduler.mark_idle(sender)
            self._wake.set()
            return
        for index, message in enumerate(batch):
            if self._stopping:
                await self._park(batch[index:])
                break
            if message.expires_at is not None and self._clock.now_micros() > message.expires_at:
                await self._expire([message], from_status=S.SENDING)
                continue
            earliest = self._scheduler.earliest(sender, self._clock.monotonic())
            await self._sleep_until(earliest)
            if not self._lease_ok(sender):  # never submit for a sender another dispatcher may have taken
                await self._park(batch[index:])
                break
            if not await self._submit(sender, message, rate, max(due, earliest)):
                await self._park(batch[index:])
                self._scheduler.reschedule(sender, rate, self._clock.monotonic() + self.CARRIER_RETRY_SECONDS)
                self._wake.set()
                return
        self._scheduler.reschedule(sender, rate, self._clock.monotonic())
        self._wake.set()

    def _lease_ok(self, sender: str) -> bool:
        """True while this dispatcher's lease on ``sender`` has a safe margin left."""
        return self._held.get(sender, 0.0) - self._clock.monotonic() > self.LEASE_SECONDS * 0.2

    async def _sleep_until(self, moment: float) -> None:
        """Sleep until ``moment`` on the monotonic clock, never returning early.

        Event-loop timers are coarse (uvloop rounds to whole milliseconds and can wake up to ~1.3 ms early,
        measured by bench/pacing.py), so the last stretch is re-checked and finished with zero-length sleeps.
        """
        while True:
            delay = moment - self._clock.monotonic()
            if delay <= 0:
                return
            await asyncio.sleep(delay - 0.001 if delay > 0.002 else 0)

    async def _submit(self, sender: str, message: Message, rate: Rate, due: float) -> bool:
        """Hand one message to the carrier; False if the carrier could not take it (parked for retry)."""
        at = self._clock.monotonic()
        submission = Submission(message.sid, message.account_sid, message.from_, message.to, message.body,
                                message.num_segments)  # fmt: skip
        try:
            result = await self._carrier.submit(submission)
        except CarrierUnavailable as exc:
            log.warning("carrier unavailable for %s (%s); retrying the sender shortly", message.sid, exc)
            return False
        except Exception:
            log.exception("carrier %s failed on %s; parking it for retry", self._carrier.name, message.sid)
            return False
        # Charge from when the carrier really sent it: a carrier that retried (throttling, a lost
        # connection) sent it later than `at`, and the next message must keep its distance from that.
        sent_at = max(at, result.sent_at) if result.sent_at is not None else at
        tat = self._scheduler.record_submit(sender, message.num_segments, sent_at, rate)
        self.lateness.append(at - due)
        self.submitted += 1
        now_mono, now_wall = self._clock.monotonic(), self._clock.now_micros()
        tat_wall = now_wall + round((tat - now_mono) * 1_000_000)
        transition = self._after_submit(message, result, now_wall)
        # The write completes in the background: the next submission does not wait for the disk.
        task = asyncio.create_task(self._record([transition], now_wall, (sender, tat_wall)))
        self._tasks.add(task)
        self._unrecorded[sender] += 1
        task.add_done_callback(lambda done: self._recorded(sender, done))
        return True

    def _recorded(self, sender: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._unrecorded[sender] -= 1
        if not self._unrecorded[sender]:
            del self._unrecorded[sender]

    def _after_submit(self, message: Message, result: SubmitResult, now: int) -> Transition:
        if result.accepted:
            values: dict[str, object] = {
                "status": S.SENT.value,
                "date_sent": now,
                "submitted_at": now,
                "carrier_message_id": result.carrier_message_id,
                "price": price_of(message.num_segments),
            }
            return Transition(message.sid, frozenset({S.SENDING.value}), values, status_callback(message, S.SENT))
        self.failed += 1
        code = result.error_code or 30008
        values = {
            "status": S.FAILED.value,
            "submitted_at": now,
            "error_code": code,
            "error_message": result.error_message or "Unknown error",
            "carrier_message_id": result.carrier_message_id,
        }
        callback = status_callback(message, S.FAILED, code, result.error_message)
        return Transition(message.sid, frozenset({S.SENDING.value}), values, callback)

    async def _record(
        self, transitions: list[Transition], now: int, sender_tat: tuple[str, int] | None = None
    ) -> list[bool]:
        """Write status changes, retrying until they commit: transitions are guarded by status, so a retry
        is safe, and dropping one would leave a message `sending` to be sent again by a later lease holder."""
        delay = 0.1
        while True:
            try:
                applied = await self._store.apply_transitions(transitions, now, sender_tat)
                break
            except Exception:
                log.exception("recording %d status changes failed; retrying in %.1f s", len(transitions), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if any(applied[i] and t.callback is not None for i, t in enumerate(transitions)):
            self._on_callbacks()
        return applied

    async def _park(self, messages: list[Message]) -> None:
        """Claimed but not submitted: back to the queue, in order, with their segments."""
        transitions = [
            Transition(m.sid, frozenset({S.SENDING.value}), {"status": S.QUEUED.value}, None, m.num_segments)
            for m in messages
        ]
        await self._record(transitions, self._clock.now_micros())

    async def _expire_queued(self) -> None:
        expired = await self._store.expired_queued(self._clock.now_micros(), 500)
        if expired:
            await self._expire(expired, from_status=S.QUEUED)

    async def _expire(self, messages: list[Message], from_status: MessageStatus) -> None:
        """Past its ValidityPeriod: failed with 30001 instead of being sent late (twilio-api.md §8)."""
        transitions = []
        for m in messages:
            values: dict[str, object] = {
                "status": S.FAILED.value,
                "error_code": EXPIRED_CODE,
                "error_message": EXPIRED_MESSAGE,
            }
            callback = status_callback(m, S.FAILED, EXPIRED_CODE, EXPIRED_MESSAGE)
            # A queued message still counts in its sender's backlog; a claimed one no longer does.
            backlog = -m.num_segments if from_status is S.QUEUED else 0
            transitions.append(Transition(m.sid, frozenset({from_status.value}), values, callback, backlog))
        applied = await self._record(transitions, self._clock.now_micros())
        self.expired += sum(applied)

    # -- receipts ------------------------------------------------------------------------------------

    async def _on_receipt(self, receipt: Receipt) -> None:
        message = await self._receipt_message(receipt)
        if message is None:
            log.warning("receipt for unknown carrier message id %s ignored", receipt.carrier_message_id)
            return
        new = S.DELIVERED if receipt.delivered else S.UNDELIVERED
        decision = decide(message.status, new)
        if not decision.change:
            log.info("receipt %s for %s (%s): %s", new.value, message.sid, message.status.value, decision.verdict)
            return
        values: dict[str, object] = {"status": new.value}
        if not receipt.delivered:
            values["error_code"] = receipt.error_code or 30008
            values["error_message"] = receipt.error_message or "Unknown error"
        callback = status_callback(message, new, receipt.error_code if not receipt.delivered else None,
                                   receipt.error_message)  # fmt: skip
        # Guarded by every status the receipt may follow: the write of `sent` can land just before this one.
        allowed = frozenset(s.value for s in (S.SENDING, S.SENT) if decide(s, new).change)
        transition = Transition(message.sid, allowed, values, callback)
        [applied] = await self._record([transition], self._clock.now_micros())
        if not applied:
            log.warning("receipt %s for %s not applied: its status moved on", new.value, message.sid)

    async def _receipt_message(self, receipt: Receipt) -> Message | None:
        """The message a receipt is for, once the write of its submission has landed.

        A receipt can overtake the write that stores the carrier's id or the `sent` status (the SMSC answers
        within milliseconds); look again briefly rather than lose the receipt or the `sent` fields.
        """
        message = None
        for attempt in range(20):
            if receipt.message_sid is not None:
                message = await self._store.get_message_by_sid(receipt.message_sid)
            else:
                message = await self._store.find_by_carrier_id(receipt.carrier_message_id)
            if message is not None and message.status is not S.SENDING:
                return message
            await asyncio.sleep(min(0.05 * (attempt + 1), 0.25))
        return message

    # -- senders -------------------------------------------------------------------------------------

    async def _kind(self, sender: str) -> str:
        kind = self._kinds.get(sender)
        if kind is None:
            number = await self._store.find_number(sender)
            kind = number.kind.value if number is not None else NumberKind.LONG_CODE.value
            self._kinds[sender] = kind
        return kind

    def _rate(self, sender: str) -> Rate:
        return self._policy.rate_for(sender, self._kinds.get(sender, NumberKind.LONG_CODE.value))

    @property
    def leased_senders(self) -> int:
        return len(self._held)

    def pending_tasks(self) -> int:
        return len(self._tasks)
