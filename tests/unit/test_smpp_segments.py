"""SMPP payloads for a body: data_coding, UDH or SAR concatenation, and reading a deliver_sm back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kittiwake.phone.encoding import decode_gsm7_unpacked, decode_ucs2
from kittiwake.smpp import pdu as P
from kittiwake.smpp.constants import EsmClass
from kittiwake.smpp.segments import Concatenation, apply_part, build_parts, decode_short_message
from kittiwake.smpp.tlv import Tlvs


def test_single_gsm7_part_has_no_header() -> None:
    (part,) = build_parts("hello @ £")
    assert part.data_coding == 0
    assert part.esm_class == 0
    assert part.short_message == b"hello \x00 \x01"
    assert not part.tlvs


def test_160_gsm7_characters_fit_one_part() -> None:
    (part,) = build_parts("a" * 160)
    assert part.short_message == b"a" * 160


def test_161_characters_make_two_udh_parts() -> None:
    parts = build_parts("a" * 161, reference=0x2A)
    assert len(parts) == 2
    assert parts[0].short_message == bytes([5, 0, 3, 0x2A, 2, 1]) + b"a" * 153
    assert parts[1].short_message == bytes([5, 0, 3, 0x2A, 2, 2]) + b"a" * 8
    assert all(p.esm_class == EsmClass.UDHI and p.data_coding == 0 for p in parts)


def test_sar_parts_carry_tlvs_and_bare_payloads() -> None:
    parts = build_parts("a" * 161, reference=0x1234, concatenation=Concatenation.SAR)
    assert [p.short_message for p in parts] == [b"a" * 153, b"a" * 8]
    assert [p.esm_class for p in parts] == [0, 0]
    assert [(p.tlvs.sar_msg_ref_num, p.tlvs.sar_total_segments, p.tlvs.sar_segment_seqnum) for p in parts] == [
        (0x1234, 2, 1),
        (0x1234, 2, 2),
    ]


def test_ucs2_emoji_is_not_split() -> None:
    # 66 BMP characters then an emoji (a surrogate pair): the pair must not straddle the 67-unit boundary.
    text = "é" * 66 + "😀" + "é" * 10
    parts = build_parts(text, reference=1)
    assert all(p.data_coding == 8 for p in parts)
    bodies = [p.short_message[6:] for p in parts]
    assert all(len(b) <= 134 for b in bodies)
    assert "".join(decode_ucs2(b) for b in bodies) == text
    assert decode_ucs2(bodies[0]) == "é" * 66
    assert decode_ucs2(bodies[1]).startswith("😀")


def test_gsm7_escape_pair_is_not_split() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = build_parts(text, reference=1)
    bodies = [p.short_message[6:] for p in parts]
    assert bodies[0] == b"a" * 152
    assert "".join(decode_gsm7_unpacked(b) for b in bodies) == text


def test_empty_body_is_one_empty_part() -> None:
    (part,) = build_parts("")
    assert part.short_message == b""


@pytest.mark.parametrize(
    ("concatenation", "reference"), [(Concatenation.UDH, 256), (Concatenation.UDH, -1), (Concatenation.SAR, 65536)]
)
def test_reference_out_of_range(concatenation: Concatenation, reference: int) -> None:
    with pytest.raises(ValueError):
        build_parts("a" * 200, reference=reference, concatenation=concatenation)


def test_too_many_parts() -> None:
    with pytest.raises(ValueError):
        build_parts("a" * (153 * 255 + 1))


@given(st.text(max_size=700), st.integers(0, 255), st.sampled_from(list(Concatenation)))
def test_parts_fit_and_reassemble(text: str, reference: int, concatenation: Concatenation) -> None:
    parts = build_parts(text, reference=reference, concatenation=concatenation)
    template = P.SubmitSm(destination_addr="447700900000", registered_delivery=1)
    texts = []
    for part in parts:
        sm = apply_part(template, part)
        assert P.decode(P.encode(sm)) == sm  # every part is a legal submit_sm
        assert len(sm.short_message) <= 160 if part.data_coding == 0 else len(sm.short_message) <= 140
        decoded = decode_short_message(sm.short_message, sm.data_coding, sm.esm_class, sm.tlvs)
        if len(parts) > 1:
            assert decoded.concat is not None and decoded.concat[1] == len(parts)
        texts.append(decoded.text)
    assert "".join(texts) == text


def test_apply_part_keeps_template_fields() -> None:
    template = P.SubmitSm(
        source_addr="KITTI", destination_addr="1", esm_class=0x03, tlvs=Tlvs(user_message_reference=9)
    )
    (first, _) = build_parts("a" * 200, reference=7)
    sm = apply_part(template, first)
    assert sm.source_addr == "KITTI" and sm.esm_class == 0x43
    assert sm.tlvs.user_message_reference == 9


def test_decode_16bit_reference_udh() -> None:
    data = bytes([6, 8, 4, 0x12, 0x34, 3, 2]) + b"hi"
    decoded = decode_short_message(data, 0, EsmClass.UDHI)
    assert decoded.text == "hi" and decoded.concat == (0x1234, 3, 2)


def test_decode_tolerates_latin1_in_default_alphabet_and_odd_ucs2() -> None:
    assert decode_short_message("café".encode("latin-1"), 0, 0).text == "café"
    assert decode_short_message(b"\x00h\x00", 8, 0).text == "h"
    assert decode_short_message(b"\x09", 0, EsmClass.UDHI).text == "Ç"  # header longer than data: no header


def test_message_payload_wins() -> None:
    decoded = decode_short_message(b"", 0, 0, Tlvs(message_payload=b"long text"))
    assert decoded.text == "long text"
