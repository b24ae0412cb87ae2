"""X-Twilio-Signature: the HMAC that lets an app check a webhook really came from its gateway.

Pure functions, no I/O. Owns the signing string (twilio-api.md §6, Twilio's "Webhooks security" page and
``twilio/request_validator.py`` in twilio-python 9.13) and the URL a GET webhook requests, because for GET
the signed URL *is* the parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import urlencode, urlsplit, urlunsplit

SIGNATURE_HEADER = "X-Twilio-Signature"


def signing_string(url: str, params: Sequence[tuple[str, str]]) -> str:
    """The text that is signed: the full URL, then ``name + value`` for each parameter.

    Names in sorted order (Python ``sorted``: by code point, case-sensitive), and for a name sent more than
    once, its values in sorted order, with no separators (twilio-api.md §6 step 2). For a GET webhook the
    parameters are already in ``url`` and ``params`` must be empty.
    """
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    parts = [url]
    for name in sorted(by_name):
        # twilio-python's validator sorts set(values): a repeated identical pair would be counted once
        # there but twice here. Kittiwake never sends one (each callback parameter is sent once).
        parts.extend(name + value for value in sorted(by_name[name]))
    return "".join(parts)


def signature(auth_token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` value: base64(HMAC-SHA1(key=auth token, msg=signing string)), UTF-8 both."""
    mac = hmac.new(auth_token.encode("utf-8"), signing_string(url, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def url_with_query(url: str, params: Sequence[tuple[str, str]]) -> str:
    """The URL a GET webhook requests: ``params`` form-encoded and appended to the URL's own query.

    The URL's existing query is kept byte for byte (the app configured it and validates against it); the
    fragment is dropped, since it is never sent on the wire and so is not part of the URL the app sees.
    Sign the result with no parameters (twilio-api.md §4: "With GET, parameters go in the query string").
    """
    parts = urlsplit(url)
    extra = urlencode(list(params))
    query = f"{parts.query}&{extra}" if parts.query and extra else parts.query or extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
