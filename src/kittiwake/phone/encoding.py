"""SMS text encoding and segmentation: GSM-7 or UCS-2, and how a body is cut into parts.

This module owns the GSM 03.38 (3GPP TS 23.038) default alphabet and its extension table, the choice
between GSM-7 and UCS-2 for a body, the number of segments Twilio reports as NumSegments, the actual
parts sent as a concatenated SMS, and the unpacked GSM-7 / UCS-2 byte codecs used for SMPP
(data_coding 0 and 8). It is pure: no I/O.

Sizes (3GPP TS 23.040): the TP-User-Data of one SMS holds 140 octets, that is 160 septets of GSM-7 or
70 UCS-2 code units. A concatenated message carries a User Data Header with the 8-bit reference
concatenation element (TS 23.040 9.2.3.24.1: UDHL 1 + IEI 1 + IEDL 1 + 3 octets of data = 6 octets),
which leaves 134 octets: 67 UCS-2 units, or 153 septets of GSM-7 once the header is padded to a septet
boundary (48 bits + 1 fill bit = 7 septets; 160 - 7 = 153).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "Encoding",
    "Segmentation",
    "choose_encoding",
    "count_segments",
    "decode_gsm7_unpacked",
    "decode_ucs2",
    "encode_gsm7_unpacked",
    "encode_ucs2",
    "gsm7_septets",
    "segment",
]


class Encoding(enum.Enum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"


# GSM 03.38 (3GPP TS 23.038 6.2.1) default alphabet, position -> character, one row of 16 per line.
# Position 0x1B is ESC (escape to the extension table), not a character: it is excluded from GSM7_BASIC.
_ESC = 0x1B
_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00: 0x09 is capital C-cedilla; 0x0A LF, 0x0D CR
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10: Greek capitals; 0x1B ESC
    " !\"#¤%&'()*+,-./"  # 0x20: 0x24 is the currency sign ¤, not '$'
    "0123456789:;<=>?"  # 0x30
    "¡ABCDEFGHIJKLMNO"  # 0x40: 0x40 is '¡', not '@'
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50: 0x5F is '§' (no backtick anywhere in the table)
    "¿abcdefghijklmno"  # 0x60
    "pqrstuvwxyzäöñüà"  # 0x70
)
assert len(_BASIC_TABLE) == 128

# GSM 03.38 (3GPP TS 23.038 6.2.1.1) extension table: sent as ESC followed by this position, so each
# character costs two septets.
_EXTENSION_TABLE: dict[int, str] = {
    0x0A: "\f",  # form feed (page break)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

GSM7_BASIC: frozenset[str] = frozenset(c for i, c in enumerate(_BASIC_TABLE) if i != _ESC)
GSM7_EXTENSION: frozenset[str] = frozenset(_EXTENSION_TABLE.values())
_GSM7_ALL: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION

_ENCODE_MAP: dict[int, str] = {ord(c): chr(i) for i, c in enumerate(_BASIC_TABLE) if i != _ESC}
_ENCODE_MAP.update({ord(c): chr(_ESC) + chr(i) for i, c in _EXTENSION_TABLE.items()})

# Part sizes (see the module docstring for the TS 23.040 arithmetic).
GSM7_SINGLE = 160
GSM7_MULTI = 153
UCS2_SINGLE = 70
UCS2_MULTI = 67


@dataclass(frozen=True)
class Segmentation:
    encoding: Encoding
    parts: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.parts)


def choose_encoding(text: str) -> Encoding:
    """GSM-7 if every character is in the default alphabet or its extension table, else UCS-2."""
    return Encoding.GSM7 if _GSM7_ALL.issuperset(text) else Encoding.UCS2


def _extension_count(text: str, chars: frozenset[str] | set[str]) -> int:
    return sum(text.count(c) for c in GSM7_EXTENSION.intersection(chars))


def gsm7_septets(text: str) -> int:
    """Septets needed for ``text`` in GSM-7 (extension characters cost 2); ValueError if not GSM-7."""
    chars = set(text)
    if not chars <= _GSM7_ALL:
        raise ValueError("text contains characters outside GSM 03.38")
    return len(text) + _extension_count(text, chars)


def _utf16_units(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def _split(text: str, limit: int, cost_of: dict[str, int] | None) -> list[str]:
    """Greedy split into parts of at most ``limit`` units, never cutting a character.

    Cutting only between Python characters is what keeps a GSM-7 escape pair (one extension character)
    or a UTF-16 surrogate pair (one astral character) inside a single part.
    """
    parts: list[str] = []
    start = 0
    used = 0
    for i, ch in enumerate(text):
        cost = cost_of.get(ch, 1) if cost_of is not None else _utf16_units(ch)
        if used + cost > limit:
            parts.append(text[start:i])
            start, used = i, 0
        used += cost
    parts.append(text[start:])
    return parts


_GSM7_COSTS: dict[str, int] = dict.fromkeys(GSM7_EXTENSION, 2)


def segment(text: str) -> Segmentation:
    """Cut ``text`` into SMS parts. An empty body is one empty part (Twilio counts it as 1 segment)."""
    if choose_encoding(text) is Encoding.GSM7:
        if gsm7_septets(text) <= GSM7_SINGLE:
            return Segmentation(Encoding.GSM7, (text,))
        return Segmentation(Encoding.GSM7, tuple(_split(text, GSM7_MULTI, _GSM7_COSTS)))
    if len(text.encode("utf-16-le", "surrogatepass")) // 2 <= UCS2_SINGLE:
        return Segmentation(Encoding.UCS2, (text,))
    return Segmentation(Encoding.UCS2, tuple(_split(text, UCS2_MULTI, None)))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def count_segments(text: str) -> int:
    """Number of segments, without building the parts when the answer is arithmetic."""
    n = len(text)
    if n == 0:
        return 1
    chars = set(text)
    if chars <= GSM7_BASIC:
        return 1 if n <= GSM7_SINGLE else _ceil_div(n, GSM7_MULTI)
    if chars <= _GSM7_ALL:
        if n + _extension_count(text, chars) <= GSM7_SINGLE:
            return 1
        # Escape pairs may not straddle a boundary, so the arithmetic bound can be one short.
        return len(_split(text, GSM7_MULTI, _GSM7_COSTS))
    astral = sum(1 for c in chars if ord(c) > 0xFFFF)
    if not astral:
        return 1 if n <= UCS2_SINGLE else _ceil_div(n, UCS2_MULTI)
    units = n + sum(text.count(c) for c in chars if ord(c) > 0xFFFF)
    if units <= UCS2_SINGLE:
        return 1
    return len(_split(text, UCS2_MULTI, None))


def encode_gsm7_unpacked(text: str) -> bytes:
    """GSM-7, one septet per octet (SMPP data_coding 0); extension characters as 0x1B + position."""
    if not _GSM7_ALL.issuperset(text):
        raise ValueError("text contains characters outside GSM 03.38")
    return text.translate(_ENCODE_MAP).encode("latin-1")


def decode_gsm7_unpacked(data: bytes) -> str:
    """Inverse of :func:`encode_gsm7_unpacked`; ValueError on an octet above 0x7F.

    Per GSM 03.38 6.2.1.1, an escape followed by a position missing from the extension table is shown
    as the default-alphabet character at that position, and ESC ESC (reserved for a further extension
    table) or a trailing ESC is shown as a space.
    """
    out: list[str] = []
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b > 0x7F:
            raise ValueError(f"octet 0x{b:02X} at {i} is not a GSM-7 septet")
        if b != _ESC:
            out.append(_BASIC_TABLE[b])
            i += 1
            continue
        if i + 1 >= n or data[i + 1] == _ESC:
            out.append(" ")
            i += 2
            continue
        nxt = data[i + 1]
        if nxt > 0x7F:
            raise ValueError(f"octet 0x{nxt:02X} at {i + 1} is not a GSM-7 septet")
        out.append(_EXTENSION_TABLE.get(nxt, _BASIC_TABLE[nxt]))
        i += 2
    return "".join(out)


def encode_ucs2(text: str) -> bytes:
    """UTF-16BE (SMPP data_coding 8); astral characters become surrogate pairs."""
    return text.encode("utf-16-be", "surrogatepass")


def decode_ucs2(data: bytes) -> str:
    """Inverse of :func:`encode_ucs2`; ValueError (UnicodeDecodeError) on an odd length."""
    return data.decode("utf-16-be", "surrogatepass")
