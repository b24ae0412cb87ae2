"""Address classification and normalisation for the 'To' and 'From' parameters.

This module owns the answer to "what kind of address is this string?" (E.164 long code, short code,
alphanumeric sender ID, nationally formatted number, or garbage) and Twilio's rule for turning a
'To' value into E.164 using the country of the 'From' number.

It is pure: no I/O, only the ``phonenumbers`` metadata (pinned to 9.0.43 because the metadata changes
monthly). Classification happens *before* anything is handed to ``phonenumbers``, because that library
is deliberately lenient: ``parse("12345", "US")`` gives +112345, ``"SHOP24"`` becomes +124 (vanity
letters are converted to digits), ``"+1415555121A"`` silently loses the letter and ``"whatsapp:+1..."``
parses. None of those may ever come out of this module as an E.164 number.
"""

from __future__ import annotations

import enum
import re
from functools import lru_cache

import phonenumbers

__all__ = [
    "AddressKind",
    "classify",
    "country_code_of",
    "is_toll_free",
    "is_valid_e164",
    "normalize_destination",
    "region_of",
]


class AddressKind(enum.Enum):
    """What a raw address string looks like, decided syntactically (no metadata lookup)."""

    E164 = "e164"
    SHORT_CODE = "short_code"
    ALPHANUMERIC = "alphanumeric"
    NATIONAL = "national"
    INVALID = "invalid"


# ITU-T E.164: a '+', a country code that never starts with 0, at most 15 digits in all.
# [0-9] rather than \d: \d would also accept non-ASCII digits such as Arabic-Indic ones.
_E164_RE = re.compile(r"\+[1-9][0-9]{1,14}")
# Short codes are 3 to 8 digits depending on the country (5-6 in the US, 5 in the UK, 3-8 elsewhere).
_SHORT_CODE_RE = re.compile(r"[0-9]{3,8}")
# Alphanumeric sender IDs: at most 11 characters (the TP-Originating-Address limit for alphanumeric
# addresses, 3GPP TS 23.040 9.1.2.5: 11 characters in 10 octets of packed GSM-7) and at least one letter.
_ALPHANUMERIC_RE = re.compile(r"[A-Za-z0-9 ]{1,11}")
_HAS_LETTER_RE = re.compile(r"[A-Za-z]")
# A locally formatted number: digits and the usual separators only ("(415) 555-1212", "07400 123456").
_NATIONAL_RE = re.compile(r"[0-9 .()\-]+")
_NATIONAL_MIN_DIGITS = 9
_NATIONAL_MAX_DIGITS = 17

# Twilio's "magic" test numbers (+1 500 555 xxxx, e.g. +15005550006 as a valid From) are used by code
# written against Twilio test credentials. Area code 500 is a NANP personal-communications code, not a
# geographic one, and libphonenumber's metadata has not always called these numbers valid; accepting
# the range explicitly keeps those test suites working whatever the metadata says this month.
_TWILIO_TEST_RE = re.compile(r"\+1500555[0-9]{4}")
_TWILIO_TEST_REGION = "US"

# region_code_for_number returns these for non-geographic numbers (+800 ...) and unknown ones:
# neither is an ISO 3166 code, so they are reported as "unknown".
_NON_ISO_REGIONS = frozenset({"001", "ZZ"})


def classify(raw: str) -> AddressKind:
    """Classify an address string syntactically, after stripping surrounding whitespace.

    The checks run in order: strict E.164, short code, alphanumeric sender ID, national format.
    A letter inside a '+' number, a ``whatsapp:`` prefix or any other character makes it INVALID.
    """
    s = raw.strip()
    if _E164_RE.fullmatch(s):
        return AddressKind.E164
    if _SHORT_CODE_RE.fullmatch(s):
        return AddressKind.SHORT_CODE
    if _ALPHANUMERIC_RE.fullmatch(s) and _HAS_LETTER_RE.search(s):
        return AddressKind.ALPHANUMERIC
    if _NATIONAL_RE.fullmatch(s):
        digits = sum(c.isdigit() for c in s)
        if _NATIONAL_MIN_DIGITS <= digits <= _NATIONAL_MAX_DIGITS:
            return AddressKind.NATIONAL
    return AddressKind.INVALID


@lru_cache(maxsize=4096)
def _parse_e164(e164: str) -> phonenumbers.PhoneNumber | None:
    """Parse a string already known to match the strict E.164 pattern (cached; do not mutate)."""
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None


def _is_twilio_test_number(e164: str) -> bool:
    return _TWILIO_TEST_RE.fullmatch(e164) is not None


def is_valid_e164(number: str) -> bool:
    """True if ``number`` is strict E.164 and a valid number per the phonenumbers metadata.

    Twilio's +1500555xxxx test numbers are always accepted (see ``_TWILIO_TEST_RE``).
    """
    return _is_valid_e164(number)


# The public functions stay plain (an lru_cache wrapper would erase their signatures for mypy);
# the caches sit on private helpers keyed by the exact string.
@lru_cache(maxsize=4096)
def _is_valid_e164(number: str) -> bool:
    if not _E164_RE.fullmatch(number):
        return False
    if _is_twilio_test_number(number):
        return True
    parsed = _parse_e164(number)
    return parsed is not None and bool(phonenumbers.is_valid_number(parsed))


def region_of(e164: str) -> str | None:
    """ISO 3166-1 alpha-2 region of an E.164 number ("US", "GB", "CA" for +1613...), None if unknown."""
    return _region_of(e164)


@lru_cache(maxsize=4096)
def _region_of(e164: str) -> str | None:
    if not _E164_RE.fullmatch(e164):
        return None
    if _is_twilio_test_number(e164):
        return _TWILIO_TEST_REGION
    parsed = _parse_e164(e164)
    if parsed is None:
        return None
    region: str | None = phonenumbers.region_code_for_number(parsed)
    if not region or region in _NON_ISO_REGIONS:
        return None
    return region


def country_code_of(e164: str) -> str:
    """ISO region for the webhook FromCountry/ToCountry parameters; "" when unknown."""
    return region_of(e164) or ""


def is_toll_free(e164: str) -> bool:
    """True if the number is a toll-free number (phonenumbers type TOLL_FREE, e.g. +1 800)."""
    if not _E164_RE.fullmatch(e164):
        return False
    parsed = _parse_e164(e164)
    return parsed is not None and phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.TOLL_FREE


def _sender_region(from_number: str, short_code_region: str) -> str | None:
    kind = classify(from_number)
    if kind is AddressKind.E164:
        return region_of(from_number.strip())
    if kind is AddressKind.SHORT_CODE:
        return short_code_region
    return None


def normalize_destination(raw: str, from_number: str, *, short_code_region: str = "US") -> str | None:
    """Apply Twilio's rule for the 'To' parameter and return E.164, or None if it is not a valid number.

    A '+' number is taken as is. Without '+', the number is read as the From number's country would
    dial it: with a US From, "(415) 555-1212", "415-555-1212", "4155551212" and "14155551212" all give
    "+14155551212"; with a GB From, "07400123456" gives "+447400123456". A short-code From counts as
    being in ``short_code_region``. Short codes, alphanumerics and garbage as 'To' give None.
    """
    s = raw.strip()
    kind = classify(s)
    if kind is AddressKind.E164:
        return s if is_valid_e164(s) else None
    if kind is not AddressKind.NATIONAL:
        return None
    region = _sender_region(from_number, short_code_region)
    if region is None:
        return None
    try:
        parsed = phonenumbers.parse(s, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    e164: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164
