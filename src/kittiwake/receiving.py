"""Receiving an SMS from a handset: the rules shared by ``POST /sim/inbound``, ``kittiwake sim send`` and
(later) SMPP deliver_sm.

The message is stored as ``inbound``/``received`` for the account that owns the receiving number,
together with its webhook job when the number (or its Application) has an SMS URL and any opt-out
change its keyword makes (long codes only, twilio-api.md §10); HELP and INFO get the operator's
auto-reply. Replies are ordinary outbound messages (``outbound-reply``), queued and paced like any other.
"""

from __future__ import annotations

import logging

from kittiwake.clock import Clock
from kittiwake.config import Settings
from kittiwake.domain import Direction, MessageStatus, NumberKind, SidPrefix, new_sid
from kittiwake.errors import TwilioError, invalid_parameter
from kittiwake.keywords import Keyword, keyword_of
from kittiwake.models import Message, PhoneNumber
from kittiwake.pacing import RatePolicy
from kittiwake.phone import count_segments, normalize_destination
from kittiwake.store.base import InboundStore, OptChange, QueueFull

log = logging.getLogger(__name__)

BODY_LIMIT = 1600


def build_reply(
    account_sid: str,
    from_: str,
    to: str,
    body: str,
    now: int,
    *,
    callback_url: str | None = None,
    api: str = "modern",
) -> Message:
    """An ``outbound-reply`` message, queued like any other (same pacing, same callbacks)."""
    return Message(
        sid=new_sid(SidPrefix.SMS_MESSAGE),
        account_sid=account_sid,
        api=api,
        from_=from_,
        to=to,
        body=body,
        status=MessageStatus.QUEUED,
        direction=Direction.OUTBOUND_REPLY,
        num_segments=count_segments(body),
        date_created=now,
        date_updated=now,
        status_callback=callback_url,
        callback_url=callback_url,
        expires_at=now + 36000 * 1_000_000,
    )


async def enqueue_reply(store: InboundStore, policy: RatePolicy, settings: Settings, reply: Message) -> Message:
    """Queue a reply under the same per-sender backlog cap as the API (QueueFull propagates)."""
    number = await store.find_number(reply.from_)
    kind = number.kind.value if number is not None else NumberKind.LONG_CODE.value
    rate = policy.rate_for(reply.from_, kind)
    return await store.enqueue_message(reply, int(settings.pacing.max_backlog_seconds * rate.segments_per_second))


async def webhook_wanted(store: InboundStore, number: PhoneNumber) -> bool:
    """True when an SMS URL will hear of messages to ``number`` (its Application's, else its own)."""
    if number.sms_application_sid:
        application = await store.get_application(number.account_sid, number.sms_application_sid)
        return bool(application and application.sms_url)
    return bool(number.sms_url)


async def receive_sms(
    store: InboundStore,
    clock: Clock,
    policy: RatePolicy,
    settings: Settings,
    *,
    account_sid: str | None,
    from_raw: str,
    to_raw: str,
    body: str,
) -> Message:
    """Store one SMS from a handset to one of our numbers; ``account_sid``, when given, must own it."""
    to = to_raw.strip()
    number = await store.find_number(to)
    if number is None or (account_sid is not None and number.account_sid != account_sid):
        raise invalid_parameter(f"'To' {to_raw} is not a number of this account")
    handset = normalize_destination(from_raw, number.phone_number, short_code_region=settings.short_code_region)
    if handset is None:
        raise TwilioError.of(21212, value=from_raw)
    if len(body) > BODY_LIMIT:
        raise TwilioError.of(21617)
    keyword = keyword_of(body) if number.kind is NumberKind.LONG_CODE else None
    opt = {Keyword.OPT_OUT: OptChange.OUT, Keyword.OPT_IN: OptChange.IN}.get(keyword) if keyword else None
    now = clock.now_micros()
    segments = count_segments(body)
    message = Message(
        sid=new_sid(SidPrefix.SMS_MESSAGE),
        account_sid=number.account_sid,
        from_=handset,
        to=number.phone_number,
        body=body,
        status=MessageStatus.RECEIVED,
        direction=Direction.INBOUND,
        num_segments=segments,
        date_created=now,
        date_updated=now,
        date_sent=now,
        price=f"-{0.0079 * segments:.5f}",
    )
    stored = await store.receive_message(message, opt, webhook=await webhook_wanted(store, number))
    if keyword is Keyword.HELP:
        reply = build_reply(number.account_sid, number.phone_number, handset, settings.inbound.help_reply, now)
        try:
            await enqueue_reply(store, policy, settings, reply)
        except QueueFull:
            log.warning("HELP auto-reply from %s dropped: its queue is full", number.phone_number)
    return stored
