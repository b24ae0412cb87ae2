"""The ESME session state machine joined to a tiny in-memory SMSC (bytes in, bytes out; no sockets, no sleeps)."""

from __future__ import annotations

import dataclasses

import pytest

from kittiwake.smpp import pdu as P
from kittiwake.smpp.constants import MAX_SEQUENCE_NUMBER, CommandId, CommandStatus, EsmClass
from kittiwake.smpp.errors import LocalProtocolError
from kittiwake.smpp.framing import Framer
from kittiwake.smpp.session import (
    BindFailed,
    Bound,
    EnquireLinkDue,
    Event,
    ProtocolErrorEvent,
    Request,
    Response,
    ResponseTimeout,
    Session,
    State,
    Unbound,
)
from kittiwake.smpp.tlv import Tlvs


class FakeSmsc:
    """Just enough SMSC to drive the session: answers binds, enquire_link and unbind at once; holds submit_sm
    until told to answer (so the window can fill)."""

    def __init__(self, password: str = "secret") -> None:
        self.password = password
        self.framer = Framer()
        self.received: list[P.PduBase] = []
        self.pending_submits: list[P.SubmitSm] = []
        self._seq = 1000
        self._next_id = 0xABC

    def receive(self, data: bytes) -> bytes:
        self.framer.feed(data)
        out = b""
        while (pdu := self.framer.next_pdu()) is not None:
            self.received.append(pdu)
            out += self._answer(pdu)
        return out

    def _answer(self, pdu: P.PduBase) -> bytes:
        seq = pdu.sequence_number
        if isinstance(pdu, P.BindTransmitter | P.BindReceiver | P.BindTransceiver):
            resp = P.response_class(type(pdu))
            assert resp is not None
            status = 0 if pdu.password == self.password else CommandStatus.ESME_RINVPASWD
            return P.encode(resp(sequence_number=seq, command_status=status, system_id="fakesmsc"))  # type: ignore[call-arg]
        if isinstance(pdu, P.EnquireLink):
            return P.encode(P.EnquireLinkResp(sequence_number=seq))
        if isinstance(pdu, P.Unbind):
            return P.encode(P.UnbindResp(sequence_number=seq))
        if isinstance(pdu, P.SubmitSm):
            self.pending_submits.append(pdu)
        return b""

    def answer_submits(self, status: int = 0) -> bytes:
        out = b""
        for sm in self.pending_submits:
            self._next_id += 1
            out += P.encode(
                P.SubmitSmResp(
                    sequence_number=sm.sequence_number, command_status=status, message_id=f"{self._next_id:X}"
                )
            )
        self.pending_submits.clear()
        return out

    def request(self, pdu: P.PduBase) -> bytes:
        self._seq += 1
        return P.encode(dataclasses.replace(pdu, sequence_number=self._seq))


class Link:
    """An ESME session wired to the fake SMSC; ``now`` is advanced by hand."""

    def __init__(self, session: Session | None = None, smsc: FakeSmsc | None = None) -> None:
        self.esme = session or Session(window_size=3, response_timeout=10.0, enquire_link_interval=30.0)
        self.smsc = smsc or FakeSmsc()
        self.now = 100.0

    def send(self, pdu: P.PduBase) -> tuple[int, list[Event]]:
        seq, data = self.esme.send(pdu, self.now)
        reply = self.smsc.receive(data)
        return seq, self.esme.receive_data(reply, self.now) if reply else []

    def deliver(self, data: bytes) -> list[Event]:
        return self.esme.receive_data(data, self.now)

    def bind(self, cls: type[P.PduBase] = P.BindTransceiver, password: str = "secret") -> list[Event]:
        return self.send(cls(system_id="kw", password=password))[1]  # type: ignore[call-arg]


def test_bind_transceiver() -> None:
    link = Link()
    assert link.esme.state is State.OPEN
    events = link.bind()
    assert len(events) == 1 and isinstance(events[0], Bound)
    assert isinstance(events[0].response, P.BindTransceiverResp)
    assert events[0].response.system_id == "fakesmsc"
    assert link.esme.state is State.BOUND_TRX
    assert link.esme.outstanding() == []


@pytest.mark.parametrize(
    ("cls", "state"),
    [(P.BindTransmitter, State.BOUND_TX), (P.BindReceiver, State.BOUND_RX), (P.BindTransceiver, State.BOUND_TRX)],
)
def test_bind_kinds(cls: type[P.PduBase], state: State) -> None:
    link = Link()
    link.bind(cls)
    assert link.esme.state is state


def test_bind_failure_returns_to_open() -> None:
    link = Link()
    events = link.bind(password="wrong")
    assert events == [BindFailed(CommandStatus.ESME_RINVPASWD, events[0].response)]  # type: ignore[union-attr]
    assert link.esme.state is State.OPEN
    assert isinstance(link.bind()[0], Bound)


def test_binding_state_blocks_everything() -> None:
    esme = Session()
    esme.send(P.BindTransmitter(system_id="kw"), 0.0)
    assert esme.state is State.BINDING
    with pytest.raises(LocalProtocolError):
        esme.send(P.SubmitSm(), 0.0)
    with pytest.raises(LocalProtocolError):
        esme.send(P.BindTransmitter(), 0.0)


def test_submit_before_bind_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        Session().send(P.SubmitSm(destination_addr="1"), 0.0)


def test_submit_in_receiver_mode_is_a_local_error() -> None:
    link = Link()
    link.bind(P.BindReceiver)
    assert not link.esme.can_send()
    with pytest.raises(LocalProtocolError):
        link.esme.send(P.SubmitSm(), link.now)


def test_responses_cannot_be_sent_with_send() -> None:
    link = Link()
    link.bind()
    with pytest.raises(LocalProtocolError):
        link.esme.send(P.DeliverSmResp(), link.now)


def test_window_and_response_matching() -> None:
    link = Link()
    link.bind()
    assert link.esme.can_send() and link.esme.window_available == 3
    seqs = [link.send(P.SubmitSm(destination_addr=f"4477009000{i:02d}", short_message=b"x"))[0] for i in range(3)]
    assert len(set(seqs)) == 3
    assert not link.esme.can_send() and link.esme.window_available == 0
    with pytest.raises(LocalProtocolError, match="window"):
        link.esme.send(P.SubmitSm(), link.now)
    # Control PDUs still get through a full window.
    _, events = link.send(P.EnquireLink())
    assert [type(e) for e in events] == [Response]
    assert [o.seq for o in link.esme.outstanding()] == seqs
    events = link.deliver(link.smsc.answer_submits())
    assert [e.request_seq for e in events if isinstance(e, Response)] == seqs
    for event in events:
        assert isinstance(event, Response)
        assert isinstance(event.response_pdu, P.SubmitSmResp)
        assert isinstance(event.request_pdu, P.SubmitSm)
        assert event.request_pdu.sequence_number == event.request_seq
    assert link.esme.window_available == 3 and link.esme.outstanding() == []


def test_submit_error_status_is_a_response() -> None:
    link = Link()
    link.bind()
    seq, _ = link.send(P.SubmitSm(short_message=b"x"))
    (event,) = link.deliver(link.smsc.answer_submits(CommandStatus.ESME_RTHROTTLED))
    assert isinstance(event, Response) and event.request_seq == seq
    assert event.response_pdu.command_status == CommandStatus.ESME_RTHROTTLED


def test_generic_nack_answers_a_request() -> None:
    link = Link()
    link.bind()
    seq, _ = link.send(P.SubmitSm())
    nack = P.encode(P.GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RINVCMDLEN))
    (event,) = link.deliver(nack)
    assert isinstance(event, Response) and isinstance(event.response_pdu, P.GenericNack)
    assert link.esme.window_available == 3


def test_sequence_numbers_wrap_and_skip_outstanding() -> None:
    esme = Session(window_size=5)
    esme._next_seq = MAX_SEQUENCE_NUMBER  # white-box: jump to the end of the range
    seq, _ = esme.send(P.BindTransmitter(), 0.0)
    assert seq == MAX_SEQUENCE_NUMBER
    esme.receive_data(P.encode(P.BindTransmitterResp(sequence_number=seq)), 0.0)
    assert esme.send(P.SubmitSm(), 0.0)[0] == 1
    esme._next_seq = 1
    assert esme.send(P.SubmitSm(), 0.0)[0] == 2  # 1 is still outstanding


def test_encode_failure_does_not_use_a_sequence_number() -> None:
    link = Link()
    link.bind()
    outstanding = link.esme.outstanding()
    with pytest.raises(LocalProtocolError):
        link.esme.send(P.SubmitSm(source_addr="1" * 30), link.now)
    assert link.esme.outstanding() == outstanding
    assert link.esme.window_available == 3


def test_deliver_sm_is_a_request_answered_with_respond() -> None:
    link = Link()
    link.bind()
    receipt = P.DeliverSm(esm_class=EsmClass.DELIVERY_RECEIPT, short_message=b"id:1 stat:DELIVRD")
    (event,) = link.deliver(link.smsc.request(receipt))
    assert isinstance(event, Request) and event.auto_response is None
    assert isinstance(event.pdu, P.DeliverSm)
    reply = link.esme.respond(event.pdu)
    assert P.decode(reply) == P.DeliverSmResp(sequence_number=event.pdu.sequence_number)
    reply = link.esme.respond(event.pdu, CommandStatus.ESME_RX_T_APPN)
    assert P.decode(reply).command_status == CommandStatus.ESME_RX_T_APPN


def test_data_sm_respond_with_tlvs() -> None:
    link = Link()
    link.bind()
    (event,) = link.deliver(link.smsc.request(P.DataSm(tlvs=Tlvs(message_payload=b"hello"))))
    assert isinstance(event, Request)
    reply = P.decode(link.esme.respond(event.pdu, message_id="m1", tlvs=Tlvs(user_message_reference=1)))
    assert isinstance(reply, P.DataSmResp) and reply.message_id == "m1"


def test_respond_rejects_fields_the_response_lacks() -> None:
    with pytest.raises(LocalProtocolError):
        Session().respond(P.EnquireLink(sequence_number=1), message_id="x")
    with pytest.raises(LocalProtocolError):
        Session().respond(P.Outbind(sequence_number=1))


def test_deliver_sm_in_transmitter_mode_is_refused() -> None:
    link = Link()
    link.bind(P.BindTransmitter)
    (event,) = link.deliver(link.smsc.request(P.DeliverSm()))
    assert isinstance(event, ProtocolErrorEvent) and event.reply_bytes is not None
    reply = P.decode(event.reply_bytes)
    assert isinstance(reply, P.DeliverSmResp)
    assert reply.command_status == CommandStatus.ESME_RINVBNDSTS
    assert not event.must_close


def test_peer_enquire_link_gets_auto_response() -> None:
    link = Link()
    link.bind()
    (event,) = link.deliver(link.smsc.request(P.EnquireLink()))
    assert isinstance(event, Request) and event.auto_response is not None
    assert P.decode(event.auto_response) == P.EnquireLinkResp(sequence_number=event.pdu.sequence_number)


def test_peer_unbind() -> None:
    link = Link()
    link.bind()
    link.send(P.SubmitSm())
    events = link.deliver(link.smsc.request(P.Unbind()) + link.smsc.request(P.DeliverSm()))
    assert [type(e) for e in events] == [Request, Unbound]  # nothing after the unbind is processed
    assert isinstance(events[0], Request) and events[0].auto_response is not None
    assert isinstance(P.decode(events[0].auto_response), P.UnbindResp)
    assert events[1] == Unbound(by_peer=True)
    assert link.esme.state is State.CLOSED
    assert len(link.esme.outstanding()) == 1  # kept for re-driving after reconnect
    assert link.deliver(b"anything") == []


def test_our_unbind() -> None:
    link = Link()
    link.bind()
    _, events = link.send(P.Unbind())
    assert events == [Unbound(by_peer=False)]
    assert link.esme.state is State.CLOSED


def test_unbinding_state_still_matches_responses() -> None:
    link = Link()
    link.bind()
    seq, _ = link.send(P.SubmitSm())
    esme = link.esme
    esme.send(P.Unbind(), link.now)  # not passed to the SMSC: stays UNBINDING
    assert esme.state is State.UNBINDING
    with pytest.raises(LocalProtocolError):
        esme.send(P.SubmitSm(), link.now)
    (event,) = link.deliver(link.smsc.answer_submits())
    assert isinstance(event, Response) and event.request_seq == seq


def test_outbind_in_open_state() -> None:
    esme = Session()
    (event,) = esme.receive_data(P.encode(P.Outbind(sequence_number=1, system_id="smsc")), 0.0)
    assert isinstance(event, Request) and isinstance(event.pdu, P.Outbind) and event.auto_response is None


def test_smsc_side_command_gets_generic_nack() -> None:
    link = Link()
    link.bind()
    (event,) = link.deliver(link.smsc.request(P.SubmitSm()))
    assert isinstance(event, ProtocolErrorEvent) and event.reply_bytes is not None
    nack = P.decode(event.reply_bytes)
    assert isinstance(nack, P.GenericNack) and nack.command_status == CommandStatus.ESME_RINVCMDID


# --- malformed input ---


def test_unknown_command_id_gets_generic_nack_and_the_stream_continues() -> None:
    link = Link()
    link.bind()
    junk = P.HEADER.pack(16, 0x0000_0777, 0, 55)
    events = link.deliver(junk + link.smsc.request(P.EnquireLink()))
    assert [type(e) for e in events] == [ProtocolErrorEvent, Request]
    error = events[0]
    assert isinstance(error, ProtocolErrorEvent) and error.reply_bytes is not None and not error.must_close
    assert P.decode(error.reply_bytes) == P.GenericNack(sequence_number=55, command_status=CommandStatus.ESME_RINVCMDID)
    assert link.esme.state is State.BOUND_TRX


def test_bad_command_length_nacks_and_closes() -> None:
    link = Link()
    link.bind()
    events = link.deliver(P.HEADER.pack(8, CommandId.DELIVER_SM, 0, 77) + b"trailing garbage")
    (event,) = events
    assert isinstance(event, ProtocolErrorEvent) and event.must_close and event.reply_bytes is not None
    assert P.decode(event.reply_bytes) == P.GenericNack(
        sequence_number=77, command_status=CommandStatus.ESME_RINVCMDLEN
    )
    assert link.esme.state is State.CLOSED
    assert link.esme.next_deadline() is None


def test_malformed_deliver_sm_body_gets_its_own_response() -> None:
    link = Link()
    link.bind()
    data = bytearray(link.smsc.request(P.DeliverSm(short_message=b"abc")))
    data[-4] = 250  # sm_length past the end of the body
    (event,) = link.deliver(bytes(data))
    assert isinstance(event, ProtocolErrorEvent) and event.reply_bytes is not None
    reply = P.decode(event.reply_bytes)
    assert isinstance(reply, P.DeliverSmResp) and reply.command_status == CommandStatus.ESME_RINVMSGLEN
    assert reply.sequence_number == P.HEADER.unpack_from(data)[3]


def test_response_for_unknown_sequence_is_reported_not_answered() -> None:
    link = Link()
    link.bind()
    (event,) = link.deliver(P.encode(P.SubmitSmResp(sequence_number=4242, message_id="x")))
    assert isinstance(event, ProtocolErrorEvent)
    assert event.reply_bytes is None and not event.must_close
    assert event.error.sequence_number == 4242
    assert link.esme.state is State.BOUND_TRX


def test_response_of_the_wrong_type_leaves_the_request_outstanding() -> None:
    link = Link()
    link.bind()
    seq, _ = link.send(P.SubmitSm())
    (event,) = link.deliver(P.encode(P.DataSmResp(sequence_number=seq)))
    assert isinstance(event, ProtocolErrorEvent) and event.reply_bytes is None
    assert [o.seq for o in link.esme.outstanding()] == [seq]


def test_malformed_response_is_not_answered() -> None:
    link = Link()
    link.bind()
    seq, _ = link.send(P.SubmitSm())
    bad = P.HEADER.pack(16 + 3, CommandId.SUBMIT_SM_RESP, 0, seq) + b"abc"  # message_id without NUL
    (event,) = link.deliver(bad)
    assert isinstance(event, ProtocolErrorEvent) and event.reply_bytes is None


def test_byte_at_a_time_delivery() -> None:
    link = Link()
    link.bind()
    data = link.smsc.request(P.DeliverSm(short_message=b"hello")) + link.smsc.request(P.EnquireLink())
    events: list[Event] = []
    for i in range(len(data)):
        events += link.deliver(data[i : i + 1])
    assert [type(e) for e in events] == [Request, Request]


# --- timers ---


def test_response_timeout() -> None:
    link = Link()
    link.bind()
    seq, _ = link.send(P.SubmitSm(short_message=b"x"))
    assert link.esme.next_deadline() == link.now + 10.0
    assert link.esme.on_timer(link.now + 9.9) == []
    events = link.esme.on_timer(link.now + 10.0)
    assert len(events) == 1 and isinstance(events[0], ResponseTimeout)
    assert events[0].request_seq == seq and isinstance(events[0].request_pdu, P.SubmitSm)
    assert link.esme.outstanding() == [] and link.esme.window_available == 3
    # A late answer is reported, never a crash.
    (late,) = link.deliver(link.smsc.answer_submits())
    assert isinstance(late, ProtocolErrorEvent) and late.reply_bytes is None


def test_bind_timeout_closes() -> None:
    esme = Session(response_timeout=5.0)
    esme.send(P.BindTransceiver(), 0.0)
    assert esme.next_deadline() == 5.0
    (event,) = esme.on_timer(5.0)
    assert isinstance(event, ResponseTimeout) and isinstance(event.request_pdu, P.BindTransceiver)
    assert esme.state is State.CLOSED


def test_enquire_link_due_after_idle() -> None:
    link = Link()
    link.bind()
    esme = link.esme
    assert esme.next_deadline() == link.now + 30.0
    assert esme.on_timer(link.now + 29.0) == []
    link.now += 20.0
    link.deliver(link.smsc.request(P.EnquireLink()))  # traffic resets the idle clock
    assert esme.next_deadline() == link.now + 30.0
    link.now += 30.0
    assert esme.on_timer(link.now) == [EnquireLinkDue()]
    assert esme.on_timer(link.now + 1.0) == []  # signalled once per idle period
    assert esme.next_deadline() is None
    _, events = link.send(P.EnquireLink())
    assert [type(e) for e in events] == [Response]
    assert esme.next_deadline() == link.now + 30.0


def test_unanswered_enquire_link_times_out() -> None:
    link = Link()
    link.bind()
    esme = link.esme
    esme.send(P.EnquireLink(), link.now)  # never reaches the SMSC
    assert esme.next_deadline() == link.now + 10.0  # the probe's timeout, not another probe
    (event,) = esme.on_timer(link.now + 10.0)
    assert isinstance(event, ResponseTimeout) and isinstance(event.request_pdu, P.EnquireLink)


def test_no_enquire_link_before_bound() -> None:
    esme = Session()
    assert esme.next_deadline() is None
    assert esme.on_timer(1e9) == []


def test_connection_lost_keeps_outstanding_for_redrive() -> None:
    link = Link()
    link.bind()
    link.send(P.SubmitSm(destination_addr="1"))
    link.send(P.SubmitSm(destination_addr="2"))
    lost = link.esme.connection_lost()
    assert [o.pdu.destination_addr for o in lost] == ["1", "2"]  # type: ignore[attr-defined]
    assert link.esme.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        link.esme.send(P.SubmitSm(), link.now)
