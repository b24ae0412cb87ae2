"""Acting on an app's TwiML for one inbound message: replies, ``<Redirect>``, ``<Sms action>``, fallback.

Verbs run top to bottom. ``<Sms>``/``<Message>`` queue a reply (``to`` defaults to the sender of the
inbound message, ``from`` to the number that received it; a ``to`` without '+' takes the country of
``from``). ``<Redirect>`` fetches TwiML that runs in place of the rest. After queueing, an ``<Sms action>``
is requested with ``SmsSid`` and ``SmsStatus`` (``sending``, or ``invalid`` for bad attributes) and the
TwiML it returns continues the conversation (twilio-api.md §5). Redirects and replies per answer are
capped. Any failure of the primary URL goes to the SmsFallbackUrl with ``ErrorCode``/``ErrorUrl``;
without one, or when the fallback fails too, the error is recorded on the inbound message.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from kittiwake.clock import Clock
from kittiwake.config import Settings
from kittiwake.domain import MessageStatus
from kittiwake.models import Message
from kittiwake.phone import normalize_destination
from kittiwake.receiving import build_reply
from kittiwake.store.base import QueueFull
from kittiwake.twiml import (
    INVALID_FROM,
    INVALID_TO,
    REPLY_RATE_LIMIT,
    SCHEMA_VALIDATION,
    TITLES,
    MessageVerb,
    RedirectVerb,
    SmsVerb,
    TwimlError,
    Verb,
    resolve_url,
)

log = logging.getLogger(__name__)

OPTED_OUT = 21610  # Twilio: attempt to send to unsubscribed recipient

Fetch = Callable[[str, str, Sequence[tuple[str, str]]], Awaitable[list[Verb]]]
Enqueue = Callable[[Message], Awaitable[Message]]
Owns = Callable[[str], Awaitable[bool]]
# The next request of a conversation: URL, method, parameters.
Step = tuple[str, str, list[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where an inbound message's webhook goes."""

    url: str
    method: str
    fallback_url: str | None
    fallback_method: str


class LoopGuard:
    """Twilio's loop protection (error 14107): more than ``limit`` replies between the same two numbers
    within ``window`` seconds make further replies fail for ``window`` seconds."""

    def __init__(self, clock: Clock, limit: int, window: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._sent: dict[tuple[str, str], collections.deque[float]] = {}
        self._blocked_until: dict[tuple[str, str], float] = {}

    def allow(self, from_: str, to: str) -> bool:
        now = self._clock.monotonic()
        pair = (from_, to) if from_ <= to else (to, from_)
        if self._blocked_until.get(pair, 0.0) > now:
            return False
        recent = self._sent.setdefault(pair, collections.deque())
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self._limit:
            self._blocked_until[pair] = now + self._window
            return False
        recent.append(now)
        if len(self._sent) > 100_000:  # bound memory: forget quiet pairs
            self._sent = {k: v for k, v in self._sent.items() if v and v[-1] > now - self._window}
        return True


class Conversation:
    """One inbound message's TwiML exchange with the app."""

    def __init__(
        self,
        message: Message,
        params: Sequence[tuple[str, str]],
        settings: Settings,
        clock: Clock,
        fetch: Fetch,
        enqueue: Enqueue,
        owns_number: Owns,
        loop_guard: LoopGuard,
        store_failed: Enqueue,
        opted_out: Callable[[str, str], Awaitable[bool]],
    ) -> None:
        self.message = message
        self.params = list(params)
        self.settings = settings
        self.clock = clock
        self.fetch = fetch
        self.enqueue = enqueue
        self.owns_number = owns_number
        self.loop_guard = loop_guard
        self.store_failed = store_failed
        self.opted_out = opted_out
        self.replies: list[Message] = []
        self.redirects = 0

    async def run(self, target: Target) -> TwimlError | None:
        """Make the webhook request and act on the answer; the error left over, if any."""
        try:
            await self._exchange(target.url, target.method, self.params)
            return None
        except TwimlError as error:
            if not target.fallback_url:
                return error
            log.info("SMS URL failed for %s (%s); trying the fallback", self.message.sid, error.code)
            fallback_params = [*self.params, ("ErrorCode", str(error.code)), ("ErrorUrl", target.url)]
            try:
                await self._exchange(target.fallback_url, target.fallback_method, fallback_params)
                return None
            except TwimlError as second:
                return second

    async def _exchange(self, url: str, method: str, params: Sequence[tuple[str, str]]) -> None:
        verbs = await self.fetch(url, method, params)
        await self._execute(verbs, url)

    async def _execute(self, verbs: list[Verb], current_url: str) -> None:
        while True:
            next_step: Step | None = None
            for verb in verbs:
                if isinstance(verb, RedirectVerb):
                    next_step = self._redirect(verb, current_url)
                    break
                next_step = await self._reply(verb, current_url)
                if next_step is not None:
                    break
            if next_step is None:
                return
            current_url, method, params = next_step
            verbs = await self.fetch(current_url, method, params)

    def _redirect(self, verb: RedirectVerb, current_url: str) -> Step:
        self.redirects += 1
        if self.redirects > self.settings.inbound.max_redirects:
            raise TwimlError(SCHEMA_VALIDATION, f"more than {self.settings.inbound.max_redirects} redirects")
        return resolve_url(current_url, verb.url), verb.method, list(self.params)

    async def _reply(
        self, verb: SmsVerb | MessageVerb, current_url: str
    ) -> tuple[str, str, list[tuple[str, str]]] | None:
        """Queue one reply; for an ``<Sms action>``, the request that continues the conversation."""
        if len(self.replies) >= self.settings.inbound.max_replies:
            raise TwimlError(SCHEMA_VALIDATION, f"more than {self.settings.inbound.max_replies} replies in one answer")
        legacy = isinstance(verb, SmsVerb)
        try:
            from_, to = await self._addresses(verb)
        except TwimlError:
            if isinstance(verb, SmsVerb) and verb.action:
                return self._action(verb, current_url, None, "invalid")
            raise
        callback = verb.status_callback
        if callback is not None:
            callback = resolve_url(current_url, callback)
        if not legacy and verb.action and callback is None:
            # Modern <Message action> is where the reply's status callbacks go (twilio-api.md §5.2).
            callback = resolve_url(current_url, verb.action)
        reply = build_reply(self.message.account_sid, from_, to, verb.body, self.clock.now_micros(),
                            callback_url=callback, api="legacy" if legacy else "modern")  # fmt: skip
        if await self.opted_out(from_, to):
            # The handset said STOP to this number: a reply is refused as the REST API would (21610).
            failed = replace(reply, status=MessageStatus.FAILED, error_code=OPTED_OUT,
                             error_message="Attempt to send to unsubscribed recipient")  # fmt: skip
            self.replies.append(await self.store_failed(failed))
            return None
        if not self.loop_guard.allow(from_, to):
            # Twilio fails the reply itself with 14107 (twilio-api.md §4.1); the conversation goes on.
            failed = replace(reply, status=MessageStatus.FAILED, error_code=REPLY_RATE_LIMIT,
                             error_message=TITLES[REPLY_RATE_LIMIT])  # fmt: skip
            self.replies.append(await self.store_failed(failed))
            return None
        try:
            queued = await self.enqueue(reply)
        except QueueFull:
            log.warning("reply from %s dropped: its queue is full", from_)
            return None
        self.replies.append(queued)
        if isinstance(verb, SmsVerb) and verb.action:
            return self._action(verb, current_url, queued.sid, "sending")
        return None

    def _action(self, verb: SmsVerb, current_url: str, sid: str | None, status: str) -> Step:
        """The request to an ``<Sms action>``: the reply's SmsSid and SmsStatus in place of the inbound's."""
        assert verb.action is not None
        params = [(k, v) for k, v in self.params if k not in {"SmsSid", "SmsStatus"}]
        params += [("SmsSid", sid or ""), ("SmsStatus", status)]
        return resolve_url(current_url, verb.action), verb.method, params

    async def _addresses(self, verb: SmsVerb | MessageVerb) -> tuple[str, str]:
        from_ = (verb.from_ or self.message.to).strip()
        if not await self.owns_number(from_):
            raise TwimlError(INVALID_FROM, f"'from' {from_} is not an SMS-capable number of this account")
        raw_to = verb.to or self.message.from_
        to = normalize_destination(raw_to, from_, short_code_region=self.settings.short_code_region)
        if to is None:
            raise TwimlError(INVALID_TO, f"'to' {raw_to} is not a valid phone number")
        return from_, to
