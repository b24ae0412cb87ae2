"""What to make of the answer to an SMS webhook: its Content-Type, and the text/plain reply.

Per the 2010 TwiML SMS docs ("Your Response", twilio-api.md §4.1): ``text/xml``, ``application/xml`` and
``text/html`` are parsed as TwiML; a ``text/plain`` body is sent back to the sender as one message. Anything
else is Twilio error 12300 "Invalid Content-Type", which the caller reports.
"""

from __future__ import annotations

from typing import Literal

from kittiwake.twiml.errors import INVALID_BODY, TwimlError
from kittiwake.twiml.verbs import MESSAGE_BODY_LIMIT, MessageVerb, Verb

ContentKind = Literal["twiml", "text", "unknown"]

_TWIML_TYPES = frozenset({"text/xml", "application/xml", "text/html"})
_TEXT_TYPES = frozenset({"text/plain"})


def classify_content_type(content_type: str) -> ContentKind:
    """``"twiml"``, ``"text"`` or ``"unknown"`` for a Content-Type header value (parameters and case ignored)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _TWIML_TYPES:
        return "twiml"
    if media_type in _TEXT_TYPES:
        return "text"
    return "unknown"


def plain_text_reply(body: str) -> list[Verb]:
    """The verbs a ``text/plain`` answer stands for: one :class:`MessageVerb` with default attributes.

    Surrounding whitespace is stripped; a blank answer sends nothing (``[]``). A body over 1600 characters is
    the same 14103 "Invalid Body" a <Message> would get.
    """
    text = body.strip()
    if not text:
        return []
    if len(text) > MESSAGE_BODY_LIMIT:
        raise TwimlError(INVALID_BODY, f"reply is {len(text)} characters; the limit is {MESSAGE_BODY_LIMIT}")
    return [MessageVerb(body=text)]
