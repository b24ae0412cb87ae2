"""The typed TwiML verbs a messaging answer can hold, and the limits that apply to them.

A parsed document is a list of :data:`Verb`, in document order (TwiML runs top to bottom). The values are what
the document said, whitespace-stripped and with ``method`` normalised to upper case; resolving URLs against the
current one (:func:`kittiwake.twiml.urls.resolve_url`) and numbers against the inbound message is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Legacy <Sms> body limit: 160 characters (twilio-api.md §5.1, 2010 TwiML SMS "Sms verb").
SMS_BODY_LIMIT = 160
#: <Message> body limit: 1600 characters (Twilio error 14103 "SMS Body exceeding 1600 characters").
MESSAGE_BODY_LIMIT = 1600
#: <Media> nouns per <Message>: at most 10 (twilio-api.md §5.2, "<Message>" page).
MEDIA_LIMIT = 10
#: Message verbs (<Sms> + <Message>) per document: Kittiwake's own cap on the replies one answer may send.
#: Twilio documents no per-document number; its loop protection (14107) only stops 30 replies in 30 s.
MESSAGE_VERB_LIMIT = 10

#: ``method`` values accepted on <Sms>, <Message> and <Redirect>; POST when absent (twilio-api.md §5).
METHODS = ("GET", "POST")
DEFAULT_METHOD = "POST"


@dataclass(frozen=True, slots=True)
class SmsVerb:
    """Legacy ``<Sms>`` (2010 TwiML SMS): plain-text body of at most 160 characters."""

    body: str
    to: str | None = None
    from_: str | None = None
    action: str | None = None
    method: str = DEFAULT_METHOD
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class MessageVerb:
    """Modern ``<Message>``: body (plain text or ``<Body>``) of at most 1600 characters, up to 10 media URLs."""

    body: str
    media: tuple[str, ...] = ()
    to: str | None = None
    from_: str | None = None
    action: str | None = None
    method: str = DEFAULT_METHOD
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class RedirectVerb:
    """``<Redirect>``: fetch TwiML from ``url`` (as written; maybe relative) with ``method``."""

    url: str
    method: str = DEFAULT_METHOD


#: One instruction of a messaging TwiML document.
Verb = SmsVerb | MessageVerb | RedirectVerb
