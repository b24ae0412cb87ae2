"""The Store interface: what the API, the dispatcher and the CLI may ask of persistence.

One implementation per engine (SQLite now, PostgreSQL for scale-out) shares this interface and one
contract test suite. Every method is a coroutine; an implementation answers a write only after its
transaction has committed, so an acknowledged create is durable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from kittiwake.models import Account, Application, Callback, Message, PhoneNumber

T = TypeVar("T")


class DuplicateError(Exception):
    """A unique key (a phone number, a SID) is already taken."""


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page of a list: ``size`` rows, starting ``offset`` rows in, or strictly after ``after``.

    ``after`` is the keyset cursor carried by a PageToken (the last row's ordering key on the previous
    page); when it is set, ``offset`` is ignored by the query and kept only to number the page.
    """

    size: int
    offset: int = 0
    after: int | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool
    # Ordering key of the last item: the keyset cursor for the next page.
    last_key: int | None = None
    # Number of rows matching the filters, when asked for (legacy lists report it).
    total: int | None = None


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """List filters of the Messages resources; times in epoch microseconds, bounds half-open."""

    to: str | None = None
    from_: str | None = None
    sent_from: int | None = None  # date_sent >= sent_from
    sent_until: int | None = None  # date_sent < sent_until


@dataclass(frozen=True, slots=True)
class NumberFilter:
    short_codes: bool = False  # the ShortCodes resource lists SC…, IncomingPhoneNumbers the rest
    friendly_name: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True, slots=True)
class AccountFilter:
    friendly_name: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Changes:
    """Column updates for one row; only columns the store allows for that table are applied."""

    values: Mapping[str, object] = field(default_factory=dict)


class Store(Protocol):
    """Everything persistence offers; see :class:`DeliveryStore` for the delivery engine's part."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    # Accounts
    async def add_account(self, account: Account) -> None: ...
    async def get_account(self, sid: str) -> Account | None: ...
    async def list_accounts(self, owner_sid: str, filters: AccountFilter, page: PageRequest) -> Page[Account]: ...
    async def all_accounts(self) -> list[Account]: ...
    async def update_account(self, sid: str, changes: Changes, now: int) -> Account | None: ...

    # Phone numbers and short codes
    async def add_number(self, number: PhoneNumber) -> None: ...
    async def get_number(self, account_sid: str, sid: str) -> PhoneNumber | None: ...
    async def find_number(self, phone_number: str) -> PhoneNumber | None: ...
    async def list_numbers(self, account_sid: str, filters: NumberFilter, page: PageRequest) -> Page[PhoneNumber]: ...
    async def update_number(self, account_sid: str, sid: str, changes: Changes, now: int) -> PhoneNumber | None: ...
    async def delete_number(self, account_sid: str, sid: str) -> bool: ...

    # Applications
    async def add_application(self, application: Application) -> None: ...
    async def get_application(self, account_sid: str, sid: str) -> Application | None: ...
    async def list_applications(
        self, account_sid: str, friendly_name: str | None, page: PageRequest
    ) -> Page[Application]: ...
    async def update_application(
        self, account_sid: str, sid: str, changes: Changes, now: int
    ) -> Application | None: ...
    async def delete_application(self, account_sid: str, sid: str) -> bool: ...

    # Messages
    async def add_message(self, message: Message) -> Message: ...
    async def get_message(self, account_sid: str, sid: str) -> Message | None: ...
    async def list_messages(
        self, account_sid: str, filters: MessageFilter, page: PageRequest, *, with_total: bool = False
    ) -> Page[Message]: ...
    async def update_message(self, account_sid: str, sid: str, changes: Changes, now: int) -> Message | None: ...
    async def delete_message(self, account_sid: str, sid: str) -> bool: ...


class OptChange(enum.Enum):
    """What an inbound keyword does to the handset's subscription to our number."""

    OUT = "out"
    IN = "in"


class QueueFull(Exception):
    """The sender's queue already holds its maximum backlog (Twilio error 21611)."""


@dataclass(frozen=True, slots=True)
class NewCallback:
    """A webhook to enqueue in the outbox, in the same transaction as the change it reports."""

    account_sid: str
    message_sid: str | None
    url: str
    method: str
    params: tuple[tuple[str, str], ...]
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Transition:
    """A guarded status change of one message.

    Applied only while the message's status is one of ``expected`` (so a late or duplicate event
    changes nothing), together with its callback and, for a message going back to the queue, the
    segments returned to its sender's backlog.
    """

    sid: str
    expected: frozenset[str]
    values: Mapping[str, object]
    callback: NewCallback | None = None
    requeued_segments: int = 0


@dataclass(frozen=True, slots=True)
class PartOutcome:
    """A message's fate after one of its parts' receipts: delivered (all parts), undelivered (any), or
    ``None`` while parts are still pending."""

    message_sid: str
    delivered: bool | None
    error_code: int | None


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One submission the simulated carrier took (what ``GET /sim/messages`` lists)."""

    id: int
    account_sid: str
    message_sid: str
    carrier_message_id: str
    from_: str
    to: str
    body: str
    segments: int
    submitted_at: int
    outcome: str
    error_code: int | None
    receipt_due_at: int | None


class DeliveryStore(Protocol):
    """What the delivery engine, the outbox worker and the simulated carrier need."""

    async def enqueue_message(self, message: Message, queue_cap_segments: int | None) -> Message: ...
    def add_queue_listener(self, listener: Callable[[str], None]) -> None: ...
    async def senders_with_work(self) -> list[tuple[str, int]]: ...
    async def claim_queued(
        self, sender: str, limit: int, now: int, owner: str, interval_micros: int = 0
    ) -> list[Message] | None: ...
    async def acquire_senders(
        self, owner: str, senders: Sequence[str], now: int, lease_until: int
    ) -> dict[str, int]: ...
    async def release_senders(self, owner: str, senders: Sequence[tuple[str, int]]) -> None: ...
    async def acquire_bind(self, carrier: str, slots: int, owner: str, now: int, lease_until: int) -> bool: ...
    async def release_bind(self, carrier: str, owner: str) -> None: ...
    async def apply_transitions(
        self, transitions: Sequence[Transition], now: int, sender_tat: tuple[str, int] | None = None
    ) -> list[bool]: ...
    async def recover_in_flight(self) -> int: ...
    async def expired_queued(self, now: int, limit: int) -> list[Message]: ...
    async def find_by_carrier_id(self, carrier_message_id: str) -> Message | None: ...
    async def get_message_by_sid(self, sid: str) -> Message | None: ...
    async def find_number(self, phone_number: str) -> PhoneNumber | None: ...
    async def get_application(self, account_sid: str, sid: str) -> Application | None: ...

    async def claim_callbacks(self, now: int, limit: int, lease_until: int) -> list[Callback]: ...
    async def callback_delivered(self, callback_id: int, now: int, status: int) -> None: ...
    async def callback_retry(self, callback_id: int, attempts: int, next_attempt_at: int, error: str) -> None: ...
    async def callback_dead(self, callback_id: int, now: int, error: str) -> None: ...
    async def auth_token(self, account_sid: str) -> str | None: ...
    async def pending_callbacks(self) -> int: ...

    async def record_sim_submission(self, record: SimRecord) -> int: ...
    async def pending_sim_receipts(self) -> list[SimRecord]: ...
    async def sim_receipt_sent(self, record_id: int) -> None: ...
    async def list_sim_submissions(
        self, account_sid: str, from_: str | None = None, to: str | None = None, limit: int = 10_000
    ) -> list[SimRecord]: ...
    async def clear_sim_submissions(self, account_sid: str) -> int: ...


class InboundStore(Protocol):
    """What the inbound flow needs: receive, the webhook job queue, opt-outs, and replies."""

    async def receive_message(self, message: Message, opt: OptChange | None, *, webhook: bool) -> Message: ...
    def add_inbound_listener(self, listener: Callable[[], None]) -> None: ...
    async def claim_inbound(self, now: int, limit: int, lease_until: int) -> list[tuple[int, Message]]: ...
    async def inbound_finished(self, job_id: int, now: int) -> None: ...
    async def is_opted_out(self, sender: str, handset: str) -> bool: ...
    async def add_message(self, message: Message) -> Message: ...
    async def enqueue_message(self, message: Message, queue_cap_segments: int | None) -> Message: ...
    async def find_number(self, phone_number: str) -> PhoneNumber | None: ...
    async def get_application(self, account_sid: str, sid: str) -> Application | None: ...
    async def auth_token(self, account_sid: str) -> str | None: ...
    async def apply_transitions(
        self, transitions: Sequence[Transition], now: int, sender_tat: tuple[str, int] | None = None
    ) -> list[bool]: ...


class CarrierStore(Protocol):
    """What an SMPP carrier remembers: the SMSC's id for each part, and the receipts that match them."""

    async def record_parts(self, carrier: str, message_sid: str, smsc_ids: Sequence[str], now: int) -> None: ...
    async def part_receipt(
        self, carrier: str, id_forms: Sequence[str], delivered: bool, error_code: int | None
    ) -> PartOutcome | None: ...
    async def acquire_bind(self, carrier: str, slots: int, owner: str, now: int, lease_until: int) -> bool: ...
    async def release_bind(self, carrier: str, owner: str) -> None: ...


class FullStore(Store, DeliveryStore, InboundStore, CarrierStore, Protocol):
    """A store engine implements both halves."""
