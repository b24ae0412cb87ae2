"""ESME-side SMPP 3.4 session as a pure state machine (h11 style): bytes in, events out, timers as data.

The adapter owns the socket and the clock. It calls :meth:`Session.send` for each request it wants to make
and writes the returned bytes; it passes every chunk it reads to :meth:`Session.receive_data` and acts on
the events; it sleeps until :meth:`Session.next_deadline` and then calls :meth:`Session.on_timer`. Time is
the caller's monotonic seconds (``now``); nothing here reads a clock or does I/O.

States (SMPP 3.4 2.3 and 2.4)::

    OPEN --send(bind_*)--> BINDING --bind_resp OK--> BOUND_TX | BOUND_RX | BOUND_TRX
    BINDING --bind_resp error / generic_nack--> OPEN              (the adapter may retry or close)
    BOUND_* --send(unbind)--> UNBINDING --unbind_resp--> CLOSED
    any --peer unbind / framing error / bind or unbind timeout / connection_lost()--> CLOSED

What may be sent where (2.3, Table 2-1 for the ESME side): bind_* only in OPEN; submit_sm and data_sm in
BOUND_TX and BOUND_TRX; enquire_link and unbind in any bound state. submit_sm and data_sm count against the
window of unanswered requests; enquire_link and unbind do not (they must get through a full window).

Replies to malformed input follow 4.3: generic_nack only when the header is unusable (bad command_length,
unknown command_id) or the PDU has no response of its own (outbind); a known request with a bad body is
answered by its own response carrying the error status (e.g. deliver_sm_resp ESME_RINVMSGLEN). A response
is never answered: an unmatched response (unknown sequence number, e.g. a late answer to a request that
already timed out) yields a ProtocolErrorEvent with no reply, because a generic_nack is itself a response
and two peers that both nack unmatched responses would nack each other forever.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from kittiwake.smpp.constants import MAX_SEQUENCE_NUMBER, CommandId, CommandStatus
from kittiwake.smpp.errors import LocalProtocolError, RemoteProtocolError
from kittiwake.smpp.framing import DEFAULT_MAX_PDU_LENGTH, Framer
from kittiwake.smpp.pdu import (
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    PduBase,
    SubmitSmResp,
    Tlvs,
    Unbind,
    UnbindResp,
    encode,
    is_response,
    pdu_class,
    response_class,
)

__all__ = [
    "BindFailed",
    "Bound",
    "EnquireLinkDue",
    "Event",
    "Outstanding",
    "ProtocolErrorEvent",
    "Request",
    "Response",
    "ResponseTimeout",
    "Session",
    "State",
    "Unbound",
]


class State(enum.Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"
    CLOSED = "closed"


_BOUND = frozenset({State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX})
_BIND_STATE = {
    CommandId.BIND_TRANSMITTER: State.BOUND_TX,
    CommandId.BIND_RECEIVER: State.BOUND_RX,
    CommandId.BIND_TRANSCEIVER: State.BOUND_TRX,
}
_TX_STATES = frozenset({State.BOUND_TX, State.BOUND_TRX})
_ALLOWED_SENDS: dict[int, frozenset[State]] = {
    CommandId.BIND_TRANSMITTER: frozenset({State.OPEN}),
    CommandId.BIND_RECEIVER: frozenset({State.OPEN}),
    CommandId.BIND_TRANSCEIVER: frozenset({State.OPEN}),
    CommandId.SUBMIT_SM: _TX_STATES,
    CommandId.DATA_SM: _TX_STATES,
    CommandId.ENQUIRE_LINK: _BOUND,
    CommandId.UNBIND: _BOUND,
}
_WINDOWED = frozenset({CommandId.SUBMIT_SM, CommandId.DATA_SM})


# --- events -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """The bind succeeded; ``response.system_id`` names the SMSC."""

    response: Pdu


@dataclass(frozen=True)
class BindFailed:
    """The SMSC refused the bind (ESME_RBINDFAIL, ESME_RINVPASWD, ...). The session is OPEN again."""

    status: int
    response: Pdu


@dataclass(frozen=True)
class Response:
    """The answer to one of our requests (possibly a generic_nack)."""

    request_seq: int
    request_pdu: PduBase
    response_pdu: Pdu


@dataclass(frozen=True)
class Request:
    """A PDU the peer initiated. Write ``auto_response`` if set (enquire_link_resp, unbind_resp); for
    deliver_sm and data_sm it is None and the adapter answers with :meth:`Session.respond`; outbind has none."""

    pdu: Pdu
    auto_response: bytes | None = None


@dataclass(frozen=True)
class Unbound:
    """The session ended: our unbind was answered, or the peer unbound (then write the auto_response)."""

    by_peer: bool


@dataclass(frozen=True)
class ProtocolErrorEvent:
    """The peer sent something malformed or illegal. Write ``reply_bytes`` if set; close if ``must_close``."""

    error: RemoteProtocolError
    reply_bytes: bytes | None
    must_close: bool = False


@dataclass(frozen=True)
class ResponseTimeout:
    """No answer within ``response_timeout``; the request is no longer outstanding."""

    request_seq: int
    request_pdu: PduBase


@dataclass(frozen=True)
class EnquireLinkDue:
    """No traffic for ``enquire_link_interval``: send an enquire_link (4.11)."""


Event = Bound | BindFailed | Response | Request | Unbound | ProtocolErrorEvent | ResponseTimeout | EnquireLinkDue


@dataclass(frozen=True)
class Outstanding:
    seq: int
    pdu: PduBase
    sent_at: float


# --- the session --------------------------------------------------------------------------------------


class Session:
    """One ESME connection's protocol state. Not thread-safe; one per connection."""

    def __init__(
        self,
        *,
        window_size: int = 10,
        response_timeout: float = 30.0,
        enquire_link_interval: float = 30.0,
        max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
    ) -> None:
        if window_size < 1:
            raise ValueError("window_size must be at least 1")
        self.window_size = window_size
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self._framer = Framer(max_pdu_length)
        self._state = State.OPEN
        self._next_seq = 1
        self._outstanding: dict[int, Outstanding] = {}
        self._windowed = 0
        self._last_activity: float | None = None
        self._enquire_due_sent = False
        self._may_receive = False  # bound as receiver or transceiver: deliver_sm/data_sm are legal

    # --- introspection ---

    @property
    def state(self) -> State:
        return self._state

    @property
    def window_available(self) -> int:
        return self.window_size - self._windowed

    def can_send(self) -> bool:
        """True if a submit_sm would be accepted now (bound as transmitter and the window has room)."""
        return self._state in _TX_STATES and self._windowed < self.window_size

    def outstanding(self) -> list[Outstanding]:
        """Unanswered requests, oldest first (to re-drive after a reconnect)."""
        return list(self._outstanding.values())

    # --- outbound ---

    def send(self, pdu: PduBase, now: float) -> tuple[int, bytes]:
        """Assign a sequence number to request ``pdu`` and encode it. LocalProtocolError if illegal now."""
        allowed = _ALLOWED_SENDS.get(pdu.command_id)
        if allowed is None:
            raise LocalProtocolError(f"{type(pdu).__name__} is not a request an ESME sends; see respond()")
        if self._state not in allowed:
            raise LocalProtocolError(f"cannot send {type(pdu).__name__} in state {self._state.name}")
        if pdu.command_status != 0:
            raise LocalProtocolError("a request's command_status must be 0 (SMPP 3.4 5.1.3)")
        windowed = pdu.command_id in _WINDOWED
        if windowed and self._windowed >= self.window_size:
            raise LocalProtocolError(f"window full ({self.window_size} unanswered requests)")
        seq = self._peek_seq()
        request = replace(pdu, sequence_number=seq)
        data = encode(request)  # may raise LocalProtocolError; the sequence number is then not used up
        self._next_seq = seq % MAX_SEQUENCE_NUMBER + 1
        self._outstanding[seq] = Outstanding(seq, request, now)
        self._windowed += windowed
        if pdu.command_id in _BIND_STATE:
            self._state = State.BINDING
        elif pdu.command_id == CommandId.UNBIND:
            self._state = State.UNBINDING
        self._touch(now)
        return seq, data

    def respond(
        self, request: PduBase, command_status: int = 0, *, message_id: str = "", tlvs: Tlvs | None = None
    ) -> bytes:
        """Encode the response to a peer's request (deliver_sm_resp, data_sm_resp, ...)."""
        resp_cls = response_class(type(request))
        if resp_cls is None or is_response(request.command_id):
            raise LocalProtocolError(f"{type(request).__name__} has no response PDU")
        seq, status = request.sequence_number, command_status
        if issubclass(resp_cls, SubmitSmResp | DeliverSmResp | DataSmResp):
            return encode(
                resp_cls(sequence_number=seq, command_status=status, message_id=message_id, tlvs=tlvs or Tlvs())
            )
        if message_id or tlvs:
            raise LocalProtocolError(f"{resp_cls.__name__} carries no message_id or TLVs")
        return encode(resp_cls(sequence_number=seq, command_status=status))

    def connection_lost(self) -> list[Outstanding]:
        """The transport closed. The session is CLOSED; the unanswered requests are returned (and kept)."""
        self._state = State.CLOSED
        return self.outstanding()

    # --- inbound ---

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the connection; return what happened. Input after CLOSED is ignored.

        End of stream is not signalled with ``b""``: call :meth:`connection_lost` instead."""
        if self._state is State.CLOSED:
            return []
        self._touch(now)
        self._framer.feed(data)
        events: list[Event] = []
        while not self._closed():  # a peer unbind or a framing error ends the loop
            try:
                pdu = self._framer.next_pdu()
            except RemoteProtocolError as exc:
                events.append(self._protocol_error(exc))
                continue
            if pdu is None:
                break
            if is_response(pdu.command_id):
                events.extend(self._on_response(pdu))
            else:
                events.extend(self._on_request(pdu))
        return events

    def _protocol_error(self, exc: RemoteProtocolError) -> ProtocolErrorEvent:
        seq = exc.sequence_number or 0
        cid = exc.command_id
        reply: bytes | None
        if exc.fatal or cid is None or cid in (CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION):
            reply = encode(GenericNack(sequence_number=seq, command_status=exc.command_status))
        elif is_response(cid):
            reply = None  # never answer a response (4.3)
        else:
            request_cls = pdu_class(cid)
            resp_cls = None if request_cls is None else response_class(request_cls)
            if resp_cls is None:  # unknown command_id: 4.3 generic_nack
                reply = encode(GenericNack(sequence_number=seq, command_status=exc.command_status))
            else:  # a known request with a bad body: its own response carries the error
                reply = encode(resp_cls(sequence_number=seq, command_status=exc.command_status))
        if exc.fatal:
            self._state = State.CLOSED
        return ProtocolErrorEvent(exc, reply, must_close=exc.fatal)

    def _on_response(self, pdu: Pdu) -> list[Event]:
        entry = self._outstanding.get(pdu.sequence_number)
        expected = None if entry is None else entry.pdu.command_id | 0x80000000
        if entry is None or pdu.command_id not in (expected, CommandId.GENERIC_NACK):
            what = "unknown sequence number" if entry is None else "a different request"
            err = RemoteProtocolError(
                f"{type(pdu).__name__} answers {what} ({pdu.sequence_number})",
                CommandStatus.ESME_RINVCMDID,
                sequence_number=pdu.sequence_number,
                command_id=pdu.command_id,
            )
            return [ProtocolErrorEvent(err, None)]
        del self._outstanding[entry.seq]
        self._windowed -= entry.pdu.command_id in _WINDOWED
        request_id = entry.pdu.command_id
        if request_id in _BIND_STATE:
            if pdu.command_status == 0 and pdu.command_id != CommandId.GENERIC_NACK:
                self._state = _BIND_STATE[CommandId(request_id)]
                self._may_receive = self._state in (State.BOUND_RX, State.BOUND_TRX)
                return [Bound(pdu)]
            self._state = State.OPEN
            return [BindFailed(pdu.command_status or CommandStatus.ESME_RBINDFAIL, pdu)]
        if request_id == CommandId.UNBIND:
            self._state = State.CLOSED
            return [Unbound(by_peer=False)]
        return [Response(entry.seq, entry.pdu, pdu)]

    def _on_request(self, pdu: Pdu) -> list[Event]:
        seq = pdu.sequence_number
        if isinstance(pdu, EnquireLink):
            return [Request(pdu, encode(EnquireLinkResp(sequence_number=seq)))]
        if isinstance(pdu, Unbind):
            self._state = State.CLOSED
            return [Request(pdu, encode(UnbindResp(sequence_number=seq))), Unbound(by_peer=True)]
        if isinstance(pdu, DeliverSm | DataSm):
            if self._may_receive and self._state in (*_BOUND, State.UNBINDING):
                return [Request(pdu)]
            status = CommandStatus.ESME_RINVBNDSTS
            reply = self.respond(pdu, status)
        elif isinstance(pdu, Outbind):
            if self._state is State.OPEN:
                return [Request(pdu)]
            status = CommandStatus.ESME_RINVBNDSTS
            reply = encode(GenericNack(sequence_number=seq, command_status=status))
        else:  # bind_*, submit_sm: SMSC-side commands an ESME does not accept
            status = CommandStatus.ESME_RINVCMDID
            reply = encode(GenericNack(sequence_number=seq, command_status=status))
        err = RemoteProtocolError(
            f"{type(pdu).__name__} is not acceptable in state {self._state.name}",
            status,
            sequence_number=seq,
            command_id=pdu.command_id,
        )
        return [ProtocolErrorEvent(err, reply)]

    # --- timers ---

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` next has something to do (monotonic seconds), or None."""
        deadlines = [o.sent_at + self.response_timeout for o in self._outstanding.values()]
        due = self._enquire_link_deadline()
        if due is not None:
            deadlines.append(due)
        return min(deadlines, default=None) if self._state is not State.CLOSED else None

    def on_timer(self, now: float) -> list[Event]:
        """Expire unanswered requests and signal a due enquire_link."""
        if self._state is State.CLOSED:
            return []
        events: list[Event] = []
        expired = [o for o in self._outstanding.values() if o.sent_at + self.response_timeout <= now]
        for entry in expired:
            del self._outstanding[entry.seq]
            self._windowed -= entry.pdu.command_id in _WINDOWED
            events.append(ResponseTimeout(entry.seq, entry.pdu))
            if entry.pdu.command_id in _BIND_STATE or entry.pdu.command_id == CommandId.UNBIND:
                self._state = State.CLOSED  # a bind or unbind left unanswered leaves nothing to do but close
        due = self._enquire_link_deadline()
        if due is not None and due <= now:
            self._enquire_due_sent = True
            events.append(EnquireLinkDue())
        return events

    def _enquire_link_deadline(self) -> float | None:
        if self._state not in _BOUND or self._enquire_due_sent or self._last_activity is None:
            return None
        if any(o.pdu.command_id == CommandId.ENQUIRE_LINK for o in self._outstanding.values()):
            return None  # one probe at a time; its response timeout covers a dead link
        return self._last_activity + self.enquire_link_interval

    def _closed(self) -> bool:
        return self._state is State.CLOSED

    def _touch(self, now: float) -> None:
        self._last_activity = now
        self._enquire_due_sent = False

    def _peek_seq(self) -> int:
        seq = self._next_seq
        while seq in self._outstanding:  # only after a wrap-around with a very old request still open
            seq = seq % MAX_SEQUENCE_NUMBER + 1
        return seq
