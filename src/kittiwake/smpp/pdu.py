"""SMPP 3.4 PDUs as frozen dataclasses, and ``encode`` / ``decode`` of one whole PDU.

Every PDU is a 16-octet header (2.2.1: command_length, command_id, command_status, sequence_number, each a
big-endian Int4) and a body. The body layouts are those of SMPP 3.4 chapter 4; each class lists its
mandatory fields in wire order in ``_BODY``, and the codec below walks that list, so one loop serves every
PDU. Every PDU with a body also keeps its optional parameters (:class:`~kittiwake.smpp.tlv.Tlvs`).

Field rules enforced both ways (3.1, 5.2): C-Octet Strings are ASCII terminated by NUL, with the maximum
lengths of chapter 4 *including* the NUL (system_id 16, password 9, system_type 13, service_type 6,
source/destination address 21 in submit_sm/deliver_sm and 65 in data_sm, address_range 41, message_id 65);
schedule_delivery_time and validity_period are empty or exactly 16 characters (7.1); short_message is
0-254 octets preceded by sm_length (5.2.21, 5.2.22). Encoding a value that breaks a rule raises
:class:`LocalProtocolError` (the bind password is never silently truncated); decoding one raises
:class:`RemoteProtocolError` with the command_status that names the field (ESME_RINVSRCADR, ESME_RINVPASWD,
...), so the session can answer with it. Decoding is tolerant where real SMSCs deviate harmlessly: a
response with a non-zero command_status may omit its body (4.4.2 note), header-only PDUs ignore trailing
octets, and C-Octet Strings are decoded as Latin-1 so no octet makes the decoder fail.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from kittiwake.smpp.constants import INTERFACE_VERSION_34, RESPONSE_BIT, CommandId, CommandStatus
from kittiwake.smpp.errors import LocalProtocolError, RemoteProtocolError, SmppError
from kittiwake.smpp.tlv import NetworkErrorCode, Tlvs, decode_tlvs, encode_tlvs

__all__ = [
    "HEADER",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "LocalProtocolError",
    "NetworkErrorCode",
    "Outbind",
    "Pdu",
    "PduBase",
    "RemoteProtocolError",
    "SmppError",
    "SubmitSm",
    "SubmitSmResp",
    "Tlvs",
    "Unbind",
    "UnbindResp",
    "decode",
    "encode",
    "is_response",
    "pdu_class",
    "response_class",
]

HEADER = struct.Struct(">IIII")  # 2.2.1: command_length, command_id, command_status, sequence_number
_S = CommandStatus


@dataclass(frozen=True)
class _Field:
    """One mandatory body field: kind is "cstr" (max octets incl. NUL), "time", "u8" or "sm"."""

    name: str
    kind: str
    size: int = 0
    status: int = CommandStatus.ESME_RINVCMDLEN


def _cstr(name: str, size: int, status: int) -> _Field:
    return _Field(name, "cstr", size, status)


def _u8(name: str) -> _Field:
    return _Field(name, "u8")


@dataclass(frozen=True, kw_only=True)
class PduBase:
    """Header fields shared by every PDU. ``command_status`` is 0 in requests (5.1.3)."""

    command_id: ClassVar[int]
    _BODY: ClassVar[tuple[_Field, ...] | None] = None  # None: header-only PDU (no body, no TLVs)

    sequence_number: int = 0
    command_status: int = 0


# --- session management (4.1, 4.2, 4.3) ---------------------------------------------------------------

_BIND_BODY = (
    _cstr("system_id", 16, _S.ESME_RINVSYSID),
    _cstr("password", 9, _S.ESME_RINVPASWD),
    _cstr("system_type", 13, _S.ESME_RINVSYSTYP),
    _u8("interface_version"),
    _u8("addr_ton"),
    _u8("addr_npi"),
    _cstr("address_range", 41, _S.ESME_RINVSRCADR),
)


@dataclass(frozen=True, kw_only=True)
class _Bind(PduBase):
    """4.1.1 / 4.1.3 / 4.1.5: the three bind requests share one layout."""

    _BODY = _BIND_BODY
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION_34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tlvs: Tlvs = field(default_factory=Tlvs)


@dataclass(frozen=True, kw_only=True)
class BindTransmitter(_Bind):
    command_id = CommandId.BIND_TRANSMITTER


@dataclass(frozen=True, kw_only=True)
class BindReceiver(_Bind):
    command_id = CommandId.BIND_RECEIVER


@dataclass(frozen=True, kw_only=True)
class BindTransceiver(_Bind):
    command_id = CommandId.BIND_TRANSCEIVER


@dataclass(frozen=True, kw_only=True)
class _BindResp(PduBase):
    """4.1.2 / 4.1.4 / 4.1.6: system_id of the SMSC, optional sc_interface_version TLV."""

    _BODY = (_cstr("system_id", 16, _S.ESME_RINVSYSID),)
    system_id: str = ""
    tlvs: Tlvs = field(default_factory=Tlvs)


@dataclass(frozen=True, kw_only=True)
class BindTransmitterResp(_BindResp):
    command_id = CommandId.BIND_TRANSMITTER_RESP


@dataclass(frozen=True, kw_only=True)
class BindReceiverResp(_BindResp):
    command_id = CommandId.BIND_RECEIVER_RESP


@dataclass(frozen=True, kw_only=True)
class BindTransceiverResp(_BindResp):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(frozen=True, kw_only=True)
class Outbind(PduBase):
    """4.1.7: the SMSC asks the ESME to bind (as receiver); no response PDU exists."""

    command_id = CommandId.OUTBIND
    _BODY = (_cstr("system_id", 16, _S.ESME_RINVSYSID), _cstr("password", 9, _S.ESME_RINVPASWD))
    system_id: str = ""
    password: str = ""
    tlvs: Tlvs = field(default_factory=Tlvs)


@dataclass(frozen=True, kw_only=True)
class Unbind(PduBase):
    command_id = CommandId.UNBIND  # 4.2.1


@dataclass(frozen=True, kw_only=True)
class UnbindResp(PduBase):
    command_id = CommandId.UNBIND_RESP  # 4.2.2


@dataclass(frozen=True, kw_only=True)
class EnquireLink(PduBase):
    command_id = CommandId.ENQUIRE_LINK  # 4.11.1


@dataclass(frozen=True, kw_only=True)
class EnquireLinkResp(PduBase):
    command_id = CommandId.ENQUIRE_LINK_RESP  # 4.11.2


@dataclass(frozen=True, kw_only=True)
class GenericNack(PduBase):
    command_id = CommandId.GENERIC_NACK  # 4.3.1


# --- messages (4.4 submit_sm, 4.6 deliver_sm, 4.7 data_sm) --------------------------------------------

_SM_BODY = (
    _cstr("service_type", 6, _S.ESME_RINVSERTYP),
    _u8("source_addr_ton"),
    _u8("source_addr_npi"),
    _cstr("source_addr", 21, _S.ESME_RINVSRCADR),
    _u8("dest_addr_ton"),
    _u8("dest_addr_npi"),
    _cstr("destination_addr", 21, _S.ESME_RINVDSTADR),
    _u8("esm_class"),
    _u8("protocol_id"),
    _u8("priority_flag"),
    _Field("schedule_delivery_time", "time", 17, _S.ESME_RINVSCHED),
    _Field("validity_period", "time", 17, _S.ESME_RINVEXPIRY),
    _u8("registered_delivery"),
    _u8("replace_if_present_flag"),
    _u8("data_coding"),
    _u8("sm_default_msg_id"),
    _Field("short_message", "sm", 254, _S.ESME_RINVMSGLEN),
)


@dataclass(frozen=True, kw_only=True)
class _ShortMessage(PduBase):
    """4.4.1 submit_sm and 4.6.1 deliver_sm share one layout (deliver_sm leaves the times empty)."""

    _BODY = _SM_BODY
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""
    tlvs: Tlvs = field(default_factory=Tlvs)


@dataclass(frozen=True, kw_only=True)
class SubmitSm(_ShortMessage):
    command_id = CommandId.SUBMIT_SM


@dataclass(frozen=True, kw_only=True)
class DeliverSm(_ShortMessage):
    command_id = CommandId.DELIVER_SM


@dataclass(frozen=True, kw_only=True)
class _MessageIdResp(PduBase):
    """4.4.2 submit_sm_resp, 4.6.2 deliver_sm_resp (message_id unused, NULL), 4.7.2 data_sm_resp."""

    _BODY = (_cstr("message_id", 65, _S.ESME_RINVMSGID),)
    message_id: str = ""
    tlvs: Tlvs = field(default_factory=Tlvs)


@dataclass(frozen=True, kw_only=True)
class SubmitSmResp(_MessageIdResp):
    command_id = CommandId.SUBMIT_SM_RESP


@dataclass(frozen=True, kw_only=True)
class DeliverSmResp(_MessageIdResp):
    command_id = CommandId.DELIVER_SM_RESP


@dataclass(frozen=True, kw_only=True)
class DataSmResp(_MessageIdResp):
    command_id = CommandId.DATA_SM_RESP


@dataclass(frozen=True, kw_only=True)
class DataSm(PduBase):
    """4.7.1: addresses are up to 65 octets here; the text travels in the message_payload TLV."""

    command_id = CommandId.DATA_SM
    _BODY = (
        _cstr("service_type", 6, _S.ESME_RINVSERTYP),
        _u8("source_addr_ton"),
        _u8("source_addr_npi"),
        _cstr("source_addr", 65, _S.ESME_RINVSRCADR),
        _u8("dest_addr_ton"),
        _u8("dest_addr_npi"),
        _cstr("destination_addr", 65, _S.ESME_RINVDSTADR),
        _u8("esm_class"),
        _u8("registered_delivery"),
        _u8("data_coding"),
    )
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0
    tlvs: Tlvs = field(default_factory=Tlvs)


Pdu: TypeAlias = (
    BindTransmitter
    | BindReceiver
    | BindTransceiver
    | BindTransmitterResp
    | BindReceiverResp
    | BindTransceiverResp
    | Outbind
    | Unbind
    | UnbindResp
    | EnquireLink
    | EnquireLinkResp
    | GenericNack
    | SubmitSm
    | SubmitSmResp
    | DeliverSm
    | DeliverSmResp
    | DataSm
    | DataSmResp
)

_CLASSES: tuple[type[PduBase], ...] = (
    BindTransmitter,
    BindReceiver,
    BindTransceiver,
    BindTransmitterResp,
    BindReceiverResp,
    BindTransceiverResp,
    Outbind,
    Unbind,
    UnbindResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
    DeliverSm,
    DeliverSmResp,
    DataSm,
    DataSmResp,
)
_BY_ID: dict[int, type[PduBase]] = {cls.command_id: cls for cls in _CLASSES}


def pdu_class(command_id: int) -> type[PduBase] | None:
    """The dataclass for ``command_id``, or None for ids this codec does not model."""
    return _BY_ID.get(command_id)


def is_response(command_id: int) -> bool:
    return bool(command_id & RESPONSE_BIT)


def response_class(request: type[PduBase]) -> type[PduBase] | None:
    """bind_transmitter -> bind_transmitter_resp, ...; None for outbind (it has no response, 4.1.7)."""
    return _BY_ID.get(request.command_id | RESPONSE_BIT)


# --- encode -------------------------------------------------------------------------------------------


def _encode_cstr(f: _Field, value: object) -> bytes:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{f.name} must be a str")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{f.name} must be ASCII (SMPP 3.4 3.1 C-Octet String)") from None
    if b"\0" in raw:
        raise LocalProtocolError(f"{f.name} must not contain NUL")
    if f.kind == "time" and len(raw) not in (0, 16):
        raise LocalProtocolError(f"{f.name} must be empty or 16 characters (SMPP 3.4 7.1)")
    if len(raw) + 1 > f.size:
        raise LocalProtocolError(f"{f.name} is {len(raw)} octets; SMPP 3.4 allows {f.size - 1} plus NUL")
    return raw + b"\0"


def _encode_field(f: _Field, value: object) -> bytes:
    if f.kind == "u8":
        if not isinstance(value, int) or not 0 <= value <= 0xFF:
            raise LocalProtocolError(f"{f.name}={value!r} is not an octet")
        return bytes((value,))
    if f.kind == "sm":
        if not isinstance(value, bytes):
            raise LocalProtocolError(f"{f.name} must be bytes")
        if len(value) > f.size:
            raise LocalProtocolError(f"short_message is {len(value)} octets; at most 254 (SMPP 3.4 5.2.22)")
        return bytes((len(value),)) + value
    return _encode_cstr(f, value)


def encode(pdu: PduBase) -> bytes:
    """Serialise one PDU, header included. LocalProtocolError if a field breaks an SMPP 3.4 rule."""
    body = b""
    if pdu._BODY is not None:
        body = b"".join(_encode_field(f, getattr(pdu, f.name)) for f in pdu._BODY)
        tlvs: Tlvs = getattr(pdu, "tlvs")  # noqa: B009 - every PDU with a body has tlvs
        if isinstance(pdu, _ShortMessage) and pdu.short_message and tlvs.message_payload is not None:
            # 5.3.2.32: short_message and message_payload must not both carry the message.
            raise LocalProtocolError("short_message and message_payload are mutually exclusive")
        body += encode_tlvs(tlvs)
    for name in ("sequence_number", "command_status"):
        value = getattr(pdu, name)
        if not 0 <= value <= 0xFFFFFFFF:
            raise LocalProtocolError(f"{name}={value} does not fit in an Int4")
    return HEADER.pack(HEADER.size + len(body), pdu.command_id, pdu.command_status, pdu.sequence_number) + body


# --- decode -------------------------------------------------------------------------------------------


def _decode_fields(fields: tuple[_Field, ...], data: bytes, pos: int) -> tuple[dict[str, object], int]:
    values: dict[str, object] = {}
    end = len(data)
    for f in fields:
        if f.kind in ("cstr", "time"):
            nul = data.find(b"\0", pos, min(end, pos + f.size))
            if nul < 0:
                raise RemoteProtocolError(f"{f.name} is not NUL-terminated within {f.size} octets", f.status)
            if f.kind == "time" and nul - pos not in (0, 16):
                raise RemoteProtocolError(f"{f.name} must be empty or 16 characters", f.status)
            values[f.name] = data[pos:nul].decode("latin-1")
            pos = nul + 1
        elif pos >= end:
            raise RemoteProtocolError(f"body ends before {f.name}", _S.ESME_RINVCMDLEN)
        elif f.kind == "u8":
            values[f.name] = data[pos]
            pos += 1
        else:  # "sm": sm_length then the octets (5.2.21, 5.2.22)
            length = data[pos]
            if length > f.size or pos + 1 + length > end:
                raise RemoteProtocolError(f"sm_length {length} does not fit the body", f.status)
            values[f.name] = data[pos + 1 : pos + 1 + length]
            pos += 1 + length
    return values, pos


def decode(data: bytes) -> Pdu:
    """Parse exactly one PDU. RemoteProtocolError (with command_status, and the sequence number once the
    header is readable) if it is malformed or of a command this codec does not model."""
    if len(data) < HEADER.size:
        raise RemoteProtocolError(f"PDU of {len(data)} octets is shorter than the header", _S.ESME_RINVCMDLEN)
    length, command_id, status, seq = HEADER.unpack_from(data)
    if length != len(data):
        raise RemoteProtocolError(
            f"command_length {length} but {len(data)} octets given", _S.ESME_RINVCMDLEN, sequence_number=seq
        )
    cls = _BY_ID.get(command_id)
    if cls is None:
        raise RemoteProtocolError(
            f"unsupported command_id 0x{command_id:08X}",
            _S.ESME_RINVCMDID,
            sequence_number=seq,
            command_id=command_id,
        )
    kwargs: dict[str, object] = {"sequence_number": seq, "command_status": status}
    body = data[HEADER.size :]
    # 4.4.2 et al.: a response carrying an error may omit its body; the header is all there is.
    if cls._BODY is not None and (body or not is_response(command_id) or status == 0):
        try:
            values, pos = _decode_fields(cls._BODY, body, 0)
            values["tlvs"] = decode_tlvs(body[pos:])
        except RemoteProtocolError as exc:
            exc.sequence_number = seq
            exc.command_id = command_id
            raise
        kwargs.update(values)
    return cls(**kwargs)  # type: ignore[return-value, arg-type]
