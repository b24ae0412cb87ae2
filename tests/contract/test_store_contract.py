"""One contract for every store engine: the same tests run against SQLite and PostgreSQL.

The last tests are PostgreSQL's own: several stores on one database behave like several processes
(concurrent claims never take the same row twice; a NOTIFY from one wakes the others).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import pytest

from kittiwake.domain import AccountStatus, Direction, MessageStatus, NumberKind, SidPrefix, new_sid
from kittiwake.models import Account, Application, Message, PhoneNumber
from kittiwake.store.base import (
    AccountFilter,
    Changes,
    DuplicateError,
    FullStore,
    MessageFilter,
    NewCallback,
    NumberFilter,
    OptChange,
    PageRequest,
    QueueFull,
    SimRecord,
    Transition,
)
from kittiwake.store.postgres import PostgresStore

T0 = 1_700_000_000_000_000  # epoch microseconds
SENDER = "+14158141829"
OTHER_SENDER = "+14158141830"
HANDSET = "+14159352345"
OWNER = "dispatcher-a"
_clock = itertools.count(1)


def tick() -> int:
    """A strictly increasing instant, so rows created in a test order by date_created."""
    return T0 + next(_clock) * 1000


def account(owner: str | None = None, name: str = "main", status: AccountStatus = AccountStatus.ACTIVE) -> Account:
    sid = new_sid(SidPrefix.ACCOUNT)
    now = tick()
    return Account(sid, name, "token-" + sid[-6:], status, owner or sid, now, now)


def number(account_sid: str, phone: str, *, kind: NumberKind = NumberKind.LONG_CODE, name: str = "n") -> PhoneNumber:
    prefix = SidPrefix.SHORT_CODE if kind is NumberKind.SHORT_CODE else SidPrefix.PHONE_NUMBER
    now = tick()
    return PhoneNumber(
        new_sid(prefix), account_sid, phone, kind, name, None, "POST", None, "POST", None, None, "POST", now, now
    )


def application(account_sid: str, name: str = "app") -> Application:
    now = tick()
    return Application(
        new_sid(SidPrefix.APPLICATION), account_sid, name, "https://example.com/sms", "POST", None, "POST",
        None, None, None, "POST", None, "POST", now, now,
    )  # fmt: skip


def message(
    account_sid: str,
    *,
    from_: str = SENDER,
    to: str = HANDSET,
    status: MessageStatus = MessageStatus.QUEUED,
    segments: int = 1,
    date_sent: int | None = None,
    expires_at: int | None = None,
    direction: Direction = Direction.OUTBOUND_API,
    body: str = "hello",
) -> Message:
    now = tick()
    return Message(
        sid=new_sid(SidPrefix.SMS_MESSAGE), account_sid=account_sid, from_=from_, to=to, body=body, status=status,
        direction=direction, num_segments=segments, date_created=now, date_updated=now, date_sent=date_sent,
        expires_at=expires_at if expires_at is not None else now + 36_000_000_000,
    )  # fmt: skip


async def main_account(store: FullStore) -> Account:
    a = account()
    await store.add_account(a)
    return a


async def leased(store: FullStore, sender: str = SENDER, owner: str = OWNER) -> int:
    """Take the sender's lease for ``owner``; its tat."""
    acquired = await store.acquire_senders(owner, [sender], tick(), tick() + 60_000_000)
    assert sender in acquired
    return acquired[sender]


# -- accounts, numbers, applications -----------------------------------------------------------------


async def test_accounts_crud_filters_and_paging(store: FullStore) -> None:
    owner = await main_account(store)
    subs = [account(owner.sid, name=f"sub{i % 2}") for i in range(4)]
    for sub in subs:
        await store.add_account(sub)
    await store.add_account(account(name="stranger"))

    assert await store.get_account(owner.sid) == owner
    assert await store.get_account(new_sid(SidPrefix.ACCOUNT)) is None
    assert [a.sid for a in await store.all_accounts()][:5] == [owner.sid] + [s.sid for s in subs]

    listed = await store.list_accounts(owner.sid, AccountFilter(), PageRequest(size=10))
    assert [a.sid for a in listed.items] == [owner.sid] + [s.sid for s in subs]
    assert not listed.has_more
    first = await store.list_accounts(owner.sid, AccountFilter(), PageRequest(size=2))
    second = await store.list_accounts(owner.sid, AccountFilter(), PageRequest(size=2, offset=2))
    third = await store.list_accounts(owner.sid, AccountFilter(), PageRequest(size=2, offset=4))
    assert first.has_more and second.has_more and not third.has_more
    assert (first.last_key, second.last_key, third.last_key) == (2, 4, 5)
    assert [a.sid for a in first.items + second.items + third.items] == [owner.sid] + [s.sid for s in subs]

    named = await store.list_accounts(owner.sid, AccountFilter(friendly_name="sub1"), PageRequest(size=10))
    assert [a.sid for a in named.items] == [subs[1].sid, subs[3].sid]

    updated = await store.update_account(
        subs[0].sid, Changes({"status": AccountStatus.SUSPENDED.value, "friendly_name": "renamed"}), tick()
    )
    assert updated is not None
    assert updated.status is AccountStatus.SUSPENDED and updated.friendly_name == "renamed"
    assert updated.date_updated > subs[0].date_updated
    suspended = await store.list_accounts(owner.sid, AccountFilter(status="suspended"), PageRequest(size=10))
    assert [a.sid for a in suspended.items] == [subs[0].sid]
    with pytest.raises(ValueError, match="not updatable"):
        await store.update_account(owner.sid, Changes({"auth_token": "x"}), tick())
    assert await store.update_account(new_sid(SidPrefix.ACCOUNT), Changes({"friendly_name": "x"}), tick()) is None
    assert await store.auth_token(owner.sid) == owner.auth_token
    assert await store.auth_token(new_sid(SidPrefix.ACCOUNT)) is None


async def test_numbers_crud_filters_and_paging(store: FullStore) -> None:
    owner = await main_account(store)
    other = await main_account(store)
    longs = [number(owner.sid, f"+1415555000{i}", name=f"line{i % 2}") for i in range(5)]
    short = number(owner.sid, "12345", kind=NumberKind.SHORT_CODE)
    for n in [*longs, short, number(other.sid, "+14155559999")]:
        await store.add_number(n)

    assert await store.get_number(owner.sid, longs[0].sid) == longs[0]
    assert await store.get_number(other.sid, longs[0].sid) is None
    assert await store.find_number("12345") == short
    assert await store.find_number("+19999999999") is None

    page1 = await store.list_numbers(owner.sid, NumberFilter(), PageRequest(size=3))
    page2 = await store.list_numbers(owner.sid, NumberFilter(), PageRequest(size=3, offset=3))
    assert page1.has_more and not page2.has_more
    assert [n.sid for n in page1.items + page2.items] == [n.sid for n in longs]
    shorts = await store.list_numbers(owner.sid, NumberFilter(short_codes=True), PageRequest(size=10))
    assert [n.sid for n in shorts.items] == [short.sid]
    named = await store.list_numbers(owner.sid, NumberFilter(friendly_name="line1"), PageRequest(size=10))
    assert [n.sid for n in named.items] == [longs[1].sid, longs[3].sid]
    digits = await store.list_numbers(owner.sid, NumberFilter(phone_number="50003"), PageRequest(size=10))
    assert [n.sid for n in digits.items] == [longs[3].sid]

    changed = await store.update_number(
        owner.sid, longs[0].sid, Changes({"sms_url": "https://example.com/in", "friendly_name": "x"}), tick()
    )
    assert changed is not None and changed.sms_url == "https://example.com/in" and changed.friendly_name == "x"
    with pytest.raises(ValueError, match="not updatable"):
        await store.update_number(owner.sid, longs[0].sid, Changes({"phone_number": "+1"}), tick())
    assert await store.delete_number(owner.sid, longs[0].sid)
    assert not await store.delete_number(owner.sid, longs[0].sid)
    assert await store.find_number(longs[0].phone_number) is None


async def test_applications_crud_filters_and_paging(store: FullStore) -> None:
    owner = await main_account(store)
    apps = [application(owner.sid, name=f"app{i % 2}") for i in range(3)]
    for app in apps:
        await store.add_application(app)
    assert await store.get_application(owner.sid, apps[0].sid) == apps[0]
    assert await store.get_application(new_sid(SidPrefix.ACCOUNT), apps[0].sid) is None
    listed = await store.list_applications(owner.sid, None, PageRequest(size=2))
    rest = await store.list_applications(owner.sid, None, PageRequest(size=2, offset=2))
    assert listed.has_more and not rest.has_more
    assert [a.sid for a in listed.items + rest.items] == [a.sid for a in apps]
    named = await store.list_applications(owner.sid, "app0", PageRequest(size=10))
    assert [a.sid for a in named.items] == [apps[0].sid, apps[2].sid]
    changed = await store.update_application(owner.sid, apps[1].sid, Changes({"voice_url": "https://v"}), tick())
    assert changed is not None and changed.voice_url == "https://v"
    assert await store.delete_application(owner.sid, apps[1].sid)
    assert await store.get_application(owner.sid, apps[1].sid) is None
    assert not await store.delete_application(owner.sid, apps[1].sid)


async def test_unique_and_reference_violations_raise_duplicate_error(store: FullStore) -> None:
    owner = await main_account(store)
    with pytest.raises(DuplicateError):
        await store.add_account(owner)
    n = number(owner.sid, "+14155550100")
    await store.add_number(n)
    with pytest.raises(DuplicateError):
        await store.add_number(replace(n, sid=new_sid(SidPrefix.PHONE_NUMBER)))
    with pytest.raises(DuplicateError):  # no such account
        await store.add_number(number(new_sid(SidPrefix.ACCOUNT), "+14155550101"))
    m = await store.add_message(message(owner.sid))
    with pytest.raises(DuplicateError):
        await store.add_message(m)
    app = application(owner.sid)
    await store.add_application(app)
    with pytest.raises(DuplicateError):
        await store.add_application(app)
    # A failed write in a batch does not take the others down with it.
    results = await asyncio.gather(store.add_message(m), store.add_message(message(owner.sid)), return_exceptions=True)
    assert isinstance(results[0], DuplicateError) and isinstance(results[1], Message)


# -- messages ------------------------------------------------------------------------------------------


async def test_messages_add_get_list_filters_and_paging(store: FullStore) -> None:
    owner = await main_account(store)
    other = await main_account(store)
    added: list[Message] = []
    for i in range(7):
        m = message(owner.sid, to=f"+1415935000{i % 3}", from_=SENDER if i < 5 else OTHER_SENDER,
                    status=MessageStatus.SENT, date_sent=T0 + i * 1_000_000)  # fmt: skip
        added.append(await store.add_message(m))
    await store.add_message(message(other.sid))
    seqs = [m.seq for m in added]
    assert seqs == sorted(seqs) and len(set(seqs)) == 7 and all(s > 0 for s in seqs)

    got = await store.get_message(owner.sid, added[0].sid)
    assert got == added[0] and got is not None and got.seq == added[0].seq
    assert await store.get_message(other.sid, added[0].sid) is None
    assert await store.get_message_by_sid(added[0].sid) == added[0]

    newest_first = [m.sid for m in reversed(added)]
    everything = await store.list_messages(owner.sid, MessageFilter(), PageRequest(size=50), with_total=True)
    assert [m.sid for m in everything.items] == newest_first and everything.total == 7 and not everything.has_more

    # Keyset paging: each page starts strictly after the last key of the previous one.
    sids: list[str] = []
    after: int | None = None
    pages = 0
    while True:
        page = await store.list_messages(owner.sid, MessageFilter(), PageRequest(size=3, after=after))
        sids += [m.sid for m in page.items]
        pages += 1
        assert page.total is None
        if not page.has_more:
            break
        after = page.last_key
    assert sids == newest_first and pages == 3
    by_offset = await store.list_messages(owner.sid, MessageFilter(), PageRequest(size=3, offset=3))
    assert [m.sid for m in by_offset.items] == newest_first[3:6] and by_offset.has_more

    to = await store.list_messages(owner.sid, MessageFilter(to="+14159350001"), PageRequest(size=50), with_total=True)
    assert [m.sid for m in to.items] == [added[4].sid, added[1].sid] and to.total == 2
    from_ = await store.list_messages(owner.sid, MessageFilter(from_=OTHER_SENDER), PageRequest(size=50))
    assert [m.sid for m in from_.items] == [added[6].sid, added[5].sid]
    window = MessageFilter(sent_from=T0 + 2_000_000, sent_until=T0 + 4_000_000)
    dated = await store.list_messages(owner.sid, window, PageRequest(size=50), with_total=True)
    assert [m.sid for m in dated.items] == [added[3].sid, added[2].sid] and dated.total == 2
    empty = await store.list_messages(owner.sid, MessageFilter(to="+10000000000"), PageRequest(size=5))
    assert empty.items == [] and empty.last_key is None and not empty.has_more

    updated = await store.update_message(owner.sid, added[0].sid, Changes({"body": "", "price": "-0.0079"}), tick())
    assert updated is not None and updated.body == "" and updated.price == "-0.0079"
    with pytest.raises(ValueError, match="not updatable"):
        await store.update_message(owner.sid, added[0].sid, Changes({"to_number": "+1"}), tick())
    assert await store.delete_message(owner.sid, added[0].sid)
    assert await store.get_message(owner.sid, added[0].sid) is None
    assert not await store.delete_message(owner.sid, added[0].sid)


# -- the queue -----------------------------------------------------------------------------------------


async def test_enqueue_respects_the_sender_cap(store: FullStore) -> None:
    owner = await main_account(store)
    first = await store.enqueue_message(message(owner.sid, segments=2), queue_cap_segments=3)
    assert first.seq > 0
    refused = message(owner.sid, segments=2)
    with pytest.raises(QueueFull):
        await store.enqueue_message(refused, queue_cap_segments=3)
    assert await store.get_message_by_sid(refused.sid) is None  # nothing of it was kept
    await store.enqueue_message(message(owner.sid, segments=1), queue_cap_segments=3)
    with pytest.raises(QueueFull):
        await store.enqueue_message(message(owner.sid, segments=1), queue_cap_segments=3)
    # Another sender has a backlog of its own; no cap means none.
    await store.enqueue_message(message(owner.sid, from_=OTHER_SENDER, segments=3), queue_cap_segments=3)
    for _ in range(3):
        await store.enqueue_message(message(owner.sid, segments=5), queue_cap_segments=None)
    assert {s for s, _ in await store.senders_with_work()} == {SENDER, OTHER_SENDER}


async def test_concurrent_enqueues_under_a_cap_admit_exactly_the_cap(store: FullStore) -> None:
    owner = await main_account(store)
    results = await asyncio.gather(
        *(store.enqueue_message(message(owner.sid), queue_cap_segments=10) for _ in range(40)),
        return_exceptions=True,
    )
    admitted = [r for r in results if isinstance(r, Message)]
    assert len(admitted) == 10 and sum(isinstance(r, QueueFull) for r in results) == 30
    assert len({m.seq for m in admitted}) == 10
    queued = await store.list_messages(owner.sid, MessageFilter(from_=SENDER), PageRequest(size=100))
    assert {m.sid for m in queued.items} == {m.sid for m in admitted}


async def test_claim_queued_takes_the_oldest_for_the_lease_holder_only(store: FullStore) -> None:
    owner = await main_account(store)
    queued = [await store.enqueue_message(message(owner.sid, segments=1 + i % 2), None) for i in range(5)]
    await store.enqueue_message(message(owner.sid, from_=OTHER_SENDER), None)
    assert await store.claim_queued(SENDER, 10, tick(), OWNER) is None  # no lease yet
    tat = await leased(store)
    assert tat == 0
    assert await store.acquire_senders("someone-else", [SENDER], tick(), tick() + 1) == {}
    assert await store.claim_queued(SENDER, 10, tick(), "someone-else") is None

    now = tick()
    claimed = await store.claim_queued(SENDER, 3, now, OWNER, interval_micros=1000)
    assert claimed is not None
    assert [m.sid for m in claimed] == [m.sid for m in queued[:3]]
    assert all(m.from_ == SENDER for m in claimed)
    for m in claimed:
        stored = await store.get_message_by_sid(m.sid)
        assert stored is not None and stored.status is MessageStatus.SENDING and stored.date_updated == now
    # The claimed segments (1 + 2 + 1) are reserved in the sender's tat.
    assert await leased(store) == now + 4 * 1000

    # The backlog counter went down by 4 of 7 segments: 3 more fit under a cap of 6, then no more.
    await store.enqueue_message(message(owner.sid, segments=3), queue_cap_segments=6)
    with pytest.raises(QueueFull):
        await store.enqueue_message(message(owner.sid), queue_cap_segments=6)

    rest = await store.claim_queued(SENDER, 10, tick(), OWNER)
    assert rest is not None
    assert len(rest) == 3 and rest[0].sid == queued[3].sid and [m.seq for m in rest] == sorted(m.seq for m in rest)
    assert SENDER not in {s for s, _ in await store.senders_with_work()}
    assert await store.claim_queued(SENDER, 10, tick(), OWNER) == []  # the holder, with nothing queued
    assert SENDER not in {s for s, _ in await store.senders_with_work()}
    assert OTHER_SENDER in {s for s, _ in await store.senders_with_work()}


async def test_leases_are_taken_over_when_they_lapse(store: FullStore) -> None:
    owner = await main_account(store)
    queued = [await store.enqueue_message(message(owner.sid), None) for _ in range(3)]
    now = tick()
    assert await store.acquire_senders("a", [SENDER, "+19999999999"], now, now + 1000) == {SENDER: 0}
    in_flight = await store.claim_queued(SENDER, 2, now, "a")
    assert in_flight is not None
    assert [m.sid for m in in_flight] == [m.sid for m in queued[:2]]
    assert await store.acquire_senders("b", [SENDER], now + 500, now + 5000) == {}
    # "a" is gone; its lease lapses and "b" re-drives what "a" left in flight, in the original order.
    later = now + 2000
    assert SENDER in await store.acquire_senders("b", [SENDER], later, later + 5000)
    assert await store.claim_queued(SENDER, 10, later, "a") is None  # "a" lost the lease
    again = await store.claim_queued(SENDER, 10, later, "b")
    assert again is not None
    assert [m.sid for m in again] == [m.sid for m in queued]
    # Releasing persists the tat, never moving it backwards; a released sender is free for anyone.
    await store.release_senders("b", [(SENDER, later + 7_000)])
    await store.release_senders("b", [(SENDER, later + 1_000)])
    assert (await store.acquire_senders("c", [SENDER], later, later + 1000)) == {SENDER: later + 7_000}


async def test_apply_transitions_is_guarded_and_writes_callbacks_and_requeues(store: FullStore) -> None:
    owner = await main_account(store)
    a = await store.enqueue_message(message(owner.sid, segments=2), None)
    b = await store.enqueue_message(message(owner.sid, segments=3), None)
    await leased(store)
    claimed = await store.claim_queued(SENDER, 10, tick(), OWNER)
    assert claimed is not None
    assert [m.sid for m in claimed] == [a.sid, b.sid]

    callback = NewCallback(owner.sid, a.sid, "https://example.com/status", "POST",
                           (("MessageStatus", "sent"), ("MessageSid", a.sid)), f"{a.sid}-sent")  # fmt: skip
    now = tick()
    sent = Transition(a.sid, frozenset({"sending"}), {"status": "sent", "date_sent": now, "carrier_message_id": "c-1"},
                      callback)  # fmt: skip
    requeue = Transition(b.sid, frozenset({"sending"}), {"status": "queued"}, requeued_segments=3)
    stale = Transition(a.sid, frozenset({"queued"}), {"status": "failed"}, callback)
    assert await store.apply_transitions([sent, requeue, stale], now, sender_tat=(SENDER, now + 50)) == [
        True,
        True,
        False,
    ]
    stored_a = await store.get_message_by_sid(a.sid)
    assert stored_a is not None and stored_a.status is MessageStatus.SENT and stored_a.date_sent == now
    assert stored_a.date_updated == now
    assert await store.find_by_carrier_id("c-1") == stored_a
    assert await store.find_by_carrier_id("c-2") is None
    # A late duplicate of the same event changes nothing and writes no second callback.
    assert await store.apply_transitions([sent], tick()) == [False]
    assert await store.pending_callbacks() == 1
    callbacks = await store.claim_callbacks(tick(), 10, tick() + 1_000_000)
    assert len(callbacks) == 1
    assert callbacks[0].params == (("MessageStatus", "sent"), ("MessageSid", a.sid))
    assert (callbacks[0].url, callbacks[0].idempotency_key, callbacks[0].attempts) == (
        "https://example.com/status",
        f"{a.sid}-sent",
        0,
    )

    # b is queued again with its 3 segments back in the backlog (a cap of 4 now refuses 2 more).
    stored_b = await store.get_message_by_sid(b.sid)
    assert stored_b is not None and stored_b.status is MessageStatus.QUEUED
    assert SENDER in {s for s, _ in await store.senders_with_work()}
    with pytest.raises(QueueFull):
        await store.enqueue_message(message(owner.sid, segments=2), queue_cap_segments=4)
    # The tat persisted with the transitions never moves backwards.
    await store.apply_transitions([], tick(), sender_tat=(SENDER, now + 10))
    assert await leased(store) == now + 50
    with pytest.raises(ValueError, match="not updatable"):
        await store.apply_transitions([Transition(a.sid, frozenset({"sent"}), {"to_number": "+1"})], tick())


async def test_recover_in_flight_requeues_and_recounts(store: FullStore) -> None:
    owner = await main_account(store)
    for _ in range(4):
        await store.enqueue_message(message(owner.sid, segments=2), None)
    await leased(store)
    claimed = await store.claim_queued(SENDER, 3, tick(), OWNER)
    assert claimed is not None and len(claimed) == 3
    assert await store.recover_in_flight() == 3
    for m in claimed:
        stored = await store.get_message_by_sid(m.sid)
        assert stored is not None and stored.status is MessageStatus.QUEUED
    # Every lease is gone: anyone may take the sender, and the backlog is the recounted 8 segments.
    assert SENDER in await store.acquire_senders("new", [SENDER], tick(), tick() + 1000)
    await store.enqueue_message(message(owner.sid, segments=2), queue_cap_segments=10)
    with pytest.raises(QueueFull):
        await store.enqueue_message(message(owner.sid), queue_cap_segments=10)
    assert await store.recover_in_flight() == 0
    assert SENDER in await store.acquire_senders("new", [SENDER], tick(), tick() + 1000)
    again = await store.claim_queued(SENDER, 10, tick(), "new")
    assert again is not None
    assert [m.sid for m in again][:3] == [m.sid for m in claimed]


async def test_expired_queued(store: FullStore) -> None:
    owner = await main_account(store)
    soon = await store.enqueue_message(message(owner.sid, expires_at=T0 + 10), None)
    sooner = await store.enqueue_message(message(owner.sid, expires_at=T0 + 5), None)
    await store.enqueue_message(message(owner.sid, expires_at=T0 + 1_000), None)
    await store.add_message(message(owner.sid, status=MessageStatus.SENT, expires_at=T0))
    expired = await store.expired_queued(T0 + 100, 10)
    assert [m.sid for m in expired] == [sooner.sid, soon.sid]
    assert [m.sid for m in await store.expired_queued(T0 + 100, 1)] == [sooner.sid]


async def test_queue_listeners_are_called_after_the_enqueue_committed(store: FullStore) -> None:
    owner = await main_account(store)
    seen: list[tuple[str, bool]] = []
    pending: list[asyncio.Task[Message | None]] = []

    def listener(sender: str) -> None:
        seen.append((sender, True))
        pending.append(asyncio.ensure_future(store.get_message_by_sid(last.sid)))

    store.add_queue_listener(listener)
    last = message(owner.sid)
    await store.enqueue_message(last, None)
    assert seen == [(SENDER, True)]
    assert await pending[0] is not None  # visible to a reader when the listener runs


# -- the callback outbox ------------------------------------------------------------------------------


async def test_callback_leases_and_outcomes(store: FullStore) -> None:
    owner = await main_account(store)
    sids = []
    for _ in range(3):
        m = await store.enqueue_message(message(owner.sid), None)
        sids.append(m.sid)
    await leased(store)
    await store.claim_queued(SENDER, 10, tick(), OWNER)
    now = tick()
    transitions = [
        Transition(sid, frozenset({"sending"}), {"status": "sent"},
                   NewCallback(owner.sid, sid, f"https://example.com/{i}", "POST", (("i", str(i)),), f"k{i}"))
        for i, sid in enumerate(sids)
    ]  # fmt: skip
    assert await store.apply_transitions(transitions, now) == [True, True, True]
    assert await store.pending_callbacks() == 3

    lease_until = now + 30_000_000
    first = await store.claim_callbacks(now, 2, lease_until)
    assert [c.idempotency_key for c in first] == ["k0", "k1"]
    assert all(c.next_attempt_at == now for c in first)  # as it was before the lease
    second = await store.claim_callbacks(now, 10, lease_until)
    assert [c.idempotency_key for c in second] == ["k2"]
    assert await store.claim_callbacks(now + 1, 10, lease_until) == []  # all leased
    assert await store.claim_callbacks(now, 10, lease_until) == []

    await store.callback_delivered(first[0].id, tick(), 200)
    await store.callback_retry(first[1].id, 1, now + 5_000_000, "HTTP 500 " + "x" * 1000)
    await store.callback_dead(second[0].id, tick(), "gave up")
    assert await store.pending_callbacks() == 1
    retried = await store.claim_callbacks(now + 5_000_000, 10, lease_until + 1)
    assert [(c.id, c.attempts, c.next_attempt_at) for c in retried] == [(first[1].id, 1, now + 5_000_000)]
    # After the lease lapses, an unfinished callback comes back.
    assert [c.id for c in await store.claim_callbacks(lease_until + 1, 10, lease_until + 2)] == [first[1].id]


# -- the simulated carrier's record ------------------------------------------------------------------


def sim_record(account_sid: str, to: str, due: int | None, outcome: str = "delivered") -> SimRecord:
    sid = new_sid(SidPrefix.SMS_MESSAGE)
    return SimRecord(0, account_sid, sid, "c-" + sid[-8:], SENDER, to, "hi", 1, tick(), outcome, None, due)


async def test_sim_records(store: FullStore) -> None:
    owner = await main_account(store)
    other = await main_account(store)
    ids = [
        await store.record_sim_submission(sim_record(owner.sid, HANDSET, T0 + 30)),
        await store.record_sim_submission(sim_record(owner.sid, "+14159350000", T0 + 10)),
        await store.record_sim_submission(sim_record(owner.sid, HANDSET, None, outcome="rejected")),
        await store.record_sim_submission(sim_record(other.sid, HANDSET, T0 + 20)),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 4
    listed = await store.list_sim_submissions(owner.sid)
    assert [r.id for r in listed] == ids[:3]
    assert listed[2].outcome == "rejected" and listed[2].receipt_due_at is None and listed[2].error_code is None
    assert [r.id for r in await store.list_sim_submissions(owner.sid, to=HANDSET)] == [ids[0], ids[2]]
    assert [r.id for r in await store.list_sim_submissions(owner.sid, from_=SENDER, limit=1)] == [ids[0]]
    assert await store.list_sim_submissions(owner.sid, from_=OTHER_SENDER) == []

    assert [r.id for r in await store.pending_sim_receipts()] == [ids[1], ids[3], ids[0]]
    await store.sim_receipt_sent(ids[1])
    assert [r.id for r in await store.pending_sim_receipts()] == [ids[3], ids[0]]

    assert await store.clear_sim_submissions(owner.sid) == 3
    assert await store.list_sim_submissions(owner.sid) == []
    assert [r.id for r in await store.list_sim_submissions(other.sid)] == [ids[3]]


# -- inbound ------------------------------------------------------------------------------------------


def inbound(account_sid: str, body: str = "hi", handset: str = HANDSET) -> Message:
    return message(account_sid, from_=handset, to=SENDER, status=MessageStatus.RECEIVED,
                   direction=Direction.INBOUND, body=body)  # fmt: skip


async def test_receive_message_with_webhook_job_and_opt_outs(store: FullStore) -> None:
    owner = await main_account(store)
    woken: list[int] = []
    store.add_inbound_listener(lambda: woken.append(1))

    quiet = await store.receive_message(inbound(owner.sid), None, webhook=False)
    assert quiet.seq > 0 and woken == []
    stop = await store.receive_message(inbound(owner.sid, "STOP"), OptChange.OUT, webhook=True)
    assert woken == [1]
    assert await store.get_message_by_sid(stop.sid) == stop
    assert await store.is_opted_out(SENDER, HANDSET)
    assert not await store.is_opted_out(HANDSET, SENDER)
    await store.receive_message(inbound(owner.sid, "STOP"), OptChange.OUT, webhook=False)  # twice is fine
    assert await store.is_opted_out(SENDER, HANDSET)

    now = stop.date_created
    jobs = await store.claim_inbound(now, 10, now + 1_000_000)
    assert [(m.sid, m.body) for _, m in jobs] == [(stop.sid, "STOP")]
    assert await store.claim_inbound(now, 10, now + 1_000_000) == []  # leased
    back = await store.claim_inbound(now + 1_000_000, 10, now + 2_000_000)  # the lease lapsed
    assert [job for job, _ in back] == [jobs[0][0]]
    await store.inbound_finished(jobs[0][0], tick())
    assert await store.claim_inbound(now + 10_000_000, 10, now + 20_000_000) == []

    start = await store.receive_message(inbound(owner.sid, "START"), OptChange.IN, webhook=True)
    assert not await store.is_opted_out(SENDER, HANDSET)
    later = await store.claim_inbound(start.date_created, 10, start.date_created + 1)
    assert [m.sid for _, m in later] == [start.sid]


# -- carrier connectors: part ids and receipts --------------------------------------------------------


async def test_carrier_parts_and_receipts(store: FullStore) -> None:
    sid, other = new_sid(SidPrefix.SMS_MESSAGE), new_sid(SidPrefix.SMS_MESSAGE)
    await store.record_parts("smpp", sid, ["a1", "a2", "a3"], tick())
    await store.record_parts("smpp", other, ["b1"], tick())
    assert await store.part_receipt("smpp", ["zz"], True, None) is None
    assert await store.part_receipt("other-carrier", ["a1"], True, None) is None

    first = await store.part_receipt("smpp", ["00a1", "a1"], True, None)  # any of the id's forms
    assert first is not None and (first.message_sid, first.delivered, first.error_code) == (sid, None, None)
    again = await store.part_receipt("smpp", ["a1"], False, 30)  # a part's first final state stands
    assert again is not None and again.delivered is None
    await store.part_receipt("smpp", ["a2"], True, None)
    done = await store.part_receipt("smpp", ["a3"], True, None)
    assert done is not None and (done.delivered, done.error_code) == (True, None)

    failed = await store.part_receipt("smpp", ["b1"], False, 34)
    assert failed is not None and (failed.message_sid, failed.delivered, failed.error_code) == (other, False, 34)
    # An id the SMSC hands out again belongs to the newest message, with its state forgotten.
    newer = new_sid(SidPrefix.SMS_MESSAGE)
    await store.record_parts("smpp", newer, ["b1"], tick())
    fresh = await store.part_receipt("smpp", ["b1"], True, None)
    assert fresh is not None and (fresh.message_sid, fresh.delivered) == (newer, True)
    await store.record_parts("smpp", new_sid(SidPrefix.SMS_MESSAGE), [], tick())  # nothing to record


# -- PostgreSQL: several processes on one database ----------------------------------------------------


async def _two_stores(url: str) -> tuple[PostgresStore, PostgresStore]:
    a, b = PostgresStore(url, max_pool=4, max_batch=64), PostgresStore(url, max_pool=4, max_batch=64)
    await asyncio.gather(a.open(), b.open())  # migrations under the advisory lock: both start
    return a, b


async def test_postgres_concurrent_claims_never_take_the_same_message(pg_url: str) -> None:
    a, b = await _two_stores(pg_url)
    try:
        owner = account()
        await a.add_account(owner)
        total = 600
        await asyncio.gather(*(a.enqueue_message(message(owner.sid), None) for _ in range(total)))
        await leased(a, owner="shared")  # both "processes" act for one lease holder, to race the claims

        async def claimer(store: PostgresStore, limit: int) -> list[str]:
            got: list[str] = []
            while True:
                batch = await store.claim_queued(SENDER, limit, tick(), "shared")
                if not batch:
                    return got
                got += [m.sid for m in batch]

        results = await asyncio.gather(*(claimer(s, 1 + i % 7) for i, s in enumerate([a, b] * 12)))
        claimed = [sid for got in results for sid in got]
        assert len(claimed) == total and len(set(claimed)) == total
        assert sum(1 for got, s in zip(results, [a, b] * 12, strict=True) if s is b and got) > 0

        # The callback outbox and the inbound jobs: the same, with SKIP LOCKED and no lease holder.
        now = tick()
        transitions = [
            Transition(sid, frozenset({"sending"}), {"status": "sent"},
                       NewCallback(owner.sid, sid, "https://example.com/s", "POST", (), sid))
            for sid in claimed[:200]
        ]  # fmt: skip
        assert all(await a.apply_transitions(transitions, now))
        for _ in range(100):
            await b.receive_message(inbound(owner.sid), None, webhook=True)
        later = tick()

        async def outbox(store: PostgresStore) -> list[int]:
            got: list[int] = []
            while batch := await store.claim_callbacks(later, 3, later + 60_000_000):
                got += [c.id for c in batch]
            return got

        async def jobs(store: PostgresStore) -> list[int]:
            got: list[int] = []
            while batch := await store.claim_inbound(later, 3, later + 60_000_000):
                got += [job for job, _ in batch]
            return got

        callbacks = [i for got in await asyncio.gather(*(outbox(s) for s in [a, b] * 6)) for i in got]
        assert len(callbacks) == 200 and len(set(callbacks)) == 200
        job_ids = [i for got in await asyncio.gather(*(jobs(s) for s in [a, b] * 6)) for i in got]
        assert len(job_ids) == 100 and len(set(job_ids)) == 100
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_postgres_notify_wakes_the_other_store(pg_url: str) -> None:
    a, b = await _two_stores(pg_url)
    try:
        owner = account()
        await a.add_account(owner)
        seen_a: list[str] = []
        seen_b: list[str] = []
        woke_b = asyncio.Event()
        inbound_b = asyncio.Event()
        a.add_queue_listener(seen_a.append)
        b.add_queue_listener(lambda sender: (seen_b.append(sender), woke_b.set()))
        b.add_inbound_listener(inbound_b.set)

        await a.enqueue_message(message(owner.sid), None)
        await asyncio.wait_for(woke_b.wait(), 10)
        assert seen_b == [SENDER]
        await a.receive_message(inbound(owner.sid), None, webhook=True)
        await asyncio.wait_for(inbound_b.wait(), 10)
        # Store A heard its own NOTIFY too, and skipped it: its listener ran once, right after the commit.
        await asyncio.sleep(0.2)
        assert seen_a == [SENDER]
        # A refused enqueue notifies nobody.
        with pytest.raises(QueueFull):
            await a.enqueue_message(message(owner.sid), queue_cap_segments=1)
        await asyncio.sleep(0.2)
        assert seen_b == [SENDER]
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_postgres_reopen_applies_no_migration_twice(pg_url: str) -> None:
    from kittiwake.store.postgres import apply_migrations

    first = await apply_migrations(pg_url)
    assert first == sorted(first) and len(first) >= 3
    assert await apply_migrations(pg_url) == []
    store = PostgresStore(pg_url)
    await store.open()
    await store.close()


async def test_a_burst_of_concurrent_creates_shares_commits(store: FullStore) -> None:
    owner = await main_account(store)
    writer = store.writer  # type: ignore[attr-defined]
    batches, operations = writer.batches, writer.operations
    created = await asyncio.gather(*(store.enqueue_message(message(owner.sid), None) for _ in range(200)))
    assert len({m.seq for m in created}) == 200
    assert writer.operations - operations == 200
    assert writer.batches - batches < 100  # callers waiting together committed together


async def test_postgres_listen_connection_recovers_and_announces_missed_work(pg_url: str) -> None:
    a, b = await _two_stores(pg_url)
    try:
        owner = account()
        await a.add_account(owner)
        seen_b: list[str] = []
        b.add_queue_listener(seen_b.append)
        await a.enqueue_message(message(owner.sid), None)
        listen_pid = b._listen_conn.info.backend_pid  # type: ignore[union-attr]
        await a._query("SELECT pg_terminate_backend(%s)", (listen_pid,))
        # Whatever was announced while B was not listening is announced again once it is back...
        for _ in range(200):
            if (
                b._listen_conn is not None
                and b._listen_conn.info.backend_pid != listen_pid
                and seen_b.count(SENDER) >= 2
            ):
                break
            await asyncio.sleep(0.05)
        assert seen_b.count(SENDER) >= 2
        # ...and new notifications arrive again.
        seen_b.clear()
        await a.enqueue_message(message(owner.sid, from_=OTHER_SENDER), None)
        for _ in range(200):
            if OTHER_SENDER in seen_b:
                break
            await asyncio.sleep(0.05)
        assert OTHER_SENDER in seen_b
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_postgres_concurrent_part_receipts_finish_the_message_once(pg_url: str) -> None:
    a, b = await _two_stores(pg_url)
    try:
        for _ in range(20):
            sid = new_sid(SidPrefix.SMS_MESSAGE)
            await a.record_parts("smpp", sid, [f"{sid}-1", f"{sid}-2"], tick())
            outcomes = await asyncio.gather(
                a.part_receipt("smpp", [f"{sid}-1"], True, None), b.part_receipt("smpp", [f"{sid}-2"], True, None)
            )
            assert sorted(o.delivered is True for o in outcomes if o is not None) == [False, True]
    finally:
        await asyncio.gather(a.close(), b.close())
