"""The records Kittiwake stores: accounts, numbers, applications and messages.

Plain frozen dataclasses with no behaviour beyond derived values; the store builds them from rows and
the API renders them. Times are integer microseconds since the epoch (see :mod:`kittiwake.domain`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kittiwake.domain import AccountStatus, Direction, MessageStatus, NumberKind


@dataclass(frozen=True, slots=True)
class Account:
    sid: str
    friendly_name: str
    auth_token: str
    status: AccountStatus
    owner_account_sid: str  # itself for a top-level account
    date_created: int
    date_updated: int

    @property
    def is_subaccount(self) -> bool:
        return self.owner_account_sid != self.sid


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    """A provisioned sender: a long code (PN…, E.164), toll-free number (PN…) or short code (SC…, digits)."""

    sid: str
    account_sid: str
    phone_number: str
    kind: NumberKind
    friendly_name: str
    sms_url: str | None
    sms_method: str
    sms_fallback_url: str | None
    sms_fallback_method: str
    sms_application_sid: str | None
    status_callback: str | None
    status_callback_method: str
    date_created: int
    date_updated: int


@dataclass(frozen=True, slots=True)
class Application:
    sid: str
    account_sid: str
    friendly_name: str
    sms_url: str | None
    sms_method: str
    sms_fallback_url: str | None
    sms_fallback_method: str
    sms_status_callback: str | None
    message_status_callback: str | None
    status_callback: str | None
    status_callback_method: str
    voice_url: str | None
    voice_method: str
    date_created: int
    date_updated: int


@dataclass(frozen=True, slots=True)
class Message:
    sid: str
    account_sid: str
    from_: str
    to: str
    body: str
    status: MessageStatus
    direction: Direction
    num_segments: int
    date_created: int
    date_updated: int
    # Which resource created it: "legacy" (/SMS/Messages) and "modern" (/Messages) differ in which
    # status callbacks fire and whose callback URL wins (twilio-api.md §2.2, §3.2).
    api: str = "modern"
    num_media: int = 0
    date_sent: int | None = None
    error_code: int | None = None
    error_message: str | None = None
    price: str | None = None
    price_unit: str | None = "USD"
    status_callback: str | None = None
    application_sid: str | None = None
    messaging_service_sid: str | None = None
    validity_period: int = 36000
    # Where status callbacks go, resolved at create (twilio-api.md §2.2 legacy, §3.2 modern rules).
    callback_url: str | None = None
    # When a still-queued message stops being worth sending: date_created + validity_period.
    expires_at: int | None = None
    submitted_at: int | None = None
    carrier_message_id: str | None = None
    seq: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Callback:
    """One webhook request waiting in the durable outbox (a status callback, for now).

    ``idempotency_key`` stays the same across retries, so the receiver can drop duplicates.
    """

    id: int
    account_sid: str
    url: str
    method: str
    params: tuple[tuple[str, str], ...]
    idempotency_key: str
    attempts: int
    created_at: int
    next_attempt_at: int
