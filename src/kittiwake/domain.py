"""Kittiwake's domain vocabulary: SIDs, message statuses and directions, timestamps.

Pure: no I/O. Everything the API renders and the store persists is named here once.
"""

from __future__ import annotations

import enum
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

API_VERSION = "2010-04-01"

SID_PATTERN = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")


class SidPrefix(enum.StrEnum):
    """The two-letter SID prefixes Twilio uses (twilio-api.md §1)."""

    ACCOUNT = "AC"
    SMS_MESSAGE = "SM"
    PHONE_NUMBER = "PN"
    SHORT_CODE = "SC"
    APPLICATION = "AP"
    MESSAGING_SERVICE = "MG"


def new_sid(prefix: SidPrefix) -> str:
    """A fresh SID: two letters and 32 lowercase hex digits (128 random bits)."""
    return prefix.value + secrets.token_hex(16)


def new_auth_token() -> str:
    return secrets.token_hex(16)


def is_sid(value: str, prefix: SidPrefix) -> bool:
    """True when ``value`` is a well-formed SID of that kind (case-insensitive hex, as Twilio's patterns)."""
    return len(value) == 34 and value[:2] == prefix.value and _is_hex(value[2:])


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return text.isascii() and text.isalnum()


class MessageStatus(enum.StrEnum):
    """Message statuses of the 2010-04-01 Messages resource (OAI enum ``message_enum_status``)."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    RECEIVING = "receiving"
    RECEIVED = "received"
    CANCELED = "canceled"


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND_API = "outbound-api"
    OUTBOUND_CALL = "outbound-call"
    OUTBOUND_REPLY = "outbound-reply"


class NumberKind(enum.StrEnum):
    """What sort of sender a provisioned number is; pacing rates depend on it."""

    LONG_CODE = "long"
    SHORT_CODE = "short"
    TOLL_FREE = "tollfree"


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


# Time is stored as integer microseconds since the Unix epoch (UTC): portable between SQLite and
# PostgreSQL, totally ordered, and exact enough for pacing measurements.
def to_micros(moment: datetime) -> int:
    return (
        int(moment.timestamp() * 1_000_000)
        if moment.tzinfo
        else int(moment.replace(tzinfo=UTC).timestamp() * 1_000_000)
    )


def from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


def rfc2822(micros: int | None) -> str | None:
    """Twilio's date format, e.g. ``Wed, 18 Aug 2010 20:01:40 +0000`` (never ``GMT``: ecosystem.md)."""
    if micros is None:
        return None
    return _rfc2822_second(micros // 1_000_000)


@lru_cache(maxsize=4096)
def _rfc2822_second(seconds: int) -> str:
    # Every response renders two or three dates, mostly of the same few seconds: format each second once.
    return format_datetime(datetime.fromtimestamp(seconds, tz=UTC))
