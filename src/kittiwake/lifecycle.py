"""Message status lifecycle: which transitions are legal, and how late or duplicate events are applied.

Pure: no I/O. The store asks :func:`apply` before writing a status, so every writer (the API, the dispatcher,
the receipt handler) follows one table.

Outbound path (twilio-api.md §3.5): ``accepted|scheduled -> queued -> sending -> sent -> delivered|undelivered``;
``failed`` from any pre-carrier stage; ``scheduled -> canceled`` via update. Inbound: ``receiving -> received``.
Two additions for a real carrier link:

* ``sending -> queued``: a message re-driven after a crash or a throttle goes back to the queue.
* ``sending -> delivered|undelivered``: the delivery receipt raced the submit response and won.

Callbacks may arrive out of order (§3.5), and so may carrier events, so :func:`apply` never raises: it returns a
:class:`Decision` saying whether to write, and if not, why (duplicate, stale, conflicting, illegal).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from kittiwake.domain import MessageStatus

__all__ = [
    "CALLBACK_STATUSES_LEGACY",
    "CALLBACK_STATUSES_MODERN",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Decision",
    "Verdict",
    "apply",
    "can_transition",
    "is_terminal",
]

S = MessageStatus

# Legal transitions: current status -> statuses it may move to. Anything not listed is refused by apply().
TRANSITIONS: Mapping[MessageStatus, frozenset[MessageStatus]] = {
    S.ACCEPTED: frozenset({S.QUEUED, S.FAILED}),
    S.SCHEDULED: frozenset({S.QUEUED, S.FAILED, S.CANCELED}),
    S.QUEUED: frozenset({S.SENDING, S.FAILED}),
    # After sent a carrier failure is `undelivered`, never `failed` (failed is a pre-carrier outcome).
    S.SENDING: frozenset({S.SENT, S.FAILED, S.QUEUED, S.DELIVERED, S.UNDELIVERED}),
    S.SENT: frozenset({S.DELIVERED, S.UNDELIVERED}),
    S.RECEIVING: frozenset({S.RECEIVED}),
    S.FAILED: frozenset(),
    S.DELIVERED: frozenset(),
    S.UNDELIVERED: frozenset(),
    S.CANCELED: frozenset(),
    S.RECEIVED: frozenset(),
}

TERMINAL_STATUSES: frozenset[MessageStatus] = frozenset({S.FAILED, S.DELIVERED, S.UNDELIVERED, S.CANCELED, S.RECEIVED})

# Statuses that fire a StatusCallback. Modern Messages (twilio-api.md §3.5): no callback for the initial status;
# sent, delivered, undelivered, failed, and canceled for scheduled messages. Legacy SMS/Messages (twilio-api.md
# §2.2, §3.6): "Twilio will POST the SmsSid as well as SmsStatus=sent or SmsStatus=failed".
CALLBACK_STATUSES_MODERN: frozenset[MessageStatus] = frozenset(
    {S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELED}
)
CALLBACK_STATUSES_LEGACY: frozenset[MessageStatus] = frozenset({S.SENT, S.FAILED})

_INBOUND: frozenset[MessageStatus] = frozenset({S.RECEIVING, S.RECEIVED})

# Progress along the outbound path; an event for an earlier stage than the current one is stale.
_OUTBOUND_STAGE: Mapping[MessageStatus, int] = {
    S.ACCEPTED: 0,
    S.SCHEDULED: 0,
    S.QUEUED: 1,
    S.SENDING: 2,
    S.SENT: 3,
    S.FAILED: 4,
    S.DELIVERED: 4,
    S.UNDELIVERED: 4,
    S.CANCELED: 4,
}


class Verdict(enum.StrEnum):
    """What :func:`apply` decided about one status event."""

    APPLY = "apply"  # a legal transition: write it
    DUPLICATE = "duplicate"  # the same status again (a repeated receipt, a retried write): nothing to do
    STALE = "stale"  # an event for an earlier stage arriving late (sent after delivered): ignore
    CONFLICTING = "conflicting"  # a second, different final status (undelivered after delivered): first wins
    ILLEGAL = "illegal"  # not a transition of the lifecycle (sent -> failed, queued -> sent): a bug upstream


@dataclass(frozen=True)
class Decision:
    current: MessageStatus
    new: MessageStatus
    verdict: Verdict

    @property
    def change(self) -> bool:
        """True when the status should be written."""
        return self.verdict is Verdict.APPLY

    @property
    def status(self) -> MessageStatus:
        """The status after the event: ``new`` if applied, else ``current``."""
        return self.new if self.change else self.current


def is_terminal(status: MessageStatus) -> bool:
    return status in TERMINAL_STATUSES


def can_transition(current: MessageStatus, new: MessageStatus) -> bool:
    """True when ``current -> new`` is a legal move (a repeat of the same status is not a move)."""
    return new in TRANSITIONS[current]


def apply(current: MessageStatus, new: MessageStatus) -> Decision:
    """Decide whether an event carrying status ``new`` changes a message now in ``current``.

    Rules, in order: the same status again is a duplicate; a listed transition applies; an inbound status
    mixed with an outbound one is illegal; once final, a different final status conflicts (the first final
    status wins) and any earlier status is stale; otherwise an event for an earlier outbound stage is stale;
    anything else is illegal.
    """
    current, new = MessageStatus(current), MessageStatus(new)
    if new == current:
        verdict = Verdict.DUPLICATE
    elif can_transition(current, new):
        verdict = Verdict.APPLY
    elif (current in _INBOUND) != (new in _INBOUND):
        verdict = Verdict.ILLEGAL
    elif is_terminal(current):
        verdict = Verdict.CONFLICTING if is_terminal(new) else Verdict.STALE
    elif current not in _INBOUND and _OUTBOUND_STAGE[new] < _OUTBOUND_STAGE[current]:
        verdict = Verdict.STALE
    else:
        verdict = Verdict.ILLEGAL
    return Decision(current, new, verdict)
