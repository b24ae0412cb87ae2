"""Unit and property tests for kittiwake.lifecycle (message status transitions and late/duplicate events)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kittiwake.domain import MessageStatus
from kittiwake.lifecycle import (
    CALLBACK_STATUSES_LEGACY,
    CALLBACK_STATUSES_MODERN,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Decision,
    Verdict,
    apply,
    can_transition,
    is_terminal,
)

S = MessageStatus
ALL = list(MessageStatus)
OUTBOUND_FINAL = [S.FAILED, S.DELIVERED, S.UNDELIVERED, S.CANCELED]


def fold(start: MessageStatus, events: list[MessageStatus]) -> MessageStatus:
    status = start
    for event in events:
        status = apply(status, event).status
    return status


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(MessageStatus)
    assert {s for s in ALL if not TRANSITIONS[s]} == TERMINAL_STATUSES


def test_terminal_statuses() -> None:
    assert {S.FAILED, S.DELIVERED, S.UNDELIVERED, S.CANCELED, S.RECEIVED} == TERMINAL_STATUSES
    assert is_terminal(S.DELIVERED)
    assert not is_terminal(S.SENT)


@pytest.mark.parametrize(
    "path",
    [
        [S.ACCEPTED, S.QUEUED, S.SENDING, S.SENT, S.DELIVERED],
        [S.SCHEDULED, S.QUEUED, S.SENDING, S.SENT, S.UNDELIVERED],
        [S.QUEUED, S.SENDING, S.QUEUED, S.SENDING, S.SENT, S.DELIVERED],  # re-driven after a crash or throttle
        [S.QUEUED, S.SENDING, S.DELIVERED],  # the receipt raced the submit response
        [S.QUEUED, S.SENDING, S.UNDELIVERED],
        [S.SCHEDULED, S.CANCELED],
        [S.ACCEPTED, S.FAILED],
        [S.SCHEDULED, S.FAILED],
        [S.QUEUED, S.FAILED],
        [S.QUEUED, S.SENDING, S.FAILED],
        [S.RECEIVING, S.RECEIVED],
    ],
)
def test_legal_paths(path: list[MessageStatus]) -> None:
    for current, new in itertools.pairwise(path):
        decision = apply(current, new)
        assert decision == Decision(current, new, Verdict.APPLY)
        assert decision.change
        assert decision.status is new
        assert can_transition(current, new)


@pytest.mark.parametrize("status", ALL)
def test_same_status_again_is_a_duplicate(status: MessageStatus) -> None:
    decision = apply(status, status)
    assert decision.verdict is Verdict.DUPLICATE
    assert not decision.change
    assert decision.status is status
    assert not can_transition(status, status)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.DELIVERED, S.SENT),  # sent's callback arriving after the receipt
        (S.UNDELIVERED, S.SENT),
        (S.DELIVERED, S.SENDING),
        (S.DELIVERED, S.QUEUED),
        (S.SENT, S.SENDING),
        (S.SENT, S.QUEUED),
        (S.SENDING, S.ACCEPTED),
        (S.QUEUED, S.SCHEDULED),
        (S.CANCELED, S.QUEUED),  # the SendAt timer fired after the cancel won
        (S.FAILED, S.SENDING),
        (S.RECEIVED, S.RECEIVING),
    ],
)
def test_stale_events_are_ignored(current: MessageStatus, new: MessageStatus) -> None:
    decision = apply(current, new)
    assert decision.verdict is Verdict.STALE
    assert decision.status is current


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.DELIVERED, S.UNDELIVERED),
        (S.UNDELIVERED, S.DELIVERED),
        (S.FAILED, S.DELIVERED),
        (S.DELIVERED, S.FAILED),
        (S.CANCELED, S.FAILED),
    ],
)
def test_first_final_status_wins(current: MessageStatus, new: MessageStatus) -> None:
    decision = apply(current, new)
    assert decision.verdict is Verdict.CONFLICTING
    assert decision.status is current


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.SENT, S.FAILED),  # after sent, a carrier failure is `undelivered`
        (S.QUEUED, S.SENT),  # skipping `sending`
        (S.QUEUED, S.DELIVERED),
        (S.ACCEPTED, S.SENDING),
        (S.ACCEPTED, S.CANCELED),  # only scheduled messages can be canceled
        (S.SENDING, S.CANCELED),
        (S.SENT, S.CANCELED),
        (S.RECEIVED, S.DELIVERED),  # inbound and outbound never mix
        (S.RECEIVING, S.SENT),
        (S.QUEUED, S.RECEIVED),
        (S.DELIVERED, S.RECEIVED),
    ],
)
def test_illegal_events(current: MessageStatus, new: MessageStatus) -> None:
    decision = apply(current, new)
    assert decision.verdict is Verdict.ILLEGAL
    assert decision.status is current


def test_apply_accepts_plain_strings() -> None:
    assert apply("sending", "delivered") == Decision(S.SENDING, S.DELIVERED, Verdict.APPLY)  # type: ignore[arg-type]


@pytest.mark.parametrize("order", list(itertools.permutations([S.SENT, S.DELIVERED])))
def test_receipt_and_submit_response_in_either_order_end_delivered(order: tuple[MessageStatus, ...]) -> None:
    assert fold(S.SENDING, list(order)) is S.DELIVERED


def test_late_duplicate_receipts_after_delivery() -> None:
    events = [S.SENT, S.DELIVERED, S.DELIVERED, S.SENT, S.UNDELIVERED, S.DELIVERED]
    assert fold(S.SENDING, events) is S.DELIVERED


def test_callback_statuses() -> None:
    assert {S.SENT, S.FAILED} == CALLBACK_STATUSES_LEGACY
    assert {S.SENT, S.DELIVERED, S.UNDELIVERED, S.FAILED, S.CANCELED} == CALLBACK_STATUSES_MODERN
    assert CALLBACK_STATUSES_LEGACY <= CALLBACK_STATUSES_MODERN


# -- properties ---------------------------------------------------------------------------------------------------

statuses = st.sampled_from(ALL)


@given(statuses, statuses)
def test_property_decision_is_consistent(current: MessageStatus, new: MessageStatus) -> None:
    decision = apply(current, new)
    assert decision.change == can_transition(current, new)
    assert decision.status is (new if decision.change else current)
    # Events are idempotent: once applied, the same event again is a duplicate; if refused, refused again.
    if decision.change:
        assert apply(decision.status, new).verdict is Verdict.DUPLICATE
    else:
        assert apply(decision.status, new) == decision
    if is_terminal(current):
        assert not decision.change


@given(statuses, st.lists(statuses, max_size=30))
def test_property_terminal_is_forever(start: MessageStatus, events: list[MessageStatus]) -> None:
    status = start
    first_final = start if is_terminal(start) else None
    for event in events:
        status = apply(status, event).status
        if first_final is None and is_terminal(status):
            first_final = status
        if first_final is not None:
            assert status is first_final


@given(st.lists(statuses, max_size=30))
def test_property_outbound_never_goes_backwards_except_redrive(events: list[MessageStatus]) -> None:
    stage = {S.QUEUED: 1, S.SENDING: 2, S.SENT: 3, **dict.fromkeys(OUTBOUND_FINAL, 4)}
    status = S.QUEUED
    for event in events:
        after = apply(status, event).status
        assert after in stage
        assert stage[after] >= stage[status] or (status, after) == (S.SENDING, S.QUEUED)
        status = after
