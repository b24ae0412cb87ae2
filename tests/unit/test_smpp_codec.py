"""SMPP 3.4 codec and framing: exact wire bytes, round trips of every PDU, rejection of malformed input."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kittiwake.smpp import pdu as P
from kittiwake.smpp.constants import CommandId, CommandStatus, EsmClass, TlvTag, status_name
from kittiwake.smpp.errors import LocalProtocolError, RemoteProtocolError, SmppError
from kittiwake.smpp.framing import Framer
from kittiwake.smpp.tlv import NetworkErrorCode, Tlvs

ALL_CLASSES: list[type[P.PduBase]] = [
    P.BindTransmitter,
    P.BindReceiver,
    P.BindTransceiver,
    P.BindTransmitterResp,
    P.BindReceiverResp,
    P.BindTransceiverResp,
    P.Outbind,
    P.Unbind,
    P.UnbindResp,
    P.EnquireLink,
    P.EnquireLinkResp,
    P.GenericNack,
    P.SubmitSm,
    P.SubmitSmResp,
    P.DeliverSm,
    P.DeliverSmResp,
    P.DataSm,
    P.DataSmResp,
]

FULL_TLVS = Tlvs(
    receipted_message_id="0123ABC",
    message_state=2,
    sar_msg_ref_num=0x1234,
    sar_total_segments=3,
    sar_segment_seqnum=2,
    user_message_reference=77,
    network_error_code=NetworkErrorCode(network_type=3, error_code=0x0102),
    sc_interface_version=0x34,
    unknown=((0x1400, b"vendor"), (0x0501, b"\x01")),
)


def header(length: int, command_id: int, status: int, seq: int) -> bytes:
    return struct.pack(">IIII", length, command_id, status, seq)


# --- exact bytes ---


def test_enquire_link_is_a_bare_header() -> None:
    assert P.encode(P.EnquireLink(sequence_number=7)) == header(16, 0x15, 0, 7)


def test_bind_transceiver_wire_layout() -> None:
    pdu = P.BindTransceiver(sequence_number=1, system_id="kw", password="secret", system_type="", addr_ton=1)
    body = b"kw\0secret\0\0\x34\x01\x00\0"
    assert P.encode(pdu) == header(16 + len(body), 0x09, 0, 1) + body
    assert P.decode(P.encode(pdu)) == pdu


def test_submit_sm_wire_layout_with_tlv() -> None:
    pdu = P.SubmitSm(
        sequence_number=2,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="15005550006",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900000",
        registered_delivery=1,
        short_message=b"hi",
        tlvs=Tlvs(user_message_reference=5),
    )
    body = (
        b"\0\x01\x0115005550006\0\x01\x01447700900000\0"
        + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        + b"\0\0"  # schedule_delivery_time, validity_period
        + b"\x01\x00\x00\x00"  # registered_delivery, replace_if_present, data_coding, sm_default_msg_id
        + b"\x02hi"
        + b"\x02\x04\x00\x02\x00\x05"  # user_message_reference TLV
    )
    assert P.encode(pdu) == header(16 + len(body), 0x04, 0, 2) + body


def test_decode_receipt_deliver_sm_with_tlvs() -> None:
    text = b"id:0123ABC sub:001 dlvrd:001 submit date:2611300405 done date:261130040512 stat:DELIVRD err:000 text:hi"
    pdu = P.DeliverSm(
        sequence_number=9,
        source_addr="447700900000",
        destination_addr="15005550006",
        esm_class=EsmClass.DELIVERY_RECEIPT,
        short_message=text,
        tlvs=Tlvs(receipted_message_id="0123ABC", message_state=2),
    )
    decoded = P.decode(P.encode(pdu))
    assert isinstance(decoded, P.DeliverSm)
    assert decoded.tlvs.receipted_message_id == "0123ABC"
    assert decoded.tlvs.message_state == 2
    assert decoded.short_message == text


def test_receipted_message_id_without_nul_is_tolerated() -> None:
    raw = b"\x00\x1e\x00\x03abc"  # receipted_message_id "abc" sent without its NUL, as some SMSCs do
    body = P.encode(P.DeliverSm(sequence_number=1))[16:] + raw
    decoded = P.decode(header(16 + len(body), CommandId.DELIVER_SM, 0, 1) + body)
    assert isinstance(decoded, P.DeliverSm)
    assert decoded.tlvs.receipted_message_id == "abc"


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_pdu_round_trips_with_defaults(cls: type[P.PduBase]) -> None:
    pdu = cls(sequence_number=0x7FFFFFFF)
    assert P.decode(P.encode(pdu)) == pdu


@pytest.mark.parametrize("cls", [c for c in ALL_CLASSES if c._BODY is not None])
def test_every_body_pdu_round_trips_with_all_tlvs(cls: type[P.PduBase]) -> None:
    pdu = cls(sequence_number=3, tlvs=FULL_TLVS)  # type: ignore[call-arg]
    assert P.decode(P.encode(pdu)) == pdu


def test_message_payload_round_trips_in_data_sm() -> None:
    pdu = P.DataSm(sequence_number=4, source_addr="x" * 64, tlvs=Tlvs(message_payload=b"\x00" * 1000))
    assert P.decode(P.encode(pdu)) == pdu


def test_unknown_tlvs_are_preserved_in_order() -> None:
    raw = b"\x14\x00\x00\x01A" + b"\x00\x05\x00\x00" + b"\x14\x00\x00\x01B"
    body = P.encode(P.SubmitSmResp(sequence_number=1, message_id="m"))[16:] + raw
    decoded = P.decode(header(16 + len(body), CommandId.SUBMIT_SM_RESP, 0, 1) + body)
    assert isinstance(decoded, P.SubmitSmResp)
    assert decoded.tlvs.unknown == ((0x1400, b"A"), (0x0005, b""), (0x1400, b"B"))
    assert P.encode(decoded)[16:] == body


def test_error_response_without_body_decodes() -> None:
    # 4.4.2: an SMSC may send submit_sm_resp with an error status and no body.
    decoded = P.decode(header(16, CommandId.SUBMIT_SM_RESP, CommandStatus.ESME_RTHROTTLED, 5))
    assert decoded == P.SubmitSmResp(sequence_number=5, command_status=CommandStatus.ESME_RTHROTTLED)


def test_status_names() -> None:
    assert status_name(0x58) == "ESME_RTHROTTLED"
    assert status_name(0x14) == "ESME_RMSGQFUL"
    assert status_name(0x45) == "ESME_RSUBMITFAIL"
    assert status_name(0xFF) == "ESME_RUNKNOWNERR"
    assert status_name(0x401) == "0x00000401"


# --- local errors (we must not put illegal PDUs on the wire) ---


@pytest.mark.parametrize(
    "pdu",
    [
        P.BindTransmitter(system_id="x" * 16),
        P.BindTransmitter(password="123456789"),  # 9 characters: never silently truncated to 8
        P.BindTransmitter(system_type="x" * 13),
        P.SubmitSm(source_addr="1" * 21),
        P.SubmitSm(destination_addr="1" * 21),
        P.SubmitSm(schedule_delivery_time="2611300405"),
        P.SubmitSm(short_message=b"x" * 255),
        P.SubmitSm(short_message=b"x", tlvs=Tlvs(message_payload=b"y")),
        P.SubmitSm(esm_class=256),
        P.SubmitSm(source_addr="caf\u00e9\u2603"),
        P.SubmitSm(source_addr="a\0b"),
        P.SubmitSmResp(message_id="x" * 65),
        P.DataSm(destination_addr="1" * 65),
        P.SubmitSm(tlvs=Tlvs(sar_total_segments=256)),
        P.SubmitSm(tlvs=Tlvs(unknown=((TlvTag.MESSAGE_STATE, b"\x02"),))),
        P.EnquireLink(sequence_number=-1),
    ],
)
def test_encode_rejects_illegal_fields(pdu: P.PduBase) -> None:
    with pytest.raises(LocalProtocolError):
        P.encode(pdu)


def test_field_maxima_are_accepted() -> None:
    pdu = P.BindTransmitter(system_id="x" * 15, password="x" * 8, system_type="x" * 12, address_range="1" * 40)
    assert P.decode(P.encode(pdu)) == pdu
    sm = P.SubmitSm(source_addr="1" * 20, destination_addr="2" * 20, short_message=b"x" * 254)
    assert P.decode(P.encode(sm)) == sm


# --- remote errors carry the status to answer with ---


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\0\0\0\x10", CommandStatus.ESME_RINVCMDLEN),  # shorter than a header
        (header(17, CommandId.ENQUIRE_LINK, 0, 1), CommandStatus.ESME_RINVCMDLEN),  # length mismatch
        (header(16, 0x0000_0999, 0, 1), CommandStatus.ESME_RINVCMDID),
        (header(16, CommandId.QUERY_SM, 0, 1), CommandStatus.ESME_RINVCMDID),  # valid, not modelled
        (header(16 + 17, CommandId.BIND_TRANSMITTER, 0, 1) + b"x" * 17, CommandStatus.ESME_RINVSYSID),
        (header(16, CommandId.DELIVER_SM, 0, 1), CommandStatus.ESME_RINVSERTYP),
    ],
)
def test_decode_errors_name_the_status(data: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        P.decode(data)
    assert info.value.command_status == status
    assert not info.value.fatal


def test_decode_error_carries_sequence_and_command() -> None:
    body = bytearray(P.encode(P.DeliverSm(sequence_number=42, short_message=b"abc")))
    body[-4] = 200  # sm_length beyond the body
    with pytest.raises(RemoteProtocolError) as info:
        P.decode(bytes(body))
    assert info.value.command_status == CommandStatus.ESME_RINVMSGLEN
    assert info.value.sequence_number == 42
    assert info.value.command_id == CommandId.DELIVER_SM


def test_truncated_tlv_is_invoptparstream() -> None:
    data = P.encode(P.SubmitSmResp(sequence_number=1, message_id="a")) + b"\x04\x27\x00"
    data = struct.pack(">I", len(data)) + data[4:]
    with pytest.raises(RemoteProtocolError) as info:
        P.decode(data)
    assert info.value.command_status == CommandStatus.ESME_RINVOPTPARSTREAM


def test_known_tlv_with_wrong_length_is_invparlen() -> None:
    data = P.encode(P.SubmitSmResp(sequence_number=1, message_id="a")) + b"\x04\x27\x00\x02\x00\x02"
    data = struct.pack(">I", len(data)) + data[4:]
    with pytest.raises(RemoteProtocolError) as info:
        P.decode(data)
    assert info.value.command_status == CommandStatus.ESME_RINVPARLEN


# --- properties ---

ascii_text = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=70)


def _cstr_strategy(f: P._Field) -> st.SearchStrategy[str]:
    alphabet = st.characters(min_codepoint=1, max_codepoint=255)
    if f.kind == "time":
        return st.one_of(st.just(""), st.text(alphabet="0123456789+-R", min_size=16, max_size=16))
    return st.text(alphabet=alphabet, max_size=f.size - 1)


tlvs_strategy = st.builds(
    Tlvs,
    receipted_message_id=st.none() | st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=64),
    message_state=st.none() | st.integers(0, 255),
    sar_msg_ref_num=st.none() | st.integers(0, 0xFFFF),
    sar_total_segments=st.none() | st.integers(0, 255),
    sar_segment_seqnum=st.none() | st.integers(0, 255),
    message_payload=st.none() | st.binary(max_size=300),
    user_message_reference=st.none() | st.integers(0, 0xFFFF),
    network_error_code=st.none()
    | st.builds(NetworkErrorCode, network_type=st.integers(0, 255), error_code=st.integers(0, 0xFFFF)),
    sc_interface_version=st.none() | st.integers(0, 255),
    unknown=st.lists(
        st.tuples(st.sampled_from([0x0005, 0x0019, 0x1400, 0x1501, 0xFFFF]), st.binary(max_size=20)), max_size=3
    ).map(tuple),
)


@st.composite
def pdus(draw: st.DrawFn) -> P.PduBase:
    cls = draw(st.sampled_from(ALL_CLASSES))
    kwargs: dict[str, object] = {
        "sequence_number": draw(st.integers(0, 0xFFFFFFFF)),
        "command_status": draw(st.integers(0, 0xFFFFFFFF)),
    }
    for f in cls._BODY or ():
        if f.kind in ("cstr", "time"):
            kwargs[f.name] = draw(_cstr_strategy(f))
        elif f.kind == "u8":
            kwargs[f.name] = draw(st.integers(0, 255))
        else:
            kwargs[f.name] = draw(st.binary(max_size=254))
    if cls._BODY is not None:
        tlvs = draw(tlvs_strategy)
        if kwargs.get("short_message"):
            tlvs = dataclasses.replace(tlvs, message_payload=None)
        kwargs["tlvs"] = tlvs
    return cls(**kwargs)


@given(pdus())
@settings(max_examples=400)
def test_decode_inverts_encode(pdu: P.PduBase) -> None:
    assert P.decode(P.encode(pdu)) == pdu


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_random_bytes_raise_only_smpp_errors(data: bytes) -> None:
    try:
        result = P.decode(data)
    except SmppError:
        return
    assert isinstance(result, P.PduBase)


@given(st.sampled_from([c.command_id for c in ALL_CLASSES]), st.binary(max_size=200), st.integers(0, 2**32 - 1))
@settings(max_examples=500)
def test_random_bodies_raise_only_smpp_errors(command_id: int, body: bytes, status: int) -> None:
    try:
        result = P.decode(header(16 + len(body), command_id, status, 1) + body)
    except SmppError:
        return
    assert result.command_id == command_id


@given(st.lists(pdus(), min_size=1, max_size=8), st.data())
@settings(max_examples=200)
def test_framing_with_arbitrary_chunk_boundaries(items: list[P.PduBase], data: st.DataObject) -> None:
    stream = b"".join(P.encode(p) for p in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer = Framer()
    out: list[P.PduBase] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        framer.feed(stream[start:cut])
        start = cut
        while (p := framer.next_pdu()) is not None:
            out.append(p)
    assert out == items
    assert framer.buffered == 0


@pytest.mark.parametrize("length", [0, 15, 64 * 1024 + 1, 0xFFFFFFFF])
def test_framer_rejects_bad_command_length_for_good(length: int) -> None:
    framer = Framer()
    framer.feed(header(length, CommandId.SUBMIT_SM, 0, 99))
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_pdu()
    assert info.value.command_status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.sequence_number == 99
    assert info.value.fatal
    framer.feed(P.encode(P.EnquireLink(sequence_number=1)))
    assert framer.broken
    with pytest.raises(RemoteProtocolError):
        framer.next_pdu()


def test_framer_survives_a_malformed_body() -> None:
    framer = Framer()
    framer.feed(header(16, 0x999, 0, 1) + P.encode(P.EnquireLink(sequence_number=2)))
    with pytest.raises(RemoteProtocolError) as info:
        framer.next_pdu()
    assert not info.value.fatal
    assert framer.next_pdu() == P.EnquireLink(sequence_number=2)


def test_framer_waits_for_more_data() -> None:
    framer = Framer()
    data = P.encode(P.SubmitSmResp(sequence_number=3, message_id="abc"))
    framer.feed(data[:10])
    assert framer.next_pdu() is None
    framer.feed(data[10:-1])
    assert framer.next_pdu() is None
    framer.feed(data[-1:])
    assert framer.next_pdu() == P.SubmitSmResp(sequence_number=3, message_id="abc")


def test_framer_max_length_is_configurable() -> None:
    framer = Framer(max_pdu_length=100)
    framer.feed(P.encode(P.SubmitSm(short_message=b"x" * 100)))
    with pytest.raises(RemoteProtocolError):
        framer.next_pdu()
