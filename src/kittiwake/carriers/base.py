"""The Carrier interface: what the dispatcher hands a carrier and what comes back.

The dispatcher sees only this interface; a carrier never touches the message table. It answers a
submission (accepted with its own message id, or rejected) and later reports delivery receipts
through the callback it was started with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Submission:
    message_sid: str
    account_sid: str
    from_: str
    to: str
    body: str
    segments: int


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The carrier's answer. ``accepted`` False means the carrier refused it: the message failed."""

    accepted: bool
    carrier_message_id: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    # Monotonic seconds when the accepted submission went on the wire, if later than the call (retries).
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt: the final fate of an accepted submission.

    A carrier that matched the receipt to a message itself (an SMPP carrier joining the receipts of a
    message's parts) names it by ``message_sid``; otherwise ``carrier_message_id`` identifies it.
    """

    carrier_message_id: str
    delivered: bool
    error_code: int | None = None
    error_message: str | None = None
    message_sid: str | None = None


@dataclass(frozen=True, slots=True)
class MobileOriginated:
    """An SMS from a handset that a carrier received (reassembled when it came in parts)."""

    from_: str
    to: str
    body: str


ReceiptHandler = Callable[[Receipt], Awaitable[None]]
MoHandler = Callable[[MobileOriginated], Awaitable[None]]


class CarrierUnavailable(Exception):
    """The carrier cannot take submissions now (no bind, throttled for too long): retry later."""


class Carrier(Protocol):
    name: str

    async def start(self, on_receipt: ReceiptHandler, on_mo: MoHandler | None = None) -> None: ...
    def bind_limits(self) -> dict[str, int]:
        """Carriers (by name) whose binds are limited, and how many each allows at once."""
        ...

    def allow_bind(self, name: str, allowed: bool) -> None:
        """Let carrier ``name`` bind (or make it unbind): its bind slot is held by this process (or not)."""
        ...

    async def submit(self, submission: Submission) -> SubmitResult: ...
    async def stop(self) -> None: ...
