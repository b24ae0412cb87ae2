"""Pure phone-number and SMS-encoding core: address classification, E.164 normalisation and
GSM-7/UCS-2 segmentation. No I/O; nothing here knows about the API, the store or SMPP sessions."""

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
from kittiwake.phone.numbers import (
    AddressKind,
    classify,
    country_code_of,
    is_toll_free,
    is_valid_e164,
    normalize_destination,
    region_of,
)

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "AddressKind",
    "Encoding",
    "Segmentation",
    "choose_encoding",
    "classify",
    "count_segments",
    "country_code_of",
    "decode_gsm7_unpacked",
    "decode_ucs2",
    "encode_gsm7_unpacked",
    "encode_ucs2",
    "gsm7_septets",
    "is_toll_free",
    "is_valid_e164",
    "normalize_destination",
    "region_of",
    "segment",
]
