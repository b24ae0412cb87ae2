"""Column lists and row <-> record mapping shared by every SQL engine.

The SQL dialects differ only in placeholders and DDL; the tables, columns and their meaning are one.
Updatable columns are listed per table so an update can never touch a column the API does not own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kittiwake.domain import AccountStatus, Direction, MessageStatus, NumberKind
from kittiwake.models import Account, Application, Callback, Message, PhoneNumber
from kittiwake.store.base import NewCallback, SimRecord

ACCOUNT_COLUMNS = (
    "sid", "friendly_name", "auth_token", "status", "owner_account_sid", "date_created", "date_updated",
)  # fmt: skip
ACCOUNT_UPDATABLE = frozenset({"friendly_name", "status"})

NUMBER_COLUMNS = (
    "sid", "account_sid", "phone_number", "kind", "friendly_name", "sms_url", "sms_method",
    "sms_fallback_url", "sms_fallback_method", "sms_application_sid", "status_callback",
    "status_callback_method", "date_created", "date_updated",
)  # fmt: skip
NUMBER_UPDATABLE = frozenset(NUMBER_COLUMNS[4:12])

APPLICATION_COLUMNS = (
    "sid", "account_sid", "friendly_name", "sms_url", "sms_method", "sms_fallback_url",
    "sms_fallback_method", "sms_status_callback", "message_status_callback", "status_callback",
    "status_callback_method", "voice_url", "voice_method", "date_created", "date_updated",
)  # fmt: skip
APPLICATION_UPDATABLE = frozenset(APPLICATION_COLUMNS[2:13])

MESSAGE_COLUMNS = (
    "sid", "account_sid", "api", "from_number", "to_number", "body", "status", "direction",
    "num_segments", "num_media", "error_code", "error_message", "price", "price_unit",
    "status_callback", "application_sid", "messaging_service_sid", "validity_period",
    "date_created", "date_updated", "date_sent", "callback_url", "expires_at", "submitted_at",
    "carrier_message_id", "seq",
)  # fmt: skip
MESSAGE_UPDATABLE = frozenset(
    {"body", "status", "error_code", "error_message", "date_sent", "price", "submitted_at", "carrier_message_id"}
)


def account_row(a: Account) -> tuple[Any, ...]:
    return (a.sid, a.friendly_name, a.auth_token, a.status.value, a.owner_account_sid, a.date_created,
            a.date_updated)  # fmt: skip


def account_from(row: Sequence[Any]) -> Account:
    return Account(row[0], row[1], row[2], AccountStatus(row[3]), row[4], row[5], row[6])


def number_row(n: PhoneNumber) -> tuple[Any, ...]:
    return (
        n.sid, n.account_sid, n.phone_number, n.kind.value, n.friendly_name, n.sms_url, n.sms_method,
        n.sms_fallback_url, n.sms_fallback_method, n.sms_application_sid, n.status_callback,
        n.status_callback_method, n.date_created, n.date_updated,
    )  # fmt: skip


def number_from(row: Sequence[Any]) -> PhoneNumber:
    return PhoneNumber(row[0], row[1], row[2], NumberKind(row[3]), *row[4:14])


def application_row(a: Application) -> tuple[Any, ...]:
    return (
        a.sid, a.account_sid, a.friendly_name, a.sms_url, a.sms_method, a.sms_fallback_url,
        a.sms_fallback_method, a.sms_status_callback, a.message_status_callback, a.status_callback,
        a.status_callback_method, a.voice_url, a.voice_method, a.date_created, a.date_updated,
    )  # fmt: skip


def application_from(row: Sequence[Any]) -> Application:
    return Application(*row[:15])


def message_row(m: Message) -> tuple[Any, ...]:
    """Every column but ``seq``, which the database assigns."""
    return (
        m.sid, m.account_sid, m.api, m.from_, m.to, m.body, m.status.value, m.direction.value,
        m.num_segments, m.num_media, m.error_code, m.error_message, m.price, m.price_unit,
        m.status_callback, m.application_sid, m.messaging_service_sid, m.validity_period,
        m.date_created, m.date_updated, m.date_sent, m.callback_url, m.expires_at, m.submitted_at,
        m.carrier_message_id,
    )  # fmt: skip


def message_from(row: Sequence[Any]) -> Message:
    return Message(
        sid=row[0], account_sid=row[1], api=row[2], from_=row[3], to=row[4], body=row[5],
        status=MessageStatus(row[6]), direction=Direction(row[7]), num_segments=row[8], num_media=row[9],
        error_code=row[10], error_message=row[11], price=row[12], price_unit=row[13],
        status_callback=row[14], application_sid=row[15], messaging_service_sid=row[16],
        validity_period=row[17], date_created=row[18], date_updated=row[19], date_sent=row[20],
        callback_url=row[21], expires_at=row[22], submitted_at=row[23], carrier_message_id=row[24], seq=row[25],
    )  # fmt: skip


CALLBACK_INSERT_COLUMNS = (
    "account_sid", "message_sid", "url", "method", "params", "idempotency_key", "created_at", "next_attempt_at",
)  # fmt: skip
# The columns a worker reads back, in Callback's field order.
CALLBACK_COLUMNS = "id, account_sid, url, method, params, idempotency_key, attempts, created_at, next_attempt_at"
SIM_COLUMNS = (
    "id, account_sid, message_sid, carrier_message_id, from_number, to_number, body, segments, submitted_at, "
    "outcome, error_code, receipt_due_at"
)


def callback_row(callback: NewCallback, now: int) -> tuple[Any, ...]:
    """The values of CALLBACK_INSERT_COLUMNS for a new outbox row, due at once."""
    return (callback.account_sid, callback.message_sid, callback.url, callback.method, json.dumps(callback.params),
            callback.idempotency_key, now, now)  # fmt: skip


def callback_from(row: Sequence[Any]) -> Callback:
    params = tuple((str(k), str(v)) for k, v in json.loads(row[4]))
    return Callback(row[0], row[1], row[2], row[3], params, row[5], row[6], row[7], row[8])


def sim_from(row: Sequence[Any]) -> SimRecord:
    return SimRecord(*row[:12])
