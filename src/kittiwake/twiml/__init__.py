"""TwiML for messaging, pure: parse an SMS webhook's answer into typed verbs, and the helpers around it.

Owns: the verb types (:mod:`.verbs`), the parser (:mod:`.parse`), Content-Type classification and the text/plain
reply (:mod:`.content`), URL resolution for ``<Redirect>``/``action`` (:mod:`.urls`) and :class:`TwimlError` with
the Twilio error codes for TwiML problems (:mod:`.errors`). No I/O: fetching the document, resolving numbers and
sending the replies belong to the callers.
"""

from __future__ import annotations

from kittiwake.twiml.content import ContentKind, classify_content_type, plain_text_reply
from kittiwake.twiml.errors import (
    DOCUMENT_PARSE_FAILURE,
    HTTP_RETRIEVAL_FAILURE,
    INVALID_BODY,
    INVALID_CONTENT_TYPE,
    INVALID_FROM,
    INVALID_METHOD,
    INVALID_STATUS_CALLBACK,
    INVALID_TO,
    INVALID_URL_FORMAT,
    INVALID_VERB_FOR_REPLY,
    INVALID_VERSION,
    REPLY_RATE_LIMIT,
    ROOT_NOT_RESPONSE,
    SCHEMA_VALIDATION,
    TITLES,
    TwimlError,
)
from kittiwake.twiml.parse import DEFAULT_MAX_BYTES, parse_twiml
from kittiwake.twiml.urls import resolve_url
from kittiwake.twiml.verbs import (
    MEDIA_LIMIT,
    MESSAGE_BODY_LIMIT,
    MESSAGE_VERB_LIMIT,
    SMS_BODY_LIMIT,
    MessageVerb,
    RedirectVerb,
    SmsVerb,
    Verb,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DOCUMENT_PARSE_FAILURE",
    "HTTP_RETRIEVAL_FAILURE",
    "INVALID_BODY",
    "INVALID_CONTENT_TYPE",
    "INVALID_FROM",
    "INVALID_METHOD",
    "INVALID_STATUS_CALLBACK",
    "INVALID_TO",
    "INVALID_URL_FORMAT",
    "INVALID_VERB_FOR_REPLY",
    "INVALID_VERSION",
    "MEDIA_LIMIT",
    "MESSAGE_BODY_LIMIT",
    "MESSAGE_VERB_LIMIT",
    "REPLY_RATE_LIMIT",
    "ROOT_NOT_RESPONSE",
    "SCHEMA_VALIDATION",
    "SMS_BODY_LIMIT",
    "TITLES",
    "ContentKind",
    "MessageVerb",
    "RedirectVerb",
    "SmsVerb",
    "TwimlError",
    "Verb",
    "classify_content_type",
    "parse_twiml",
    "plain_text_reply",
    "resolve_url",
]
