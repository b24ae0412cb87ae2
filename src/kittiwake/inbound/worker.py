"""The inbound worker: takes due webhook jobs from the durable queue and runs their conversations.

A job is written with its inbound message, so a message received is never forgotten; the worker leases
jobs (a crashed worker's jobs come back when the lease ends), requests the number's SMS URL (or its
Application's) and acts on the answer (:mod:`kittiwake.inbound.conversation`). A failure that the
fallback cannot cure is recorded on the inbound message as its error code; it never stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

import aiohttp

from kittiwake.clock import Clock
from kittiwake.config import Settings
from kittiwake.domain import API_VERSION, MessageStatus
from kittiwake.inbound.conversation import Conversation, LoopGuard, Target
from kittiwake.inbound.http import fetch_twiml
from kittiwake.models import Message, PhoneNumber
from kittiwake.pacing import RatePolicy
from kittiwake.phone import AddressKind, classify, country_code_of
from kittiwake.receiving import enqueue_reply
from kittiwake.store.base import InboundStore, Transition
from kittiwake.twiml import HTTP_RETRIEVAL_FAILURE, TITLES, TwimlError, Verb

log = logging.getLogger(__name__)


def inbound_params(message: Message, short_code_region: str) -> list[tuple[str, str]]:
    """What Twilio sends to an SMS URL (twilio-api.md §4); geography unknown beyond the country."""

    def country(number: str) -> str:
        return short_code_region if classify(number) is AddressKind.SHORT_CODE else country_code_of(number)

    sid = message.sid
    return [
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("SmsMessageSid", sid),
        ("AccountSid", message.account_sid),
        ("From", message.from_),
        ("To", message.to),
        ("Body", message.body),
        ("NumMedia", str(message.num_media)),
        ("NumSegments", str(message.num_segments)),
        ("SmsStatus", "received"),
        ("ApiVersion", API_VERSION),
        ("FromCity", ""),
        ("FromState", ""),
        ("FromZip", ""),
        ("FromCountry", country(message.from_)),
        ("ToCity", ""),
        ("ToState", ""),
        ("ToZip", ""),
        ("ToCountry", country(message.to)),
    ]


class InboundWorker:
    def __init__(
        self,
        store: InboundStore,
        clock: Clock,
        policy: RatePolicy,
        settings: Settings,
        *,
        concurrency: int = 32,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._clock = clock
        self._policy = policy
        self._settings = settings
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: set[int] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._guard = LoopGuard(clock, settings.inbound.loop_limit, settings.inbound.loop_window)
        self._session: aiohttp.ClientSession | None = None
        self.processed = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            while not self._stopping:
                await self._claim()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=self._settings.inbound.webhook_timeout)
        finally:
            for task in self._tasks:
                task.cancel()
            await self._session.close()

    async def _claim(self) -> None:
        room = self._concurrency - len(self._tasks)
        if room <= 0:
            return
        lease = self._lease_seconds()
        now = self._clock.now_micros()
        try:
            jobs = await self._store.claim_inbound(now, room, now + round(lease * 1_000_000))
        except Exception:
            log.exception("claiming inbound jobs failed; retrying at the next poll")
            return
        for job_id, message in jobs:
            if job_id in self._running:
                continue  # still ours from before its lease lapsed: never run a conversation twice
            self._running.add(job_id)
            task = asyncio.create_task(self._run_job(job_id, message))
            self._tasks.add(task)
            task.add_done_callback(self._job_done)

    def _lease_seconds(self) -> float:
        """A job's whole conversation can take many webhook timeouts (fallback, redirects, actions)."""
        inbound = self._settings.inbound
        return inbound.webhook_timeout * (2 * inbound.max_redirects + inbound.max_replies + 4)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # room for another job

    async def _run_job(self, job_id: int, message: Message) -> None:
        try:
            await self._process(message)
            await self._store.inbound_finished(job_id, self._clock.now_micros())
            self.processed += 1
        except Exception:
            log.exception("inbound message %s: processing failed; retried after its lease", message.sid)
        finally:
            self._running.discard(job_id)

    async def _process(self, message: Message) -> None:
        number = await self._store.find_number(message.to)
        target = await self._target(number) if number is not None else None
        token = await self._store.auth_token(message.account_sid)
        if target is None or token is None or self._session is None:
            return
        fetch = functools.partial(self._fetch, token)

        async def owns(number_text: str) -> bool:
            found = await self._store.find_number(number_text)
            return found is not None and found.account_sid == message.account_sid

        async def enqueue(reply: Message) -> Message:
            return await enqueue_reply(self._store, self._policy, self._settings, reply)

        params = inbound_params(message, self._settings.short_code_region)
        conversation = Conversation(
            message, params, self._settings, self._clock, fetch, enqueue, owns, self._guard, self._store.add_message,
            self._store.is_opted_out,
        )  # fmt: skip
        try:
            # Within the job's lease, or another claim would run the conversation a second time.
            async with asyncio.timeout(self._lease_seconds() - self._settings.inbound.webhook_timeout):
                error = await conversation.run(target)
        except TimeoutError:
            error = TwimlError(HTTP_RETRIEVAL_FAILURE, "the conversation took longer than its lease")
        if error is None:
            return
        self.failed += 1
        log.info("inbound message %s: %s", message.sid, error)
        values: dict[str, object] = {"error_code": error.code, "error_message": TITLES.get(error.code, error.message)}
        transition = Transition(message.sid, frozenset({MessageStatus.RECEIVED.value}), values)
        await self._store.apply_transitions([transition], self._clock.now_micros())

    async def _fetch(self, token: str, url: str, method: str, params: Sequence[tuple[str, str]]) -> list[Verb]:
        assert self._session is not None
        return await fetch_twiml(self._session, url, method, params, token, self._settings.inbound.webhook_timeout)

    async def _target(self, number: PhoneNumber) -> Target | None:
        """The number's Application decides when it has one; else the number's own SMS URL."""
        if number.sms_application_sid:
            app = await self._store.get_application(number.account_sid, number.sms_application_sid)
            if app is None or not app.sms_url:
                return None
            return Target(app.sms_url, app.sms_method, app.sms_fallback_url, app.sms_fallback_method)
        if not number.sms_url:
            return None
        return Target(number.sms_url, number.sms_method, number.sms_fallback_url, number.sms_fallback_method)
