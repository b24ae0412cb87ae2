"""Unit and property tests for kittiwake.phone.numbers (classification and 'To' normalisation)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kittiwake.phone.numbers import (
    AddressKind,
    classify,
    country_code_of,
    is_toll_free,
    is_valid_e164,
    normalize_destination,
    region_of,
)

US_FROM = "+14155550100"
GB_FROM = "+447400123000"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("+14155551212", AddressKind.E164),
        ("  +14155551212\n", AddressKind.E164),
        ("+447400123456", AddressKind.E164),
        ("+12", AddressKind.E164),  # syntactically E.164; validity is a separate question
        ("+123456789012345", AddressKind.E164),
        ("+1234567890123456", AddressKind.INVALID),  # 16 digits
        ("+01234567", AddressKind.INVALID),
        ("+1", AddressKind.INVALID),
        ("12345", AddressKind.SHORT_CODE),
        ("123", AddressKind.SHORT_CODE),
        ("12345678", AddressKind.SHORT_CODE),
        ("12", AddressKind.INVALID),
        ("SHOP24", AddressKind.ALPHANUMERIC),
        ("Kittiwake", AddressKind.ALPHANUMERIC),
        ("My Shop", AddressKind.ALPHANUMERIC),
        ("A", AddressKind.ALPHANUMERIC),
        ("ABCDEFGHIJK", AddressKind.ALPHANUMERIC),
        ("ABCDEFGHIJKL", AddressKind.INVALID),  # 12 characters
        ("(415) 555-1212", AddressKind.NATIONAL),
        ("415-555-1212", AddressKind.NATIONAL),
        ("415.555.1212", AddressKind.NATIONAL),
        ("4155551212", AddressKind.NATIONAL),
        ("14155551212", AddressKind.NATIONAL),
        ("07400 123456", AddressKind.NATIONAL),
        ("123456789", AddressKind.NATIONAL),
        ("+1415555121A", AddressKind.INVALID),
        ("whatsapp:+14155551212", AddressKind.INVALID),
        ("1-800-FLOWERS", AddressKind.INVALID),
        ("+1 415 555 1212", AddressKind.INVALID),
        ("+1-415-555-1212", AddressKind.INVALID),
        ("", AddressKind.INVALID),
        ("   ", AddressKind.INVALID),
        ("+١٤١٥٥٥٥١٢١٢", AddressKind.INVALID),  # Arabic-Indic digits are not E.164
        ("١٢٣٤٥", AddressKind.INVALID),
        ("Shop_24", AddressKind.INVALID),
        ("+14155551212\n+1", AddressKind.INVALID),
    ],
)
def test_classify(raw: str, kind: AddressKind) -> None:
    assert classify(raw) is kind


def test_is_valid_e164() -> None:
    assert is_valid_e164("+14155551212")
    assert is_valid_e164("+447400123456")
    assert is_valid_e164("+16135550123")
    assert not is_valid_e164("+19999999999")  # unassigned NANP area code
    assert not is_valid_e164("+112345")
    assert not is_valid_e164("14155551212")
    assert not is_valid_e164(" +14155551212")
    assert not is_valid_e164("+1415555121A")
    assert not is_valid_e164("whatsapp:+14155551212")
    assert not is_valid_e164("")


@pytest.mark.parametrize("n", ["+15005550006", "+15005550001", "+15005550000", "+15005559999"])
def test_twilio_magic_numbers(n: str) -> None:
    assert is_valid_e164(n)
    assert region_of(n) == "US"
    assert country_code_of(n) == "US"
    assert normalize_destination(n, US_FROM) == n


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+14155551212", "US"),
        ("+16135550123", "CA"),
        ("+447400123456", "GB"),
        ("+33612345678", "FR"),
        ("+19999999999", None),
        ("+80012345678", None),  # international freephone: region "001" is not ISO 3166
        ("not a number", None),
        ("14155551212", None),
    ],
)
def test_region_of(number: str, region: str | None) -> None:
    assert region_of(number) == region
    assert country_code_of(number) == (region or "")


def test_is_toll_free() -> None:
    assert is_toll_free("+18005551212")
    assert is_toll_free("+18885551212")
    assert not is_toll_free("+14155551212")
    assert not is_toll_free("18005551212")
    assert not is_toll_free("garbage")


@pytest.mark.parametrize("raw", ["(415) 555-1212", "415-555-1212", "4155551212", "14155551212", "415.555.1212"])
def test_normalize_us_local_formats(raw: str) -> None:
    assert normalize_destination(raw, US_FROM) == "+14155551212"


def test_normalize_with_gb_from() -> None:
    assert normalize_destination("07400123456", GB_FROM) == "+447400123456"
    assert normalize_destination("07400 123456", GB_FROM) == "+447400123456"
    assert normalize_destination("4155551212", GB_FROM) is None  # not a valid GB number


def test_normalize_region_comes_from_the_from_number_country() -> None:
    # A Canadian From is in NANP too: local 10-digit numbers resolve under +1.
    assert normalize_destination("4155551212", "+16135550123") == "+14155551212"
    assert normalize_destination("07400123456", US_FROM) is None


def test_normalize_e164_taken_as_is() -> None:
    assert normalize_destination("+447400123456", US_FROM) == "+447400123456"
    assert normalize_destination("  +447400123456 ", US_FROM) == "+447400123456"
    assert normalize_destination("+19999999999", US_FROM) is None
    # Works even when the From has no country (alphanumeric sender).
    assert normalize_destination("+14155551212", "Kittiwake") == "+14155551212"


def test_normalize_with_short_code_from() -> None:
    assert normalize_destination("4155551212", "12345") == "+14155551212"
    assert normalize_destination("07400123456", "12345", short_code_region="GB") == "+447400123456"
    assert normalize_destination("4155551212", "12345", short_code_region="GB") is None


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12345",
        "SHOP24",
        "+1415555121A",
        "whatsapp:+14155551212",
        "1-800-FLOWERS",
        "garbage!",
        "123456789",
    ],
)
def test_normalize_rejects(raw: str) -> None:
    assert normalize_destination(raw, US_FROM) is None


def test_normalize_national_needs_a_from_country() -> None:
    assert normalize_destination("4155551212", "Kittiwake") is None
    assert normalize_destination("4155551212", "") is None
    assert normalize_destination("4155551212", "+19999999999") is None


@given(st.text(max_size=30))
def test_e164_only_from_strict_input(raw: str) -> None:
    out = normalize_destination(raw, US_FROM)
    if out is not None:
        assert classify(out) is AddressKind.E164
        assert is_valid_e164(out)
        assert classify(raw) in {AddressKind.E164, AddressKind.NATIONAL}
    if classify(raw) not in {AddressKind.E164, AddressKind.NATIONAL}:
        assert out is None


@given(st.from_regex(r"\A[A-Za-z][A-Za-z0-9]{0,10}\Z"))
def test_letters_never_become_numbers(raw: str) -> None:
    assert classify(raw) is AddressKind.ALPHANUMERIC
    assert normalize_destination(raw, US_FROM) is None


@given(st.integers(min_value=2_000_000_000, max_value=9_999_999_999))
def test_us_national_and_e164_agree(n: int) -> None:
    national = str(n)
    e164 = "+1" + national
    out = normalize_destination(national, US_FROM)
    if is_valid_e164(e164):
        assert out == e164
    else:
        assert out is None
