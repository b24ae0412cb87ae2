"""The SMPP 3.4 carrier: submits from the durable queue over a bind, matches every receipt, receives MO.

- **Binds.** One transceiver bind, or a transmitter and a receiver; each reconnects forever with
  exponential backoff. A lost SMSC never loses a message: a submission waiting for a bind gives up after
  a short while with :class:`CarrierUnavailable`, and the dispatcher puts the message back in the queue.
- **Submitting.** At most ``window`` submit_sm are unanswered at once; a message stays ``sending`` until
  every part's submit_sm_resp. A submission whose connection dropped before its answer is re-driven on the
  next bind (counted in ``redriven``: the SMSC may have taken it).
- **Throttling.** ESME_RTHROTTLED and ESME_RMSGQFUL pause the bind (0.1 s, doubling up to 5 s, reset by
  the next success) and retry the same part, so a sender's order holds. Other temporary errors retry
  with backoff; permanent ones fail the message with the error code of :data:`STATUS_ERRORS`.
- **Receipts.** Each part's SMSC id is stored; a receipt is matched by its receipted_message_id TLV or
  the ``id:`` of its text, exactly first and then in the other base (hex vs decimal). The message is
  delivered when all its parts are, undelivered when any part is. Unknown ids are acknowledged and logged.
- **MO.** A deliver_sm that is not a receipt becomes an inbound message; concatenated parts (UDH or SAR)
  are reassembled, duplicates dropped, incomplete ones given up after a minute.

Error mapping for submit_sm_resp command_status (SMPP 3.4 §5.1.3) to Twilio error codes:

- 0x58 ESME_RTHROTTLED, 0x14 ESME_RMSGQFUL: slow down; pause the bind and retry in order.
- 0x08 ESME_RSYSERR, 0x45 ESME_RSUBMITFAIL, 0x64 ESME_RX_T_APPN, 0xFF ESME_RUNKNOWNERR: temporary; retried
  with backoff, and after 5 tries the dispatcher puts the message back in the queue.
- 0x0B ESME_RINVDSTADR, 0x50 ESME_RINVDSTTON, 0x51 ESME_RINVDSTNPI: failed, 30005 Unknown destination handset.
- 0x0A ESME_RINVSRCADR, 0x48 ESME_RINVSRCTON, 0x49 ESME_RINVSRCNPI: failed, 30004 Message blocked.
- 0x65 ESME_RX_P_APPN, 0x66 ESME_RX_R_APPN (the SMSC's application rejects it): failed, 30007 Message filtered.
- anything else: failed, 30008 Unknown error.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Coroutine
from typing import Any

from kittiwake.carriers.base import (
    CarrierUnavailable,
    MobileOriginated,
    MoHandler,
    Receipt,
    ReceiptHandler,
    Submission,
    SubmitResult,
)
from kittiwake.carriers.reassembly import Part, Reassembler
from kittiwake.carriers.smpp_link import BindRefused, Link, LinkLost
from kittiwake.clock import Clock
from kittiwake.config import CarrierSettings
from kittiwake.smpp import pdu as p
from kittiwake.smpp.constants import EsmClass, Ton
from kittiwake.smpp.receipt import (
    canonical_message_id,
    message_state_to_stat,
    normalise_message_id,
    parse_receipt,
    stat_to_status,
)
from kittiwake.smpp.segments import Concatenation, apply_part, build_parts, decode_short_message
from kittiwake.store.base import CarrierStore

log = logging.getLogger(__name__)

THROTTLING = frozenset({0x58, 0x14})
TEMPORARY = frozenset({0x08, 0x45, 0x64, 0xFF})
STATUS_ERRORS = {
    0x0B: (30005, "Unknown destination handset"),
    0x50: (30005, "Unknown destination handset"),
    0x51: (30005, "Unknown destination handset"),
    0x0A: (30004, "Message blocked"),
    0x48: (30004, "Message blocked"),
    0x49: (30004, "Message blocked"),
    0x65: (30007, "Message filtered"),
    0x66: (30007, "Message filtered"),
}
ERROR_TEXT = {30003: "Unreachable destination handset", 30007: "Message filtered", 30008: "Unknown error"}
RECEIPT_TYPE_MASK = 0x3C  # esm_class bits 2-5: message type (SMPP 3.4 §5.2.12)
TEMPORARY_TRIES = 5
BIND_WAIT_SECONDS = 5.0


class SmppCarrier:
    def __init__(self, config: CarrierSettings, store: CarrierStore, clock: Clock) -> None:
        self.config = config
        self.name = config.name
        self._store = store
        self._clock = clock
        self._on_receipt: ReceiptHandler | None = None
        self._on_mo: MoHandler | None = None
        self._tx: Link | None = None
        self._tx_ready = asyncio.Event()
        self._stopping = False
        # Whether this process may bind (it holds a bind slot; see Dispatcher, several dispatchers).
        self._allowed = asyncio.Event()
        self._allowed.set()
        self._disallowed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._references = itertools.cycle(range(1, 256))
        self._pause_until = 0.0
        self._pause = 0.0
        self._next_submit_at = 0.0
        self._reassembler = Reassembler()
        # Metrics: /metrics shows them.
        self.bind_state = "connecting"
        self.submitted_parts = 0
        self.throttled = 0
        self.redriven = 0
        self.reconnects = 0
        self.receipts_matched = 0
        self.receipts_unknown = 0
        self.mo_received = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, on_receipt: ReceiptHandler, on_mo: MoHandler | None = None) -> None:
        self._on_receipt, self._on_mo = on_receipt, on_mo
        modes = ["transceiver"] if self.config.bind_mode == "transceiver" else ["transmitter", "receiver"]
        for mode in modes:
            self._spawn(self._keep_bound(mode))

    def bind_limits(self) -> dict[str, int]:
        return {self.name: self.config.max_binds} if self.config.max_binds > 0 else {}

    def allow_bind(self, name: str, allowed: bool) -> None:
        if name != self.name:
            return
        if allowed:
            self._disallowed.clear()
            self._allowed.set()
        else:
            self._allowed.clear()
            self._disallowed.set()
            self.bind_state = "standby"

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep_bound(self, mode: str) -> None:
        """Connect, bind and stay bound; after any loss, reconnect with exponential backoff, forever."""
        backoff = self.config.reconnect_min
        while not self._stopping:
            await self._allowed.wait()
            link = Link(self.config, mode, self._clock, self._on_request)
            try:
                await link.connect()
            except (OSError, TimeoutError, LinkLost, BindRefused) as exc:
                self.bind_state = f"disconnected: {exc}"
                log.warning("SMPP %s (%s): bind failed: %s; retrying in %.1f s", self.name, mode, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max)
                continue
            backoff = self.config.reconnect_min
            self.bind_state = "bound"
            log.info("SMPP %s: bound as %s", self.name, mode)
            if mode != "receiver":
                self._tx = link
                self._tx_ready.set()
            closed = asyncio.create_task(link.closed.wait())
            disallowed = asyncio.create_task(self._disallowed.wait())
            try:
                await asyncio.wait([closed, disallowed], return_when=asyncio.FIRST_COMPLETED)
                if self._disallowed.is_set():  # another process holds the bind slot now: unbind politely
                    log.warning("SMPP %s: bind slot lost; unbinding", self.name)
                    await link.close(unbind=True)
            finally:
                for waiter in (closed, disallowed):
                    waiter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await waiter
                if self._tx is link:
                    self._tx = None
                    self._tx_ready.clear()
                await link.close()
            if self._disallowed.is_set():
                self.bind_state = "standby"
                continue
            self.bind_state = "disconnected"
            self.reconnects += 1
            log.warning("SMPP %s (%s): connection lost; reconnecting", self.name, mode)

    # -- submitting ----------------------------------------------------------------------------------

    async def submit(self, submission: Submission) -> SubmitResult:
        concat = Concatenation.SAR if self.config.concat == "sar" else Concatenation.UDH
        parts = build_parts(submission.body, reference=next(self._references), concatenation=concat)
        template = p.SubmitSm(
            source_addr_ton=self._ton(submission.from_, self.config.source_ton),
            source_addr_npi=self.config.source_npi,
            source_addr=submission.from_.lstrip("+"),
            dest_addr_ton=self.config.dest_ton,
            dest_addr_npi=self.config.dest_npi,
            destination_addr=submission.to.lstrip("+"),
            registered_delivery=self.config.registered_delivery,
        )
        ids: list[str] = []
        sent_at: float | None = None
        for part in parts:
            response, part_sent_at = await self._submit_part(apply_part(template, part))
            sent_at = part_sent_at if sent_at is None else sent_at
            if response.command_status != 0:
                code, text = STATUS_ERRORS.get(response.command_status, (30008, "Unknown error"))
                log.info("SMPP %s refused %s: 0x%02X", self.name, submission.message_sid, response.command_status)
                return SubmitResult(False, None, code, text)
            ids.append(canonical_message_id(response.message_id if isinstance(response, p.SubmitSmResp) else ""))
        await self._store.record_parts(self.name, submission.message_sid, ids, self._clock.now_micros())
        return SubmitResult(True, ids[0] if ids else None, sent_at=sent_at)

    @staticmethod
    def _ton(address: str, default: int) -> int:
        if address.isdigit() and len(address) <= 8:
            return int(Ton.NETWORK_SPECIFIC)  # a short code
        if not any(c.isdigit() for c in address):
            return int(Ton.ALPHANUMERIC)
        return default

    async def _submit_part(self, request: p.SubmitSm) -> tuple[p.Pdu, float]:
        """One part, answered, and when its answered attempt was sent: retried through throttling,
        temporary errors and lost connections (until the carrier stops: then the message is parked)."""
        temporary = 0
        while True:
            if self._stopping:
                raise CarrierUnavailable(f"carrier {self.name} is stopping")
            link = await self._transmitter()
            await self._paced()
            sent_at = self._clock.monotonic()
            try:
                response = await link.request(request)
            except LinkLost:
                self.redriven += 1  # it may have reached the SMSC: a possible duplicate
                continue
            status = response.command_status
            if status == 0:
                self.submitted_parts += 1
                self._pause = 0.0
                return response, sent_at
            if status in THROTTLING:
                self.throttled += 1
                self._pause = min(max(self._pause * 2, 0.1), 5.0)
                self._pause_until = self._clock.monotonic() + self._pause
                continue
            if status in TEMPORARY and temporary < TEMPORARY_TRIES:
                temporary += 1
                await asyncio.sleep(min(0.2 * 2**temporary, 5.0))
                continue
            if status in TEMPORARY:
                raise CarrierUnavailable(f"SMSC {self.name} answered 0x{status:02X} {TEMPORARY_TRIES} times")
            return response, sent_at

    async def _transmitter(self) -> Link:
        if self._tx is None or self._tx.closed.is_set():
            try:
                await asyncio.wait_for(self._tx_ready.wait(), BIND_WAIT_SECONDS)
            except TimeoutError:
                raise CarrierUnavailable(f"no bind to {self.name}") from None
        assert self._tx is not None
        return self._tx

    async def _paced(self) -> None:
        """Honour a throttle pause and the bind's own max submits per second."""
        now = self._clock.monotonic()
        wait = max(self._pause_until, self._next_submit_at) - now
        if self.config.max_submits_per_second > 0:
            start = max(now, self._next_submit_at)
            self._next_submit_at = start + 1 / self.config.max_submits_per_second
        if wait > 0:
            await asyncio.sleep(wait)

    # -- from the SMSC -------------------------------------------------------------------------------

    async def _on_request(self, link: Link, request: p.Pdu) -> None:
        if not isinstance(request, p.DeliverSm | p.DataSm):
            return
        esm_class = request.esm_class
        if esm_class & RECEIPT_TYPE_MASK in (EsmClass.DELIVERY_RECEIPT, 0x08, 0x20):
            link.respond(request)  # acknowledged first: a receipt must never take the bind down
            await self._receipt(request)
            return
        try:
            await self._mobile_originated(request)
        except Exception:
            log.exception("SMPP %s: MO could not be stored; asking the SMSC to retry", self.name)
            link.respond(request, 0x08)  # ESME_RSYSERR: the SMSC keeps it and tries again
            return
        link.respond(request)

    async def _receipt(self, request: p.DeliverSm | p.DataSm) -> None:
        short_message = request.short_message if isinstance(request, p.DeliverSm) else b""
        parsed = parse_receipt(short_message or (request.tlvs.message_payload or b""))
        raw_id = request.tlvs.receipted_message_id or parsed.message_id
        stat = parsed.stat
        if request.tlvs.message_state is not None:
            stat = message_state_to_stat(request.tlvs.message_state) or stat
        delivered, code = stat_to_status(stat)
        if raw_id is None or delivered is None:
            return  # not final (ACCEPTD, ENROUTE) or unreadable: nothing to record
        canonical = canonical_message_id(raw_id)
        outcome = None
        for attempt in range(6):  # the receipt may overtake the write of its submit_sm_resp's id
            outcome = await self._store.part_receipt(self.name, [canonical], delivered, code)
            if outcome is None:
                others = sorted(normalise_message_id(raw_id) - {canonical})
                if others:
                    outcome = await self._store.part_receipt(self.name, others, delivered, code)
            if outcome is not None:
                break
            await asyncio.sleep(0.05 * (attempt + 1))
        if outcome is None:
            self.receipts_unknown += 1
            log.warning("SMPP %s: receipt for unknown message id %s (stat %s) acknowledged", self.name, raw_id, stat)
            return
        self.receipts_matched += 1
        if outcome.delivered is None or self._on_receipt is None:
            return  # other parts still pending
        error = outcome.error_code
        await self._on_receipt(
            Receipt(canonical, outcome.delivered, error, ERROR_TEXT.get(error or 0), outcome.message_sid)
        )

    async def _mobile_originated(self, request: p.DeliverSm | p.DataSm) -> None:
        short_message = request.short_message if isinstance(request, p.DeliverSm) else b""
        decoded = decode_short_message(short_message, request.data_coding, request.esm_class, request.tlvs)
        source = _address(request.source_addr, request.source_addr_ton)
        destination = _address(request.destination_addr, request.dest_addr_ton)
        text: str | None = decoded.text
        if decoded.concat is not None:
            reference, total, index = decoded.concat
            text = self._reassembler.add(
                Part(source, destination, reference, total, index, decoded.text), self._clock.monotonic()
            )
        if text is None or self._on_mo is None:
            return
        self.mo_received += 1
        await self._on_mo(MobileOriginated(source, destination, text))


def _address(address: str, ton: int) -> str:
    """An SMPP address as Kittiwake writes numbers: '+' and digits when international.

    Many SMSCs send MSISDNs in international form with TON 0 (unknown); a digits-only address longer than a
    short code (more than 8 digits) is read as international too. With TON 2 (national) it stays as it is
    and is resolved against the receiving number's country.
    """
    if address.isdigit() and (ton == Ton.INTERNATIONAL or (ton == Ton.UNKNOWN and len(address) > 8)):
        return "+" + address
    return address
