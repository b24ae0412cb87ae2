"""Twilio's list paging: PageSize/Page/PageToken in, the envelope of page URIs out (twilio-api.md §1.2).

Pure functions. The official client follows ``next_page_uri`` verbatim (prefixing its base URL), so every
URI is an absolute path under ``/2010-04-01``. A PageToken is ``PA`` followed by a decimal cursor whose
meaning each list defines (the last message's sequence number, or a row offset).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from kittiwake.errors import invalid_parameter
from kittiwake.store.base import Page

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
TOKEN_PREFIX = "PA"


@dataclass(frozen=True, slots=True)
class PageParams:
    size: int
    page: int
    token: int | None

    @property
    def offset(self) -> int:
        return self.page * self.size


def parse_page_params(query: Mapping[str, str]) -> PageParams:
    """Read PageSize (1..1000, default 50; larger values are clamped, as clients send ``limit`` as is),
    Page (>= 0) and PageToken; anything else is a 400."""
    size = _int_param(query, "PageSize", DEFAULT_PAGE_SIZE)
    if size < 1:
        raise invalid_parameter(f"PageSize must be between 1 and {MAX_PAGE_SIZE}, got {size}")
    page = _int_param(query, "Page", 0)
    if page < 0:
        raise invalid_parameter(f"Page must be 0 or greater, got {page}")
    raw_token = query.get("PageToken")
    token = None
    if raw_token:
        digits = raw_token[len(TOKEN_PREFIX) :]
        if not raw_token.startswith(TOKEN_PREFIX) or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
            raise invalid_parameter(f"Invalid PageToken {raw_token!r}")
        token = int(digits)
    return PageParams(min(size, MAX_PAGE_SIZE), page, token)


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 9:
        raise invalid_parameter(f"{name} must be an integer, got {raw!r}")
    return int(raw)


def envelope(
    path: str,
    filters: Sequence[tuple[str, str]],
    params: PageParams,
    page: Page[Any],
    *,
    legacy: bool = False,
) -> dict[str, Any]:
    """The paging keys of a list response; ``path`` already carries the format suffix."""

    def uri(page_number: int, token: int | None = None) -> str:
        query = [*filters, ("PageSize", str(params.size)), ("Page", str(page_number))]
        if token is not None:
            query.append(("PageToken", f"{TOKEN_PREFIX}{token}"))
        return f"{path}?{urlencode(query)}"

    count = len(page.items)
    start = params.offset
    meta: dict[str, Any] = {
        "first_page_uri": uri(0),
        "end": start + count - 1 if count else start,
        "previous_page_uri": uri(params.page - 1) if params.page > 0 else None,
        "uri": uri(params.page, params.token),
        "page_size": params.size,
        "start": start,
        "next_page_uri": uri(params.page + 1, page.last_key) if page.has_more else None,
        "page": params.page,
    }
    if legacy:
        total = page.total or 0
        num_pages = max(1, math.ceil(total / params.size))
        meta["num_pages"] = num_pages
        meta["total"] = total
        meta["last_page_uri"] = uri(num_pages - 1)
    return meta
