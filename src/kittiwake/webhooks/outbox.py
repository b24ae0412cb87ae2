"""The delivery worker of the durable callback outbox: claim due rows, sign, send, record the outcome.

Owns the HTTP side of webhooks (one aiohttp ``ClientSession`` per worker), the retry policy (exponential
backoff with full jitter, give up a fixed time after the row was created) and the concurrency limits (a
global cap plus a cap per app host, so one slow host cannot take every slot). The rows themselves, and the
lease that makes delivery at-least-once, belong to the store behind :class:`OutboxStore`; the dispatcher only
inserts rows and calls :meth:`OutboxWorker.wake`, so nothing upstream ever waits on an app's server.

Request shape (twilio-api.md §3.6, §4, §6): POST ``application/x-www-form-urlencoded`` or GET with the
parameters in the query string, ``X-Twilio-Signature`` over the exact URL requested (plus the parameters for
POST) with the account's current auth token, ``I-Twilio-Idempotency-Token`` constant across retries, and
Twilio's User-Agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from kittiwake.clock import Clock
from kittiwake.models import Callback
from kittiwake.webhooks.signing import SIGNATURE_HEADER, signature, url_with_query

log = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
_MICROS = 1_000_000
# Idle per-host entries kept for reuse; busy ones are never evicted (their number is bounded by the window).
_HOST_TABLE_SIZE = 1024
# Enough of a response body to keep the connection reusable; the body itself is ignored (§3.6).
_BODY_DRAIN_LIMIT = 64 * 1024
# Characters that may appear unescaped in a URI (RFC 3986 §2); a URL made only of them is sent as configured.
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")


class OutboxStore(Protocol):
    """What the worker needs from persistence; each coroutine returns only after its transaction commits."""

    async def claim_callbacks(self, now: int, limit: int, lease_until: int) -> list[Callback]:
        """Due rows (``next_attempt_at <= now``, not finished), oldest due first, at most ``limit``; moves
        their ``next_attempt_at`` to ``lease_until`` in the same transaction, so a crashed worker's rows
        come back once the lease runs out."""
        ...

    async def callback_delivered(self, callback_id: int, now: int, status: int) -> None: ...

    async def callback_retry(self, callback_id: int, attempts: int, next_attempt_at: int, error: str) -> None: ...

    async def callback_dead(self, callback_id: int, now: int, error: str) -> None:
        """Given up: never tried again."""
        ...

    async def auth_token(self, account_sid: str) -> str | None:
        """The account's current auth token, or None if the account no longer exists."""
        ...


@dataclass(frozen=True)
class OutboxSettings:
    timeout_seconds: float = 15.0  # Twilio's default webhook timeout (twilio-api.md §4.1)
    give_up_after_seconds: float = 86400.0  # measured from the row's created_at
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 600.0
    max_concurrency: int = 64
    per_host_concurrency: int = 8
    poll_interval_seconds: float = 1.0
    lease_seconds: float | None = None  # None: timeout_seconds + 15
    batch: int = 100
    user_agent: str = "TwilioProxy/1.1"  # what Twilio sends
    shutdown_grace_seconds: float = 5.0  # how long stop() lets in-flight requests finish

    @property
    def lease(self) -> float:
        return self.timeout_seconds + 15.0 if self.lease_seconds is None else self.lease_seconds


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: an HTTP status, or an error that is worth retrying (or not)."""

    status: int | None
    error: str
    retryable: bool


@dataclass
class _Host:
    slots: asyncio.Semaphore
    held: int = 0  # rows for this host that the worker holds: in flight or waiting for a slot
    # Recent seconds per attempt (moving average): how fast the host drains the rows held for it.
    latency: float = 0.5
    answered: int = 0


@dataclass(frozen=True, slots=True)
class _Job:
    callback: Callback
    start_by: float  # Clock.monotonic() after which the row must go back rather than wait for a slot
    host_entry: _Host = field(repr=False)
    defer: bool = False  # its host is saturated: send it back unattempted


def backoff_seconds(settings: OutboxSettings, attempts: int, rng: random.Random) -> float:
    """Delay before attempt ``attempts + 1``: full jitter over an exponential ceiling, capped.

    ("Exponential Backoff And Jitter", AWS Architecture Blog: full jitter spreads a burst of failures best.)
    """
    ceiling = min(settings.backoff_cap_seconds, settings.backoff_base_seconds * 2.0 ** max(attempts - 1, 0))
    return rng.uniform(0.0, ceiling)


def classify(status: int) -> Outcome:
    """2xx/3xx delivered; 429 and 5xx retried; any other 4xx finished without retry, as Twilio does."""
    if 200 <= status < 400:
        return Outcome(status, "", retryable=False)
    if status == 429 or status >= 500 or status < 200:
        return Outcome(status, f"HTTP {status}", retryable=True)
    return Outcome(status, f"HTTP {status}", retryable=False)


def wire_url(url: str) -> str:
    """The URL as it goes on the wire, which is the one to sign: as configured when it is a valid URI,
    percent-encoded by yarl otherwise; never with a fragment (it is not sent)."""
    url = url.split("#", 1)[0]
    return url if _URI_CHARS.fullmatch(url) else str(URL(url))


def safe_for_log(url: str) -> str:
    """scheme://host[:port]/path only: a URL may carry credentials in its userinfo or its query."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return "<invalid URL>"


class OutboxWorker:
    """Delivers due callbacks until stopped. Counters: ``delivered`` (any final HTTP answer, including a
    non-retryable 4xx, which is also counted in ``rejected``), ``retried``, ``deferred`` (sent back unattempted
    because their host was saturated), ``dead``, and ``in_flight`` (requests on the wire now)."""

    def __init__(
        self, store: OutboxStore, clock: Clock, settings: OutboxSettings, *, rng: random.Random | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._finished = asyncio.Event()
        self._running = False
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        self._held: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._more_due = False
        self.delivered = 0
        self.rejected = 0
        self.retried = 0
        self.deferred = 0
        self.dead = 0
        self.in_flight = 0

    # -- lifecycle -------------------------------------------------------------------------------------

    def wake(self) -> None:
        """New rows were enqueued: claim now rather than at the next poll. Call from the worker's loop."""
        self._wake.set()

    def stop(self) -> None:
        """Stop claiming; :meth:`run` then lets in-flight requests finish (up to the grace period) and returns."""
        self._stopping = True
        self._wake.set()

    async def aclose(self) -> None:
        """Stop and wait until :meth:`run` has returned and the HTTP session is closed."""
        self.stop()
        if self._running:
            await self._finished.wait()

    async def run(self) -> None:
        self._running = True
        self._finished.clear()
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_seconds)
        # limit=0: the semaphores are the limits; the connector's own pool limit would only queue silently.
        connector = aiohttp.TCPConnector(limit=0)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": self._settings.user_agent}
        )
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    await self._claim_once()
                    if not self._more_due or self._window_room() == 0:
                        await self._idle()
                except Exception:  # the loop must outlive any one bad iteration
                    log.exception("outbox loop iteration failed")
                    await self._idle()
        finally:
            await self._drain()
            await self._session.close()
            self._session = None
            self._running = False
            self._finished.set()

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.poll_interval_seconds):
                await self._wake.wait()

    async def _drain(self) -> None:
        """Give in-flight deliveries the grace period, then cancel them: their rows come back after the lease."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self._settings.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    # -- claiming --------------------------------------------------------------------------------------

    def _window_room(self) -> int:
        # Rows held (in flight or waiting for a slot) stay within two rounds of the global cap, so every
        # held row gets a slot well inside its lease; anything that waits too long goes back (see _deliver).
        return max(0, 2 * self._settings.max_concurrency - len(self._held))

    async def _claim_once(self) -> None:
        limit = min(self._settings.batch, self._window_room())
        if limit <= 0:
            self._more_due = True  # the window is full: the next finished delivery wakes the loop
            return
        self._more_due = False
        now = self._clock.now_micros()
        lease_until = now + round(self._settings.lease * _MICROS)
        try:
            rows = await self._store.claim_callbacks(now, limit, lease_until)
        except Exception:
            log.exception("claiming due callbacks failed; retrying at the next poll")
            return
        self._more_due = len(rows) >= limit
        start_by = self._clock.monotonic() + max(0.0, self._settings.lease - self._settings.timeout_seconds)
        for row in rows:
            if row.id not in self._held:  # still ours from before a lease ran out: do not send it twice
                self._start(row, start_by)

    def _start(self, row: Callback, start_by: float) -> None:
        entry = self._host(_host_key(row.url))
        # Hold no more rows for a host than it can start before their leases run short, judged by how fast
        # it has been answering: two rounds of its concurrency until it has shown more. The rest go straight
        # back (see _defer). A fast app then takes a burst at once; a slow one cannot fill the window.
        rounds = 2.0
        if entry.answered:
            rounds = max(2.0, (start_by - self._clock.monotonic()) / max(entry.latency, 0.001))
        defer = entry.held >= self._settings.per_host_concurrency * rounds
        job = _Job(row, start_by, entry, defer)
        self._held.add(row.id)
        if not defer:
            entry.held += 1
        task = asyncio.create_task(self._run_job(job), name=f"callback-{row.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _host(self, host: str) -> _Host:
        """The host's entry in a size-bounded LRU table; idle entries are evicted first-used-first."""
        entry = self._hosts.get(host)
        if entry is None:
            entry = _Host(asyncio.Semaphore(self._settings.per_host_concurrency))
            self._hosts[host] = entry
            self._evict_idle_hosts()
        else:
            self._hosts.move_to_end(host)
        return entry

    def _evict_idle_hosts(self) -> None:
        excess = len(self._hosts) - _HOST_TABLE_SIZE
        if excess <= 0:
            return
        idle = [key for key, entry in self._hosts.items() if entry.held == 0][:excess]
        for key in idle:
            del self._hosts[key]

    # -- one callback ----------------------------------------------------------------------------------

    async def _run_job(self, job: _Job) -> None:
        try:
            await self._deliver(job)
        except Exception:
            # A failed store write leaves the row leased: it comes back after the lease (at-least-once).
            log.exception("callback %d: recording the outcome failed", job.callback.id)
        finally:
            self._held.discard(job.callback.id)
            if not job.defer:
                job.host_entry.held -= 1
            if self._more_due:
                self._wake.set()

    async def _deliver(self, job: _Job) -> None:
        callback = job.callback
        if job.defer:
            await self._defer(callback)
            return
        try:
            async with asyncio.timeout(max(0.0, job.start_by - self._clock.monotonic())):
                await job.host_entry.slots.acquire()
                try:
                    await self._slots.acquire()
                except BaseException:
                    job.host_entry.slots.release()
                    raise
        except TimeoutError:
            await self._defer(callback)
            return
        try:
            await self._attempt(callback)
        finally:
            self._slots.release()
            job.host_entry.slots.release()

    async def _attempt(self, callback: Callback) -> None:
        token = await self._store.auth_token(callback.account_sid)
        if token is None:
            await self._give_up(callback, "account no longer exists")
            return
        self.in_flight += 1
        started = self._clock.monotonic()
        try:
            outcome = await self._send(callback, token)
        finally:
            self.in_flight -= 1
        entry = self._hosts.get(_host_key(callback.url))
        if entry is not None:
            entry.latency = 0.8 * entry.latency + 0.2 * (self._clock.monotonic() - started)
            entry.answered += 1
        await self._record(callback, outcome)

    async def _send(self, callback: Callback, token: str) -> Outcome:
        assert self._session is not None, "run() owns the session"
        try:
            method, url, data, headers = build_request(callback, token)
            async with self._session.request(
                method, URL(url, encoded=True), data=data, headers=headers, allow_redirects=False
            ) as response:
                await _drain_body(response)
                return classify(response.status)
        except TimeoutError:
            return Outcome(None, f"timed out after {self._settings.timeout_seconds:g} s", retryable=True)
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError, ValueError):
            return Outcome(None, "invalid URL", retryable=False)
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}", retryable=True)

    async def _record(self, callback: Callback, outcome: Outcome) -> None:
        now = self._clock.now_micros()
        where = safe_for_log(callback.url)
        if outcome.status is not None and not outcome.retryable:
            await self._store.callback_delivered(callback.id, now, outcome.status)
            self.delivered += 1
            if outcome.status >= 400:
                self.rejected += 1
                log.info("callback %d to %s answered %d; not retried", callback.id, where, outcome.status)
            return
        if not outcome.retryable:
            await self._give_up(callback, outcome.error)
            return
        deadline = callback.created_at + round(self._settings.give_up_after_seconds * _MICROS)
        if now >= deadline:
            await self._give_up(callback, outcome.error)
            return
        attempts = callback.attempts + 1
        delay = round(backoff_seconds(self._settings, attempts, self._rng) * _MICROS)
        # Never schedule past the deadline: the last try happens at it, and failing then gives up.
        next_at = min(now + delay, deadline)
        await self._store.callback_retry(callback.id, attempts, next_at, outcome.error)
        self.retried += 1
        log.info("callback %d to %s failed (%s); attempt %d retried", callback.id, where, outcome.error, attempts)

    async def _give_up(self, callback: Callback, error: str) -> None:
        await self._store.callback_dead(callback.id, self._clock.now_micros(), error)
        self.dead += 1
        log.warning("callback %d to %s given up: %s", callback.id, safe_for_log(callback.url), error)

    async def _defer(self, callback: Callback) -> None:
        """Send an unattempted row back (its host is saturated); attempts unchanged, due again once the host
        should have worked through what it holds now (its recent speed; at most one timeout)."""
        now = self._clock.now_micros()
        deadline = callback.created_at + round(self._settings.give_up_after_seconds * _MICROS)
        if now >= deadline:
            await self._give_up(callback, "host busy until the give-up time")
            return
        entry = self._hosts.get(_host_key(callback.url))
        drain = self._settings.timeout_seconds
        if entry is not None and entry.answered:
            rounds = entry.held / self._settings.per_host_concurrency + 1
            drain = min(drain, max(0.05, rounds * entry.latency))
        next_at = min(now + round(drain * _MICROS), deadline)
        await self._store.callback_retry(callback.id, callback.attempts, next_at, "deferred: host busy")
        self.deferred += 1


def build_request(callback: Callback, token: str) -> tuple[str, str, bytes | None, dict[str, str]]:
    """The exact URL, body and headers of one attempt. The signature covers the URL requested: for GET it
    carries the parameters and nothing is appended; for POST the form parameters are appended (§6). Any method
    other than GET is sent as POST, Twilio's default."""
    base = wire_url(callback.url)
    headers = {IDEMPOTENCY_HEADER: callback.idempotency_key}
    if callback.method.upper() == "GET":
        url = url_with_query(base, callback.params)
        headers[SIGNATURE_HEADER] = signature(token, url, ())
        return "GET", url, None, headers
    headers[SIGNATURE_HEADER] = signature(token, base, callback.params)
    headers["Content-Type"] = FORM_CONTENT_TYPE
    return "POST", base, urlencode(list(callback.params)).encode("utf-8"), headers


def _host_key(url: str) -> str:
    try:
        parsed = URL(wire_url(url), encoded=True)
        return f"{parsed.scheme}://{parsed.host}:{parsed.port}"
    except ValueError:
        return "<invalid>"


async def _drain_body(response: aiohttp.ClientResponse) -> None:
    """Read (and ignore) a small body so the connection can be reused; a large one just closes it."""
    read = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        read += len(chunk)
        if read > _BODY_DRAIN_LIMIT:
            break
