"""The one TwiML exception and the Twilio error codes that describe what went wrong with a TwiML answer.

Twilio reports TwiML problems in the debugger (and, for SMS, as ``ErrorCode`` on the fallback request) with codes
from its error catalogue. Each code below was checked against Twilio's page for it,
https://www.twilio.com/docs/api/errors/{code}, title quoted in the comment. Codes that the parser does not raise
itself (the numbers, the HTTP fetch, the reply rate limit) are here so the callers that decide them use the same
names.
"""

from __future__ import annotations

from kittiwake.errors import KittiwakeError

# --- Fetching the document (decided by the webhook client, not here) ---------------------------------------------
#: 11100 "Invalid URL format": bad URL in a <Redirect> body or a verb's action attribute.
INVALID_URL_FORMAT = 11100
#: 11200 "HTTP retrieval failure". Title confirmed from the catalogue index (docs/api/errors) and a public copy of
#: its JSON; the page for 11200 itself was not retrieved.
HTTP_RETRIEVAL_FAILURE = 11200

# --- The document as a whole ---------------------------------------------------------------------------------------
#: 12100 "Document parse failure": not well-formed XML (the page also names truncated, oversize documents).
DOCUMENT_PARSE_FAILURE = 12100
#: 12101 "Invalid Twilio Markup XML version": bad ``version`` attribute on <Response>.
INVALID_VERSION = 12101
#: 12102 "The root element must be Response".
ROOT_NOT_RESPONSE = 12102
#: 12200 "Schema validation warning": misspelled verbs, unknown attributes, unexpected nested elements.
SCHEMA_VALIDATION = 12200
#: 12300 "Invalid Content-Type": the answer is neither TwiML nor text/plain.
INVALID_CONTENT_TYPE = 12300

# --- Message verbs (<Sms>, <Message>) --------------------------------------------------------------------------------
#: 14101 "Invalid "To" attribute" (decided by the caller when it resolves numbers).
INVALID_TO = 14101
#: 14102 "Invalid "From" attribute" (decided by the caller when it resolves numbers).
INVALID_FROM = 14102
#: 14103 "Invalid Body": empty body with no media, or a body longer than the limit.
INVALID_BODY = 14103
#: 14104 "Invalid Method attribute": "Method attribute may only be "GET" or "POST"".
INVALID_METHOD = 14104
#: 14105 "Invalid statusCallback attribute": must be a valid URL.
INVALID_STATUS_CALLBACK = 14105
#: 14107 "SMS send rate limit exceeded": more than 30 replies between two numbers in 30 s (decided by the caller).
REPLY_RATE_LIMIT = 14107
#: 14110 "Invalid Verb for SMS Reply": "Valid Verbs are Message, Sms and Redirect" (a voice verb such as <Say>).
INVALID_VERB_FOR_REPLY = 14110

#: Twilio's title for each code above, for logs and the debugger view.
TITLES: dict[int, str] = {
    INVALID_URL_FORMAT: "Invalid URL format",
    HTTP_RETRIEVAL_FAILURE: "HTTP retrieval failure",
    DOCUMENT_PARSE_FAILURE: "Document parse failure",
    INVALID_VERSION: "Invalid Twilio Markup XML version",
    ROOT_NOT_RESPONSE: "The root element must be Response",
    SCHEMA_VALIDATION: "Schema validation warning",
    INVALID_CONTENT_TYPE: "Invalid Content-Type",
    INVALID_TO: 'Invalid "To" attribute',
    INVALID_FROM: 'Invalid "From" attribute',
    INVALID_BODY: "Invalid Body",
    INVALID_METHOD: "Invalid Method attribute",
    INVALID_STATUS_CALLBACK: "Invalid statusCallback attribute",
    REPLY_RATE_LIMIT: "SMS send rate limit exceeded",
    INVALID_VERB_FOR_REPLY: "Invalid Verb for SMS Reply",
}


class TwimlError(KittiwakeError):
    """A TwiML answer Kittiwake will not act on: a Twilio error ``code`` and a human ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {TITLES.get(code, 'TwiML error')}: {message}")
        self.code = code
        self.message = message
