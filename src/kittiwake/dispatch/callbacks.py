"""Which status changes produce a status callback, and what it carries (twilio-api.md §2.2, §3.5, §3.6).

Legacy ``/SMS/Messages``: "Twilio will POST the SmsSid as well as SmsStatus=sent or SmsStatus=failed".
Modern ``/Messages``: sent, delivered, undelivered, failed (and canceled). No callback for the initial
status. The URL was resolved when the message was created (``Message.callback_url``).
"""

from __future__ import annotations

from kittiwake.domain import API_VERSION, MessageStatus
from kittiwake.lifecycle import CALLBACK_STATUSES_LEGACY, CALLBACK_STATUSES_MODERN
from kittiwake.models import Message
from kittiwake.store.base import NewCallback


def status_callback(
    message: Message, status: MessageStatus, error_code: int | None = None, error_message: str | None = None
) -> NewCallback | None:
    """The callback to enqueue for ``message`` reaching ``status``, or None if none is due."""
    if not message.callback_url:
        return None
    wanted = CALLBACK_STATUSES_LEGACY if message.api == "legacy" else CALLBACK_STATUSES_MODERN
    if status not in wanted:
        return None
    params = [
        ("MessageSid", message.sid),
        ("SmsSid", message.sid),
        ("MessageStatus", status.value),
        ("SmsStatus", status.value),
        ("AccountSid", message.account_sid),
        ("From", message.from_),
        ("To", message.to),
        ("ApiVersion", API_VERSION),
    ]
    if error_code is not None:
        params.append(("ErrorCode", str(error_code)))
        params.append(("ErrorMessage", error_message or ""))
    return NewCallback(
        account_sid=message.account_sid,
        message_sid=message.sid,
        url=message.callback_url,
        method="POST",
        params=tuple(params),
        # One event, one key: a retry of the same callback carries the same key.
        idempotency_key=f"{message.sid}-{status.value}",
    )
