"""Resolving the URLs a TwiML answer names (``<Redirect>`` bodies, ``action``, ``statusCallback``).

TwiML URLs may be absolute or relative to the URL the document came from (twilio-api.md §5.1 ``action``, §5.3
``<Redirect>``). Twilio only fetches http and https URLs (error 11100 "Invalid URL format": "Make sure you
submit a fully qualified URL including: protocol (http:// or https://), hostname, ...").
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from kittiwake.twiml.errors import INVALID_URL_FORMAT, TwimlError

_SCHEMES = frozenset({"http", "https"})


def _has_control_or_space(url: str) -> bool:
    # RFC 3986 allows no raw spaces or controls; a CR/LF here would also split the HTTP request line.
    return any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url)


def resolve_url(base: str, target: str, *, code: int = INVALID_URL_FORMAT) -> str:
    """``target`` resolved against ``base`` (the URL of the current document); it must be http(s) with a host.

    Raises :class:`TwimlError` with ``code`` (11100 by default; a caller checking ``statusCallback`` passes 14105).
    """
    target = target.strip()
    if not target:
        raise TwimlError(code, "empty URL")
    if _has_control_or_space(target):
        raise TwimlError(code, f"URL contains whitespace or control characters: {target!r}")
    try:
        resolved = urljoin(base.strip(), target)
        parts = urlsplit(resolved)
        hostname = parts.hostname
    except ValueError as exc:  # e.g. an unbalanced IPv6 bracket
        raise TwimlError(code, f"malformed URL {target!r}: {exc}") from exc
    if parts.scheme.lower() not in _SCHEMES:
        raise TwimlError(code, f"only http and https URLs can be fetched, not {resolved!r}")
    if not hostname:
        raise TwimlError(code, f"URL has no host: {resolved!r}")
    if _has_control_or_space(resolved):
        raise TwimlError(code, f"URL contains whitespace or control characters: {resolved!r}")
    return resolved
