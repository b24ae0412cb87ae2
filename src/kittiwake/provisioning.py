"""Creating accounts and provisioning numbers: the rules shared by the REST API and the CLI.

A long code or toll-free number is E.164 and gets a ``PN`` SID; a short code is 3-8 digits and gets
an ``SC`` SID. A number belongs to exactly one account (the table's unique key enforces it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlsplit

from kittiwake.clock import Clock
from kittiwake.domain import (
    AccountStatus,
    NumberKind,
    SidPrefix,
    new_auth_token,
    new_sid,
    rfc2822,
)
from kittiwake.errors import TwilioError, invalid_parameter
from kittiwake.models import Account, PhoneNumber
from kittiwake.phone import AddressKind, classify, is_toll_free, is_valid_e164
from kittiwake.store.base import DuplicateError, Store

HTTP_METHODS = frozenset({"GET", "POST"})


async def create_account(
    store: Store, clock: Clock, friendly_name: str | None, owner: Account | None = None
) -> Account:
    """A new active account; with ``owner``, a subaccount of it (Twilio allows one level only)."""
    sid = new_sid(SidPrefix.ACCOUNT)
    now = clock.now_micros()
    owner_sid = sid if owner is None else owner.owner_account_sid
    default_name = f"SubAccount Created at {rfc2822(now)}" if owner else "Kittiwake account"
    name = friendly_name or default_name
    account = Account(sid, name, new_auth_token(), AccountStatus.ACTIVE, owner_sid, now, now)
    await store.add_account(account)
    return account


def validate_url(name: str, value: str) -> str | None:
    """An http(s) URL with a host, or "" to clear the setting (Twilio error 21502 otherwise)."""
    if value == "":
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname or len(value) > 4000:
        raise TwilioError(21502, 400, f"{name} {value!r} is not a valid URL.")
    return value


def validate_method(name: str, value: str) -> str:
    method = value.upper()
    if method not in HTTP_METHODS:
        raise invalid_parameter(f"{name} must be GET or POST, got {value!r}")
    return method


class Params(Protocol):
    """Anything with ``get(name) -> value or None``: a form, a query, a dict."""

    def get(self, key: str, /) -> str | None: ...


def settings_from(params: Params, mapping: Mapping[str, str]) -> dict[str, object]:
    """Column values from request parameters: ``mapping`` is parameter name -> column name.

    Parameters ending in ``Url`` or ``Callback`` are URLs, ``Method`` ones GET/POST; others are text.
    """
    values: dict[str, object] = {}
    for param, column in mapping.items():
        raw = params.get(param)
        if raw is None:
            continue
        if param.endswith(("Url", "Callback")):
            values[column] = validate_url(param, raw)
        elif param.endswith("Method"):
            values[column] = validate_method(param, raw)
        else:
            values[column] = raw
    return values


def number_kind(number: str) -> NumberKind:
    """What kind of sender ``number`` is, or a 21421 error if it is neither E.164 nor a short code."""
    kind = classify(number)
    if kind is AddressKind.SHORT_CODE:
        return NumberKind.SHORT_CODE
    if kind is AddressKind.E164 and is_valid_e164(number):
        return NumberKind.TOLL_FREE if is_toll_free(number) else NumberKind.LONG_CODE
    raise TwilioError.of(21421, value=number)


async def provision_number(
    store: Store,
    clock: Clock,
    account_sid: str,
    number: str,
    settings: Mapping[str, object] | None = None,
    *,
    kind: NumberKind | None = None,
) -> PhoneNumber:
    """Give ``number`` to the account (21422 when another account, or this one, already has it)."""
    number = number.strip()
    found_kind = number_kind(number)
    if kind is not None and (kind is NumberKind.SHORT_CODE) != (found_kind is NumberKind.SHORT_CODE):
        raise TwilioError.of(21421, value=number)
    values = dict(settings or {})
    now = clock.now_micros()
    prefix = SidPrefix.SHORT_CODE if found_kind is NumberKind.SHORT_CODE else SidPrefix.PHONE_NUMBER
    record = PhoneNumber(
        sid=new_sid(prefix),
        account_sid=account_sid,
        phone_number=number,
        kind=found_kind,
        friendly_name=str(values.get("friendly_name") or _pretty(number)),
        sms_url=_opt(values.get("sms_url")),
        sms_method=str(values.get("sms_method") or "POST"),
        sms_fallback_url=_opt(values.get("sms_fallback_url")),
        sms_fallback_method=str(values.get("sms_fallback_method") or "POST"),
        sms_application_sid=_opt(values.get("sms_application_sid")),
        status_callback=_opt(values.get("status_callback")),
        status_callback_method=str(values.get("status_callback_method") or "POST"),
        date_created=now,
        date_updated=now,
    )
    try:
        await store.add_number(record)
    except DuplicateError:
        raise TwilioError.of(21422, value=number) from None
    return record


def _opt(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _pretty(number: str) -> str:
    """Twilio's friendly name for a NANP number, ``(415) 555-1212``; other numbers as they are."""
    if number.startswith("+1") and len(number) == 12:
        return f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    return number


def number_in_area(area_code: str, taken: set[str] | None = None) -> str | None:
    """A valid, untaken US number in ``area_code`` (the simulated carrier has every number)."""
    if len(area_code) != 3 or not area_code.isdigit():
        return None
    rng = random.SystemRandom()
    for _ in range(50):
        candidate = f"+1{area_code}{rng.randrange(2, 10)}{rng.randrange(0, 1_000_000):06d}"
        if is_valid_e164(candidate) and (taken is None or candidate not in taken):
            return candidate
    return None
