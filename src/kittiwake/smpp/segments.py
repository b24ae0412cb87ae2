"""Turn a message body into submit_sm payloads, and read a deliver_sm payload back into text.

The split itself is :func:`kittiwake.phone.encoding.segment` (the same one that counts NumSegments, so what
the API reports is what goes on the wire). This module adds the SMPP side:

- data_coding 0 (SMSC default alphabet = GSM 03.38, one septet per octet, unpacked; the SMSC packs it) or
  8 (UCS-2, big-endian) (SMPP 3.4 5.2.19).
- Concatenation of a multi-part message, configurable per SMSC:

  * ``UDH``: each short_message starts with a User Data Header holding the 8-bit reference concatenation
    element (3GPP TS 23.040 9.2.3.24.1): ``05 00 03 ref total seq``, and esm_class has UDHI (0x40, SMPP 3.4
    5.2.12). The segmenter's 153 GSM-7 septets / 67 UCS-2 units per part leave room for it.
  * ``SAR``: the short_message is bare and the sar_msg_ref_num / sar_total_segments / sar_segment_seqnum
    TLVs (5.3.2.22-24) tell the SMSC to build the header itself.

A single-part message carries neither. The reference number is the caller's (it must differ between
concurrent long messages to one handset): 0-255 for UDH, 0-65535 for SAR.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from kittiwake.phone.encoding import Encoding, decode_gsm7_unpacked, encode_gsm7_unpacked, encode_ucs2, segment
from kittiwake.smpp.constants import DataCoding, EsmClass
from kittiwake.smpp.pdu import SubmitSm
from kittiwake.smpp.tlv import Tlvs

__all__ = [
    "Concatenation",
    "DecodedMessage",
    "SmppPart",
    "apply_part",
    "build_parts",
    "decode_short_message",
]

_IEI_CONCAT_8BIT = 0x00  # TS 23.040 9.2.3.24.1
_IEI_CONCAT_16BIT = 0x08  # TS 23.040 9.2.3.24.8


class Concatenation(enum.Enum):
    UDH = "udh"
    SAR = "sar"


@dataclass(frozen=True)
class SmppPart:
    """The fields of one submit_sm that carry one part of the message."""

    short_message: bytes
    data_coding: int
    esm_class: int  # EsmClass.UDHI for a UDH part, else 0
    tlvs: Tlvs


def build_parts(
    text: str, *, reference: int = 0, concatenation: Concatenation = Concatenation.UDH
) -> tuple[SmppPart, ...]:
    """Encode and split ``text``; ValueError if ``reference`` is out of range or there are over 255 parts."""
    seg = segment(text)
    if seg.encoding is Encoding.GSM7:
        data_coding, encode = int(DataCoding.SMSC_DEFAULT), encode_gsm7_unpacked
    else:
        data_coding, encode = int(DataCoding.UCS2), encode_ucs2
    payloads = [encode(p) for p in seg.parts]
    total = len(payloads)
    if total == 1:
        return (SmppPart(payloads[0], data_coding, 0, Tlvs()),)
    if total > 255:
        raise ValueError(f"{total} parts; concatenation allows at most 255")
    if concatenation is Concatenation.UDH:
        if not 0 <= reference <= 0xFF:
            raise ValueError("a UDH concatenation reference is 0-255")
        return tuple(
            SmppPart(bytes((5, _IEI_CONCAT_8BIT, 3, reference, total, i)) + p, data_coding, EsmClass.UDHI, Tlvs())
            for i, p in enumerate(payloads, start=1)
        )
    if not 0 <= reference <= 0xFFFF:
        raise ValueError("a sar_msg_ref_num is 0-65535")
    return tuple(
        SmppPart(
            p,
            data_coding,
            0,
            Tlvs(sar_msg_ref_num=reference, sar_total_segments=total, sar_segment_seqnum=i),
        )
        for i, p in enumerate(payloads, start=1)
    )


def apply_part(template: SubmitSm, part: SmppPart) -> SubmitSm:
    """``template`` (addresses, registered_delivery, ...) carrying ``part``; its other TLVs are kept."""
    tlvs = replace(
        template.tlvs,
        sar_msg_ref_num=part.tlvs.sar_msg_ref_num,
        sar_total_segments=part.tlvs.sar_total_segments,
        sar_segment_seqnum=part.tlvs.sar_segment_seqnum,
    )
    return replace(
        template,
        short_message=part.short_message,
        data_coding=part.data_coding,
        esm_class=(template.esm_class & ~EsmClass.UDHI) | part.esm_class,
        tlvs=tlvs,
    )


@dataclass(frozen=True)
class DecodedMessage:
    """A deliver_sm payload as text; ``concat`` is (reference, total, seqnum) of a part, from UDH or SAR."""

    text: str
    concat: tuple[int, int, int] | None


def _split_udh(data: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    if not data or data[0] + 1 > len(data):
        return None, data  # a UDHI flag without a usable header: treat everything as text
    udhl = data[0]
    header, body = data[1 : 1 + udhl], data[1 + udhl :]
    concat = None
    pos = 0
    while pos + 2 <= len(header):
        iei, length = header[pos], header[pos + 1]
        value = header[pos + 2 : pos + 2 + length]
        if iei == _IEI_CONCAT_8BIT and len(value) == 3:
            concat = (value[0], value[1], value[2])
        elif iei == _IEI_CONCAT_16BIT and len(value) == 4:
            concat = (int.from_bytes(value[:2], "big"), value[2], value[3])
        pos += 2 + length
    return concat, body


def _decode_text(data: bytes, data_coding: int) -> str:
    if data_coding == DataCoding.UCS2:
        return data[: len(data) & ~1].decode("utf-16-be", "replace")
    if data_coding == DataCoding.SMSC_DEFAULT:
        try:
            return decode_gsm7_unpacked(data)
        except ValueError:
            pass  # octets above 0x7F: this SMSC's default alphabet is Latin-1 after all
    return data.decode("latin-1")


def _sar(tlvs: Tlvs) -> tuple[int, int, int] | None:
    ref, total, seq = tlvs.sar_msg_ref_num, tlvs.sar_total_segments, tlvs.sar_segment_seqnum
    return (ref, total, seq) if ref is not None and total and seq else None


def decode_short_message(
    short_message: bytes, data_coding: int, esm_class: int, tlvs: Tlvs | None = None
) -> DecodedMessage:
    """Text of a received message (message_payload wins over short_message, 5.3.2.32). Never raises."""
    data = tlvs.message_payload if tlvs is not None and tlvs.message_payload is not None else short_message
    concat = None
    if esm_class & EsmClass.UDHI:
        concat, data = _split_udh(data)
    if concat is None and tlvs is not None:
        concat = _sar(tlvs)
    return DecodedMessage(_decode_text(data, data_coding), concat)
