"""The one exception tree of Kittiwake and the Twilio error codes it answers with.

Every error a client can see is a :class:`TwilioError`: an error code from Twilio's catalogue
(https://www.twilio.com/docs/errors/{code}), the HTTP status Twilio answers it with, and a message.
The codes are data (:data:`CATALOGUE`), so the API renders them the same way everywhere and tests can
check a code without matching message text.
"""

from __future__ import annotations

from dataclasses import dataclass

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    """One entry of Twilio's error catalogue: HTTP status and message template."""

    code: int
    status: int
    template: str


def _spec(code: int, status: int, template: str) -> tuple[int, ErrorSpec]:
    return code, ErrorSpec(code, status, template)


# Messages follow Twilio's own wording where it is known (twilio-api.md §9); `{…}` fields are filled
# from keyword arguments of :meth:`TwilioError.of`.
CATALOGUE: dict[int, ErrorSpec] = dict(
    [
        _spec(20001, 400, "{detail}"),
        _spec(20003, 401, "Authenticate"),
        _spec(20004, 405, "Method not allowed"),
        _spec(20403, 403, "{detail}"),
        _spec(20404, 404, "The requested resource {path} was not found"),
        _spec(20413, 413, "Request entity too large: at most {limit} bytes"),
        _spec(20415, 415, "Unsupported media type: send application/x-www-form-urlencoded"),
        _spec(21211, 400, "The 'To' number {value} is not a valid phone number."),
        _spec(21212, 400, "The 'From' number {value} is not a valid phone number or shortcode."),
        _spec(21421, 400, "PhoneNumber {value} is invalid."),
        _spec(21422, 400, "PhoneNumber {value} is not available."),
        _spec(21452, 400, "{detail}"),
        _spec(21602, 400, "Message body is required."),
        _spec(21603, 400, "A 'From' or 'MessagingServiceSid' parameter is required to send a message."),
        _spec(21604, 400, "A 'To' phone number is required."),
        _spec(21605, 400, "The message body exceeds the 160 character limit."),
        _spec(
            21606,
            400,
            "The 'From' phone number provided ({value}) is not a valid message-capable "
            "Twilio phone number for this destination/account.",
        ),
        _spec(21610, 400, "Attempt to send to unsubscribed recipient"),
        _spec(21611, 400, "This 'From' number has exceeded the maximum number of queued messages"),
        _spec(21614, 400, "'To' number {value} is not a valid mobile number"),
        _spec(21617, 400, "The concatenated message body exceeds the 1600 character limit."),
        _spec(
            21624,
            400,
            "Validity period can only be set to integers between 1 and 36,000 seconds (10 hours max).",
        ),
        _spec(21701, 400, "The Messaging Service Sid {value} is invalid."),
    ]
)


class KittiwakeError(Exception):
    """Root of every exception Kittiwake raises on purpose."""


class TwilioError(KittiwakeError):
    """An error answered to the client in Twilio's format (JSON body or ``<RestException>``)."""

    def __init__(self, code: int, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message

    @classmethod
    def of(cls, code: int, **fields: object) -> TwilioError:
        """Build the catalogued error ``code``, filling its template from ``fields``."""
        spec = CATALOGUE[code]
        return cls(code, spec.status, spec.template.format(**fields))

    @property
    def more_info(self) -> str:
        return MORE_INFO.format(code=self.code)

    def as_dict(self) -> dict[str, object]:
        """The JSON error body, exactly the four keys every official client reads (twilio-api.md §1.1)."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": self.more_info,
            "status": self.status,
        }


def invalid_parameter(detail: str) -> TwilioError:
    """A generic 400 for a malformed parameter that Twilio's catalogue has no finer code for."""
    return TwilioError.of(20001, detail=detail)


def not_found(path: str) -> TwilioError:
    return TwilioError.of(20404, path=path)


class StoreError(KittiwakeError):
    """A storage failure that is not the client's fault (answered as 500 and logged)."""


class ConfigError(KittiwakeError):
    """Invalid configuration or command-line arguments (the CLI exits with status 2)."""
