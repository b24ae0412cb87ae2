"""SMPP 3.4 optional parameters (TLVs, section 5.3): the typed set an ESME uses, and the raw rest.

Every TLV is tag (Int2) + length (Int2) + value (5.3.1). The ones Kittiwake acts on are decoded into typed
fields of :class:`Tlvs`; any other tag is kept as raw ``(tag, value)`` in the order received, so a PDU
relayed or logged loses nothing. On encode the known fields are written first in a fixed order, then the
unknown ones in their order. A repeated known tag keeps the last value (5.3 does not allow repeats).

Known-tag formats (5.3.2): receipted_message_id C-Octet String up to 65 octets with its NUL (5.3.2.12; a
missing NUL is tolerated on decode, several SMSCs omit it), message_state Int1 (5.3.2.35), sar_msg_ref_num
Int2 (5.3.2.22), sar_total_segments Int1 (5.3.2.23), sar_segment_seqnum Int1 (5.3.2.24), message_payload
Octet String (5.3.2.32), user_message_reference Int2 (5.3.2.17), network_error_code 3 octets: network type
Int1 + error code Int2 (5.3.2.31), sc_interface_version Int1 (5.3.2.25).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields

from kittiwake.smpp.constants import CommandStatus, TlvTag
from kittiwake.smpp.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["NetworkErrorCode", "Tlvs", "decode_tlvs", "encode_tlvs"]

_RECEIPTED_ID_MAX = 65  # octets including the NUL (5.3.2.12)


@dataclass(frozen=True, kw_only=True)
class NetworkErrorCode:
    """network_error_code (5.3.2.31): network_type 1=ANSI-136, 2=IS-95, 3=GSM, ...; error_code is theirs."""

    network_type: int
    error_code: int


@dataclass(frozen=True, kw_only=True)
class Tlvs:
    """The optional parameters of one PDU. ``None`` means absent."""

    receipted_message_id: str | None = None
    message_state: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    message_payload: bytes | None = None
    user_message_reference: int | None = None
    network_error_code: NetworkErrorCode | None = None
    sc_interface_version: int | None = None
    unknown: tuple[tuple[int, bytes], ...] = ()

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) not in (None, ()) for f in fields(self))


# field name -> (tag, kind); kind is "u8", "u16", "cstr", "octets" or "neterr". Order = encode order.
_KNOWN: dict[str, tuple[int, str]] = {
    "receipted_message_id": (TlvTag.RECEIPTED_MESSAGE_ID, "cstr"),
    "message_state": (TlvTag.MESSAGE_STATE, "u8"),
    "sar_msg_ref_num": (TlvTag.SAR_MSG_REF_NUM, "u16"),
    "sar_total_segments": (TlvTag.SAR_TOTAL_SEGMENTS, "u8"),
    "sar_segment_seqnum": (TlvTag.SAR_SEGMENT_SEQNUM, "u8"),
    "message_payload": (TlvTag.MESSAGE_PAYLOAD, "octets"),
    "user_message_reference": (TlvTag.USER_MESSAGE_REFERENCE, "u16"),
    "network_error_code": (TlvTag.NETWORK_ERROR_CODE, "neterr"),
    "sc_interface_version": (TlvTag.SC_INTERFACE_VERSION, "u8"),
}
_BY_TAG: dict[int, tuple[str, str]] = {tag: (name, kind) for name, (tag, kind) in _KNOWN.items()}
_TLV_HEADER = struct.Struct(">HH")


def _encode_value(name: str, kind: str, value: object) -> bytes:
    if kind in ("u8", "u16"):
        assert isinstance(value, int)
        limit = 0xFF if kind == "u8" else 0xFFFF
        if not 0 <= value <= limit:
            raise LocalProtocolError(f"TLV {name}={value} is out of range 0..{limit}")
        return value.to_bytes(1 if kind == "u8" else 2, "big")
    if kind == "cstr":
        assert isinstance(value, str)
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"TLV {name} must be ASCII") from None
        if b"\0" in raw or len(raw) + 1 > _RECEIPTED_ID_MAX:
            raise LocalProtocolError(f"TLV {name} must be at most {_RECEIPTED_ID_MAX - 1} octets without NUL")
        return raw + b"\0"
    if kind == "neterr":
        assert isinstance(value, NetworkErrorCode)
        if not (0 <= value.network_type <= 0xFF and 0 <= value.error_code <= 0xFFFF):
            raise LocalProtocolError(f"TLV network_error_code {value} is out of range")
        return struct.pack(">BH", value.network_type, value.error_code)
    assert isinstance(value, bytes)
    return value


def _frame(tag: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"TLV 0x{tag:04X} value is {len(value)} octets; the length field holds 65535")
    return _TLV_HEADER.pack(tag, len(value)) + value


def encode_tlvs(tlvs: Tlvs) -> bytes:
    """Serialise ``tlvs``: known fields in a fixed order, then the unknown ones in order."""
    out: list[bytes] = []
    for name, (tag, kind) in _KNOWN.items():
        value = getattr(tlvs, name)
        if value is not None:
            out.append(_frame(tag, _encode_value(name, kind, value)))
    for tag, value in tlvs.unknown:
        if not 0 <= tag <= 0xFFFF:
            raise LocalProtocolError(f"TLV tag {tag} is out of range")
        if tag in _BY_TAG:
            raise LocalProtocolError(f"TLV tag 0x{tag:04X} is {_BY_TAG[tag][0]}: set the typed field instead")
        out.append(_frame(tag, value))
    return b"".join(out)


def _decode_value(tag: int, kind: str, value: bytes) -> object:
    def bad_length() -> RemoteProtocolError:
        return RemoteProtocolError(f"TLV 0x{tag:04X} has length {len(value)}", CommandStatus.ESME_RINVPARLEN)

    if kind == "u8":
        if len(value) != 1:
            raise bad_length()
        return value[0]
    if kind == "u16":
        if len(value) != 2:
            raise bad_length()
        return int.from_bytes(value, "big")
    if kind == "neterr":
        if len(value) != 3:
            raise bad_length()
        network_type, error_code = struct.unpack(">BH", value)
        return NetworkErrorCode(network_type=network_type, error_code=error_code)
    if kind == "cstr":
        if len(value) > _RECEIPTED_ID_MAX:
            raise bad_length()
        return value.split(b"\0", 1)[0].decode("latin-1")
    return value


def decode_tlvs(data: bytes | memoryview) -> Tlvs:
    """Parse a run of TLVs (the rest of a PDU body). RemoteProtocolError on a truncated or bad TLV.

    The error carries no sequence number; :func:`kittiwake.smpp.pdu.decode` adds it.
    """
    view = memoryview(data)
    known: dict[str, object] = {}
    unknown: list[tuple[int, bytes]] = []
    pos = 0
    end = len(view)
    while pos < end:
        if end - pos < 4:
            raise RemoteProtocolError("truncated TLV header", CommandStatus.ESME_RINVOPTPARSTREAM)
        tag, length = _TLV_HEADER.unpack_from(view, pos)
        pos += 4
        if end - pos < length:
            raise RemoteProtocolError(
                f"TLV 0x{tag:04X} claims {length} octets, {end - pos} left", CommandStatus.ESME_RINVOPTPARSTREAM
            )
        value = bytes(view[pos : pos + length])
        pos += length
        spec = _BY_TAG.get(tag)
        if spec is None:
            unknown.append((tag, value))
        else:
            known[spec[0]] = _decode_value(tag, spec[1], value)
    return Tlvs(unknown=tuple(unknown), **known)  # type: ignore[arg-type]
