"""Unit and property tests for kittiwake.phone.encoding (GSM 03.38 / UCS-2 segmentation and codecs)."""

from __future__ import annotations

import codecs
import unicodedata

import gsm0338
import pytest
from gsm0338.charset import BASIC_CHARACTER_SET, BASIC_CHARACTER_SET_EXTENSION
from hypothesis import given
from hypothesis import strategies as st

from kittiwake.phone.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Encoding,
    Segmentation,
    choose_encoding,
    count_segments,
    decode_gsm7_unpacked,
    decode_ucs2,
    encode_gsm7_unpacked,
    encode_ucs2,
    gsm7_septets,
    segment,
)

GSM_ALL = sorted(GSM7_BASIC | GSM7_EXTENSION)
EXTENSION = sorted(GSM7_EXTENSION)


def units(s: str) -> int:
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


# --- the alphabet ------------------------------------------------------------------------------------


def test_basic_table_size() -> None:
    # 128 positions minus ESC (0x1B).
    assert len(GSM7_BASIC) == 127
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENSION
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize("ch", ["é", "Ç", "§", "@", "$", "£", "¥", "Δ", "Ω", "¤", "¡", "¿", "\n", "\r", "_", "à"])
def test_in_basic_table(ch: str) -> None:
    assert ch in GSM7_BASIC
    assert choose_encoding(ch) is Encoding.GSM7


@pytest.mark.parametrize("ch", ["á", "ç", "`", "\t", "\x1b", "“", "’", "😀", "ê", "Ã", "\x00"])
def test_not_in_gsm(ch: str) -> None:
    assert ch not in GSM7_BASIC
    assert ch not in GSM7_EXTENSION
    assert choose_encoding("hello " + ch) is Encoding.UCS2


def _oracle_char(name: str) -> str:
    return "\x1b" if name == "ESCAPE" else unicodedata.lookup(name)


def test_basic_table_agrees_with_gsm0338_oracle() -> None:
    oracle = {_oracle_char(name) for name in BASIC_CHARACTER_SET.values()} - {"\x1b"}
    assert oracle == GSM7_BASIC
    oracle_ext = {unicodedata.lookup(name) for name in BASIC_CHARACTER_SET_EXTENSION.values()}
    assert oracle_ext == GSM7_EXTENSION


def test_encoder_agrees_with_gsm0338_codec_on_every_character() -> None:
    assert gsm0338.Codec.NAME == "gsm03.38"
    text = "".join(GSM_ALL)
    assert encode_gsm7_unpacked(text) == codecs.encode(text, "gsm03.38")
    assert decode_gsm7_unpacked(encode_gsm7_unpacked(text)) == text


@given(st.text(alphabet=st.characters(codec="latin-1")))
def test_gsm_membership_agrees_with_gsm0338(text: str) -> None:
    try:
        oracle: bytes | None = codecs.encode(text, "gsm03.38")
    except UnicodeEncodeError:
        oracle = None
    if "\x1b" in text:  # the oracle maps ESC to itself; for us it is not a character
        assert choose_encoding(text) is Encoding.UCS2
        return
    ours = encode_gsm7_unpacked(text) if choose_encoding(text) is Encoding.GSM7 else None
    assert ours == oracle


# --- septets and encoding choice --------------------------------------------------------------------


def test_septets() -> None:
    assert gsm7_septets("") == 0
    assert gsm7_septets("abc") == 3
    assert gsm7_septets("€") == 2
    assert gsm7_septets("a[b]c") == 7
    with pytest.raises(ValueError):
        gsm7_septets("á")


def test_choose_encoding() -> None:
    assert choose_encoding("") is Encoding.GSM7
    assert choose_encoding("é" * 70) is Encoding.GSM7
    assert choose_encoding("á" * 70) is Encoding.UCS2
    assert choose_encoding("{€}") is Encoding.GSM7
    assert Encoding.GSM7.value == "gsm7"
    assert Encoding.UCS2.value == "ucs2"


# --- segmentation examples -------------------------------------------------------------------------


def test_empty_body_is_one_segment() -> None:
    seg = segment("")
    assert seg == Segmentation(Encoding.GSM7, ("",))
    assert seg.count == 1
    assert count_segments("") == 1


@pytest.mark.parametrize(
    ("text", "encoding", "lengths"),
    [
        ("a" * 160, Encoding.GSM7, [160]),
        ("a" * 161, Encoding.GSM7, [153, 8]),
        ("a" * 306, Encoding.GSM7, [153, 153]),
        ("a" * 307, Encoding.GSM7, [153, 153, 1]),
        ("é" * 70, Encoding.GSM7, [70]),
        ("á" * 70, Encoding.UCS2, [70]),
        ("á" * 71, Encoding.UCS2, [67, 4]),
        ("á" * 134, Encoding.UCS2, [67, 67]),
        ("á" * 135, Encoding.UCS2, [67, 67, 1]),
    ],
)
def test_segment_lengths(text: str, encoding: Encoding, lengths: list[int]) -> None:
    seg = segment(text)
    assert seg.encoding is encoding
    assert [len(p) for p in seg.parts] == lengths
    assert seg.count == count_segments(text) == len(lengths)


def test_euro_81() -> None:
    seg = segment("€" * 81)
    assert seg.encoding is Encoding.GSM7
    assert [gsm7_septets(p) for p in seg.parts] == [152, 10]
    assert [len(p) for p in seg.parts] == [76, 5]
    assert count_segments("€" * 81) == 2


def test_euro_80_fits_one_part() -> None:
    assert segment("€" * 80).count == 1
    assert count_segments("€" * 80) == 1


def test_gsm_single_part_boundary_with_extension() -> None:
    assert count_segments("a" * 158 + "€") == 1  # 160 septets
    assert count_segments("a" * 159 + "€") == 2  # 161 septets


def test_escape_pair_not_split_at_153() -> None:
    # 152 septets of 'a', then '€' would occupy septets 153-154: it must move to the next part.
    text = "a" * 152 + "€" + "a" * 10
    seg = segment(text)
    assert [gsm7_septets(p) for p in seg.parts] == [152, 12]
    assert seg.parts[1].startswith("€")
    # 153 'a' then '€': the first part is full exactly.
    seg2 = segment("a" * 153 + "€" + "b" * 10)
    assert [gsm7_septets(p) for p in seg2.parts] == [153, 12]


def test_escape_boundary_adds_a_part_over_arithmetic() -> None:
    # 306 septets would fit two parts by arithmetic, but an escape pair straddling 153 forces a third.
    text = "a" * 152 + "€" * 77
    assert gsm7_septets(text) == 306
    seg = segment(text)
    assert seg.count == 3
    assert count_segments(text) == 3


def test_emoji_boundaries() -> None:
    assert segment("😀" * 35).count == 1
    assert count_segments("😀" * 35) == 1
    seg = segment("😀" * 36)
    assert seg.encoding is Encoding.UCS2
    assert seg.count == 2
    assert [units(p) for p in seg.parts] == [66, 6]
    assert seg.parts[0] == "😀" * 33
    assert count_segments("😀" * 36) == 2


def test_emoji_after_odd_prefix() -> None:
    # 66 units, then an emoji that would occupy units 67-68: it moves whole to the second part.
    text = "á" * 66 + "😀" + "b" * 3
    seg = segment(text)
    assert [units(p) for p in seg.parts] == [66, 5]
    assert count_segments(text) == 2


# --- codecs -------------------------------------------------------------------------------------------


def test_gsm7_encode_examples() -> None:
    assert encode_gsm7_unpacked("@") == b"\x00"
    assert encode_gsm7_unpacked("$") == b"\x02"
    assert encode_gsm7_unpacked("§") == b"\x5f"
    assert encode_gsm7_unpacked("¡") == b"\x40"
    assert encode_gsm7_unpacked("€") == b"\x1b\x65"
    assert encode_gsm7_unpacked("\f") == b"\x1b\x0a"
    assert encode_gsm7_unpacked("Hi") == b"Hi"
    with pytest.raises(ValueError):
        encode_gsm7_unpacked("`")


def test_gsm7_decode_lenient_cases() -> None:
    assert decode_gsm7_unpacked(b"\x1b\x41") == "A"  # unknown extension -> basic character
    assert decode_gsm7_unpacked(b"a\x1b") == "a "  # trailing escape -> space
    assert decode_gsm7_unpacked(b"\x1b\x1bb") == " b"
    with pytest.raises(ValueError):
        decode_gsm7_unpacked(b"\x80")
    with pytest.raises(ValueError):
        decode_gsm7_unpacked(b"\x1b\xff")


def test_ucs2_codec() -> None:
    assert encode_ucs2("á") == b"\x00\xe1"
    assert encode_ucs2("😀") == b"\xd8\x3d\xde\x00"
    assert decode_ucs2(b"\xd8\x3d\xde\x00") == "😀"


# --- properties ---------------------------------------------------------------------------------------

gsm_text = st.text(alphabet=st.sampled_from(GSM_ALL), max_size=700)
gsm_heavy_ext = st.text(alphabet=st.sampled_from(["a", *EXTENSION]), max_size=500)
any_text = st.text(max_size=400)
astral_text = st.text(alphabet=st.sampled_from(["a", "á", "😀", "𝄞", "€"]), max_size=300)
all_texts = st.one_of(gsm_text, gsm_heavy_ext, any_text, astral_text)


def _check_segmentation(text: str) -> None:
    seg = segment(text)
    assert "".join(seg.parts) == text
    assert seg.count == count_segments(text)
    assert seg.count >= 1
    assert seg.encoding is choose_encoding(text)
    if seg.encoding is Encoding.GSM7:
        sizes = [gsm7_septets(p) for p in seg.parts]
        assert all(s <= (160 if seg.count == 1 else 153) for s in sizes)
        # Escape pairs are never split: each part encodes on its own, with no dangling ESC.
        assert b"".join(encode_gsm7_unpacked(p) for p in seg.parts) == encode_gsm7_unpacked(text)
        for p in seg.parts:
            assert not encode_gsm7_unpacked(p).endswith(b"\x1b") or p.endswith("\x1b")
    else:
        sizes = [units(p) for p in seg.parts]
        assert all(s <= (70 if seg.count == 1 else 67) for s in sizes)
        for p in seg.parts:
            p.encode("utf-16-be")  # raises on a lone surrogate, i.e. a split pair
    if seg.count > 1:
        assert all(p for p in seg.parts)


@given(all_texts)
def test_segmentation_properties(text: str) -> None:
    _check_segmentation(text)


@given(gsm_text)
def test_gsm7_roundtrip(text: str) -> None:
    assert decode_gsm7_unpacked(encode_gsm7_unpacked(text)) == text
    assert len(encode_gsm7_unpacked(text)) == gsm7_septets(text)


@given(any_text)
def test_ucs2_roundtrip(text: str) -> None:
    data = encode_ucs2(text)
    assert len(data) == 2 * units(text)
    assert decode_ucs2(data) == text


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)))
def test_gsm7_decode_never_fails_on_septets(data: bytes) -> None:
    text = decode_gsm7_unpacked(data)
    assert choose_encoding(text) is Encoding.GSM7
