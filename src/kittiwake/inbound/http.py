"""Fetching TwiML: one signed request to an app's SMS URL (or fallback, action, redirect) and its answer.

Every failure is a :class:`TwimlError` with Twilio's code: 11200 for an HTTP retrieval failure
(connection error, timeout, an error status), 12300 for a Content-Type that is neither TwiML nor text,
and the parser's codes for a bad document (twilio-api.md §4.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from kittiwake.twiml import (
    HTTP_RETRIEVAL_FAILURE,
    INVALID_CONTENT_TYPE,
    TwimlError,
    Verb,
    classify_content_type,
    parse_twiml,
    plain_text_reply,
)
from kittiwake.webhooks.outbox import safe_for_log, wire_url
from kittiwake.webhooks.signing import SIGNATURE_HEADER, signature, url_with_query

MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "TwilioProxy/1.1"


async def fetch_twiml(
    session: aiohttp.ClientSession,
    url: str,
    method: str,
    params: Sequence[tuple[str, str]],
    auth_token: str,
    timeout_seconds: float,
) -> list[Verb]:
    """Request ``url`` as Twilio does (form POST, or GET with the parameters in the query string), signed
    with the account's token, and return the verbs of its answer."""
    url = wire_url(url)
    if method == "GET":
        target, body = url_with_query(url, params), None
        signed = signature(auth_token, target, ())
    else:
        target, body = url, urlencode(list(params))
        signed = signature(auth_token, target, params)
    headers = {SIGNATURE_HEADER: signed, "User-Agent": USER_AGENT}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    try:
        async with session.request(
            method,
            URL(target, encoded=True),
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as response:
            if response.status >= 400 or response.status < 200:
                raise TwimlError(HTTP_RETRIEVAL_FAILURE, f"{safe_for_log(url)} answered HTTP {response.status}")
            kind = classify_content_type(response.headers.get("Content-Type", ""))
            content_type = response.headers.get("Content-Type")
            document = await _read_capped(response, MAX_ANSWER_BYTES + 1)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        raise TwimlError(
            HTTP_RETRIEVAL_FAILURE, f"{safe_for_log(url)} could not be retrieved: {type(exc).__name__}"
        ) from None
    if kind == "twiml":
        return parse_twiml(document, max_bytes=MAX_ANSWER_BYTES)
    if kind == "text":
        text = document[:MAX_ANSWER_BYTES].decode("utf-8", errors="replace").strip()
        return plain_text_reply(text) if text else []
    if not document.strip():
        return []  # an empty answer of any type says "do nothing"
    raise TwimlError(INVALID_CONTENT_TYPE, f"{safe_for_log(url)} answered with Content-Type {content_type!r}")


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, whole (it may come in many chunks), but never more than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]
