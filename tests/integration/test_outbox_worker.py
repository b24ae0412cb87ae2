"""The outbox delivery worker against real HTTP receivers on 127.0.0.1:0.

The store is an in-memory fake of :class:`OutboxStore` (the SQLite one has its own contract tests); the
receivers are real aiohttp servers that check every request with the official twilio ``RequestValidator``.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from kittiwake.clock import SystemClock
from kittiwake.models import Callback
from kittiwake.webhooks import OutboxSettings, OutboxWorker
from kittiwake.webhooks.outbox import backoff_seconds, build_request, classify, safe_for_log, wire_url

ACCOUNT = "AC" + "1" * 32
TOKEN = "f" * 32
PARAMS = (
    ("MessageSid", "SM" + "a" * 32),
    ("SmsSid", "SM" + "a" * 32),
    ("MessageStatus", "delivered"),
    ("SmsStatus", "delivered"),
    ("AccountSid", ACCOUNT),
    ("From", "+14158141829"),
    ("To", "+14159352345"),
    ("ApiVersion", "2010-04-01"),
    ("Body", "héllo wörld & more"),
)
FAST: dict[str, Any] = {
    "timeout_seconds": 2.0,
    "backoff_base_seconds": 0.02,
    "backoff_cap_seconds": 0.1,
    "poll_interval_seconds": 0.05,
    "shutdown_grace_seconds": 1.0,
}
WAIT = 5.0  # upper bound for any condition a test waits on (never an assertion about speed)


# -- the fake store ---------------------------------------------------------------------------------------


@dataclass
class Row:
    callback: Callback
    state: str = "pending"  # pending | delivered | dead
    status: int | None = None
    retries: list[tuple[int, int, int, str]] = field(default_factory=list)  # (attempts, next_at, at, error)
    errors: list[str] = field(default_factory=list)


class FakeOutbox:
    """An in-memory OutboxStore with the documented semantics: due rows oldest first, leased on claim."""

    def __init__(self, clock: SystemClock) -> None:
        self.clock = clock
        self.rows: dict[int, Row] = {}
        self.tokens = {ACCOUNT: TOKEN}
        self.claims = 0
        self._ids = count(1)
        self._changed = asyncio.Condition()

    def add(
        self,
        url: str,
        method: str = "POST",
        params: Sequence[tuple[str, str]] = PARAMS,
        account_sid: str = ACCOUNT,
        created_at: int | None = None,
    ) -> int:
        now = self.clock.now_micros()
        callback_id = next(self._ids)
        callback = Callback(
            callback_id, account_sid, url, method, tuple(params), f"idem-{callback_id}", 0, created_at or now, now
        )
        self.rows[callback_id] = Row(callback)
        return callback_id

    async def claim_callbacks(self, now: int, limit: int, lease_until: int) -> list[Callback]:
        due = [r for r in self.rows.values() if r.state == "pending" and r.callback.next_attempt_at <= now]
        due.sort(key=lambda r: (r.callback.next_attempt_at, r.callback.id))
        claimed = []
        for row in due[:limit]:
            claimed.append(row.callback)
            row.callback = replace(row.callback, next_attempt_at=lease_until)
        self.claims += 1
        await self._notify()
        return claimed

    async def callback_delivered(self, callback_id: int, now: int, status: int) -> None:
        row = self.rows[callback_id]
        row.state, row.status = "delivered", status
        await self._notify()

    async def callback_retry(self, callback_id: int, attempts: int, next_attempt_at: int, error: str) -> None:
        row = self.rows[callback_id]
        row.callback = replace(row.callback, attempts=attempts, next_attempt_at=next_attempt_at)
        row.retries.append((attempts, next_attempt_at, self.clock.now_micros(), error))
        row.errors.append(error)
        await self._notify()

    async def callback_dead(self, callback_id: int, now: int, error: str) -> None:
        row = self.rows[callback_id]
        row.state = "dead"
        row.errors.append(error)
        await self._notify()

    async def auth_token(self, account_sid: str) -> str | None:
        return self.tokens.get(account_sid)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), WAIT)

    async def wait_state(self, callback_id: int, state: str) -> Row:
        await self.wait_for(lambda: self.rows[callback_id].state == state)
        return self.rows[callback_id]


# -- the receiver -----------------------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    url: str
    headers: dict[str, str]
    params: list[tuple[str, str]]
    query: list[tuple[str, str]]
    valid: bool
    at: int


class Receiver:
    """An app's webhook endpoint. ``script`` lists what to do per request: a status, or "hang"."""

    def __init__(self, clock: SystemClock, arrived: asyncio.Condition) -> None:
        self.clock = clock
        self.script: list[int | str] = []
        self.seen: list[Seen] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.release = asyncio.Event()  # ends hung requests at teardown
        self.concurrent = 0
        self.max_concurrent = 0
        self.url = ""
        self._arrived = arrived  # shared by a test's receivers, so one wait can span all of them

    async def handle(self, request: web.Request) -> web.Response:
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            form = await request.post() if request.method == "POST" else MultiDict[str]()
            url = str(request.url)
            valid = RequestValidator(TOKEN).validate(url, form, request.headers.get("X-Twilio-Signature", ""))
            params = [(k, str(v)) for k, v in form.items()]
            query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
            self.seen.append(Seen(request.method, url, dict(request.headers), params, query, valid, self._now()))
            async with self._arrived:
                self._arrived.notify_all()
            action = self.script.pop(0) if self.script else 200
            if action == "hang":
                await asyncio.wait_for(self.release.wait(), WAIT)
                action = 200
            await self.gate.wait()
            return web.Response(status=int(action), text="ok")
        finally:
            self.concurrent -= 1

    def _now(self) -> int:
        return self.clock.now_micros()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(predicate), WAIT)


async def start_receiver(clock: SystemClock, arrived: asyncio.Condition) -> tuple[Receiver, web.AppRunner]:
    receiver = Receiver(clock, arrived)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}"
    return receiver, runner


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> SystemClock:
    return SystemClock()


@pytest.fixture
def store(clock: SystemClock) -> FakeOutbox:
    return FakeOutbox(clock)


@pytest.fixture
async def receivers(clock: SystemClock) -> AsyncIterator[Callable[[], Awaitable[Receiver]]]:
    started: list[tuple[Receiver, web.AppRunner]] = []
    arrived = asyncio.Condition()

    async def make() -> Receiver:
        started.append(await start_receiver(clock, arrived))
        return started[-1][0]

    yield make
    for receiver, runner in started:
        receiver.release.set()
        receiver.gate.set()
        await runner.cleanup()


@pytest.fixture
async def receiver(receivers: Callable[[], Awaitable[Receiver]]) -> Receiver:
    return await receivers()


@pytest.fixture
async def start_worker(clock: SystemClock) -> AsyncIterator[Callable[..., OutboxWorker]]:
    running: list[tuple[OutboxWorker, asyncio.Task[None]]] = []

    def start(store: FakeOutbox, **overrides: Any) -> OutboxWorker:
        settings = OutboxSettings(**(FAST | overrides))
        worker = OutboxWorker(store, clock, settings, rng=random.Random(7))
        running.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, task in running:
        await worker.aclose()
        await task


# -- delivery ---------------------------------------------------------------------------------------------


async def test_post_delivered_once_signed_and_shaped_like_twilio(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    callback_id = store.add(receiver.url + "/status?tenant=7&x=%2B1")
    worker = start_worker(store)
    row = await store.wait_state(callback_id, "delivered")

    assert row.status == 200
    assert len(receiver.seen) == 1
    seen = receiver.seen[0]
    assert seen.valid
    assert seen.method == "POST"
    assert seen.url == receiver.url + "/status?tenant=7&x=%2B1"
    assert seen.params == list(PARAMS)
    assert seen.headers["I-Twilio-Idempotency-Token"] == "idem-1"
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded; charset=utf-8"
    assert seen.headers["User-Agent"] == "TwilioProxy/1.1"
    assert (worker.delivered, worker.retried, worker.dead, worker.in_flight) == (1, 0, 0, 0)


@pytest.mark.parametrize("failure", [500, 503, 429])
async def test_retryable_status_is_retried_with_backoff_then_delivered(
    failure: int, store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    receiver.script = [failure, 200]
    callback_id = store.add(receiver.url + "/status")
    worker = start_worker(store)
    row = await store.wait_state(callback_id, "delivered")

    assert [s.valid for s in receiver.seen] == [True, True]
    assert {s.headers["I-Twilio-Idempotency-Token"] for s in receiver.seen} == {"idem-1"}
    assert row.callback.attempts == 1
    ((attempts, next_at, recorded_at, error),) = row.retries
    assert (attempts, error) == (1, f"HTTP {failure}")
    # Backoff honoured: the retry went out no earlier than scheduled, scheduled within the first ceiling.
    assert receiver.seen[1].at >= next_at
    assert next_at - recorded_at <= FAST["backoff_cap_seconds"] * 1_000_000
    assert (worker.delivered, worker.retried) == (1, 1)


async def test_timeout_is_retried(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    receiver.script = ["hang", 200]
    callback_id = store.add(receiver.url + "/slow")
    worker = start_worker(store, timeout_seconds=0.2)
    row = await store.wait_state(callback_id, "delivered")

    assert len(receiver.seen) == 2
    assert row.retries[0][0] == 1
    assert row.retries[0][3].startswith("timed out")
    assert worker.retried == 1


async def test_connection_refused_is_retried(store: FakeOutbox, start_worker: Callable[..., OutboxWorker]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    callback_id = store.add(f"http://127.0.0.1:{port}/gone")
    worker = start_worker(store)
    await store.wait_for(lambda: len(store.rows[callback_id].retries) >= 2)

    row = store.rows[callback_id]
    assert row.state == "pending"
    assert [r[0] for r in row.retries[:2]] == [1, 2]
    assert "Connect" in row.retries[0][3]
    assert worker.delivered == 0


async def test_given_up_after_give_up_time(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker], clock: SystemClock
) -> None:
    receiver.script = [500] * 1000
    old = store.add(receiver.url + "/old", created_at=clock.now_micros() - 2 * 86_400_000_000)
    recent = store.add(receiver.url + "/recent")
    worker = start_worker(store, give_up_after_seconds=0.3)
    old_row = await store.wait_state(old, "dead")
    recent_row = await store.wait_state(recent, "dead")

    assert old_row.retries == [] and old_row.errors == ["HTTP 500"]
    assert len(recent_row.retries) >= 1
    # No retry was ever scheduled past the give-up time.
    deadline = recent_row.callback.created_at + 300_000
    assert all(next_at <= deadline for _, next_at, _, _ in recent_row.retries)
    assert worker.dead == 2


async def test_client_error_is_final_and_not_retried(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    receiver.script = [404]
    callback_id = store.add(receiver.url + "/missing")
    worker = start_worker(store)
    row = await store.wait_state(callback_id, "delivered")

    assert row.status == 404 and row.retries == []
    assert len(receiver.seen) == 1
    assert (worker.delivered, worker.rejected, worker.retried) == (1, 1, 0)


async def test_deleted_account_is_given_up_without_a_request(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    callback_id = store.add(receiver.url + "/status", account_sid="AC" + "9" * 32)
    start_worker(store)
    row = await store.wait_state(callback_id, "dead")

    assert row.errors == ["account no longer exists"]
    assert receiver.seen == []


async def test_get_puts_params_in_the_query_string_and_signs_that_url(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    callback_id = store.add(receiver.url + "/cb.php?foo=1&bar=2", method="GET")
    start_worker(store)
    await store.wait_state(callback_id, "delivered")

    (seen,) = receiver.seen
    assert seen.method == "GET" and seen.valid
    assert seen.params == []
    assert seen.query == [("foo", "1"), ("bar", "2"), *PARAMS]
    assert "Content-Type" not in seen.headers


# -- concurrency and lifecycle ----------------------------------------------------------------------------


async def test_per_host_limit_holds_and_other_hosts_keep_flowing(
    store: FakeOutbox, receivers: Callable[[], Awaitable[Receiver]], start_worker: Callable[..., OutboxWorker]
) -> None:
    slow, fast = await receivers(), await receivers()
    slow.gate.clear()
    slow_ids = [store.add(slow.url + f"/s{i}") for i in range(4)]
    fast_id = store.add(fast.url + "/f")
    start_worker(store, per_host_concurrency=2, max_concurrency=16)

    await slow.wait_for(lambda: slow.concurrent == 2)
    await store.wait_state(fast_id, "delivered")  # the slow host took none of the fast host's slots
    await asyncio.sleep(0.05)  # room for a third request to the slow host, were the limit broken
    assert slow.concurrent == 2

    slow.gate.set()
    for callback_id in slow_ids:
        await store.wait_state(callback_id, "delivered")
    assert slow.max_concurrent == 2


async def test_global_limit_holds_across_hosts(
    store: FakeOutbox, receivers: Callable[[], Awaitable[Receiver]], start_worker: Callable[..., OutboxWorker]
) -> None:
    hosts = [await receivers(), await receivers()]
    for host in hosts:
        host.gate.clear()
    ids = [store.add(host.url + f"/{i}") for i in range(2) for host in hosts]
    start_worker(store, max_concurrency=3, per_host_concurrency=8)

    await hosts[0].wait_for(lambda: hosts[0].concurrent + hosts[1].concurrent == 3)
    await asyncio.sleep(0.05)  # room for a fourth request, were the limit broken
    assert hosts[0].concurrent + hosts[1].concurrent == 3

    for host in hosts:
        host.gate.set()
    for callback_id in ids:
        await store.wait_state(callback_id, "delivered")


async def test_saturated_host_rows_are_sent_back_unattempted(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    receiver.gate.clear()
    ids = [store.add(receiver.url + f"/s{i}") for i in range(4)]
    worker = start_worker(store, per_host_concurrency=1, timeout_seconds=0.5)

    # One in flight and one waiting are held; the rest go back with their attempts unchanged.
    await store.wait_for(lambda: worker.deferred == 2)
    deferred = [store.rows[i] for i in ids if store.rows[i].retries]
    assert [(r.retries[0][0], r.retries[0][3]) for r in deferred] == [(0, "deferred: host busy")] * 2
    await receiver.wait_for(lambda: receiver.concurrent == 1)
    await asyncio.sleep(0.05)  # room for a second request to the host, were the limit broken

    receiver.gate.set()
    for callback_id in ids:
        await store.wait_state(callback_id, "delivered")
    assert receiver.max_concurrent == 1
    assert {urlsplit(s.url).path for s in receiver.seen} == {"/s0", "/s1", "/s2", "/s3"}


async def test_wake_claims_without_waiting_for_the_poll(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    worker = start_worker(store, poll_interval_seconds=60.0)
    await store.wait_for(lambda: store.claims == 1)  # its first claim found nothing: now it waits for the poll
    callback_id = store.add(receiver.url + "/status")
    worker.wake()
    await store.wait_state(callback_id, "delivered")


async def test_full_window_refills_as_deliveries_finish_without_waiting_for_the_poll(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    receiver.gate.clear()
    ids = [store.add(receiver.url + f"/{i}") for i in range(6)]
    worker = start_worker(store, max_concurrency=1, poll_interval_seconds=60.0)  # holds at most 2 rows
    await receiver.wait_for(lambda: receiver.concurrent == 1)
    worker.wake()  # a wake while the window is full must not lose track of the rows still due
    await asyncio.sleep(0.01)
    receiver.gate.set()
    for callback_id in ids:
        await store.wait_state(callback_id, "delivered")
    assert worker.delivered == 6


async def test_aclose_lets_in_flight_requests_finish(store: FakeOutbox, receiver: Receiver, clock: SystemClock) -> None:
    receiver.gate.clear()
    callback_id = store.add(receiver.url + "/status")
    worker = OutboxWorker(store, clock, OutboxSettings(**FAST))
    task = asyncio.create_task(worker.run())
    await receiver.wait_for(lambda: receiver.concurrent == 1)

    closing = asyncio.create_task(worker.aclose())
    await asyncio.sleep(0)
    receiver.gate.set()
    await closing
    await task
    assert store.rows[callback_id].state == "delivered"


async def test_aclose_after_grace_leaves_the_row_leased(
    store: FakeOutbox, receiver: Receiver, clock: SystemClock
) -> None:
    receiver.gate.clear()
    callback_id = store.add(receiver.url + "/status")
    worker = OutboxWorker(store, clock, OutboxSettings(**(FAST | {"shutdown_grace_seconds": 0.05})))
    task = asyncio.create_task(worker.run())
    await receiver.wait_for(lambda: receiver.concurrent == 1)

    await worker.aclose()
    await task
    row = store.rows[callback_id]
    assert row.state == "pending" and row.retries == []
    assert row.callback.next_attempt_at > clock.now_micros()  # comes back after the lease
    assert worker.in_flight == 0


async def test_store_failure_does_not_stop_the_worker(
    store: FakeOutbox, receiver: Receiver, start_worker: Callable[..., OutboxWorker]
) -> None:
    real_claim = store.claim_callbacks
    failures = [RuntimeError("database is locked")]

    async def flaky_claim(now: int, limit: int, lease_until: int) -> list[Callback]:
        if failures:
            raise failures.pop()
        return await real_claim(now, limit, lease_until)

    store.claim_callbacks = flaky_claim  # type: ignore[method-assign]
    callback_id = store.add(receiver.url + "/status")
    start_worker(store)
    await store.wait_state(callback_id, "delivered")
    assert failures == []


# -- pure parts -------------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_a_capped_exponential_ceiling() -> None:
    settings = OutboxSettings(backoff_base_seconds=1.0, backoff_cap_seconds=600.0)
    rng = random.Random(1)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (5, 16.0), (10, 512.0), (11, 600.0), (40, 600.0)]:
        delays = [backoff_seconds(settings, attempts, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(200, False), (204, False), (302, False), (400, False), (404, False), (429, True), (500, True), (503, True)],
)
def test_classify(status: int, retryable: bool) -> None:
    assert classify(status).retryable is retryable


def test_request_shape_and_signature_never_in_logged_url() -> None:
    callback = Callback(1, ACCOUNT, "https://u:secret@h.example/p?k=secret#f", "POST", PARAMS, "idem", 0, 0, 0)
    method, url, body, headers = build_request(callback, TOKEN)
    assert (method, url) == ("POST", "https://u:secret@h.example/p?k=secret")
    assert body is not None and b"Body=h%C3%A9llo+w%C3%B6rld+%26+more" in body
    assert RequestValidator(TOKEN).validate(url, dict(PARAMS), headers["X-Twilio-Signature"])
    assert safe_for_log(callback.url) == "https://h.example/p"


def test_wire_url_keeps_valid_urls_and_encodes_the_rest() -> None:
    assert wire_url("https://Example.com:443/a?b=%2b1") == "https://Example.com:443/a?b=%2b1"
    assert wire_url("http://example.com/a b?x=é") == "http://example.com/a%20b?x=%C3%A9"
