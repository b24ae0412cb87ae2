"""The HTTP edge shared by every resource: formats, errors, form bodies and authentication.

Twilio picks the response format from the path suffix, not the Accept header: ``.json`` is JSON,
``.xml`` or no suffix is XML (twilio-api.md §1). Errors are always one of Twilio's two error shapes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from kittiwake.api import xml
from kittiwake.clock import Clock
from kittiwake.config import Settings
from kittiwake.domain import AccountStatus
from kittiwake.errors import TwilioError, not_found
from kittiwake.metrics import Metrics
from kittiwake.models import Account
from kittiwake.pacing import RatePolicy
from kittiwake.store.base import FullStore

JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "application/xml; charset=utf-8"
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What every handler needs, built once by the composition root."""

    store: FullStore
    settings: Settings
    clock: Clock
    policy: RatePolicy
    metrics: Metrics | None = None


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.kittiwake
    return ctx


def format_of(request: Request) -> str:
    path: str = request.scope["path"]
    return "json" if path.endswith(".json") else "xml"


def render(fmt: str, status: int, element: str, record: Mapping[str, Any]) -> Response:
    if fmt == "json":
        return Response(orjson.dumps(record), status_code=status, media_type=JSON_TYPE)
    return Response(xml.render_instance(element, record), status_code=status, media_type=XML_TYPE)


def render_list(
    fmt: str,
    list_key: str,
    element: str,
    item_element: str,
    meta: dict[str, Any],
    items: list[dict[str, Any]],
) -> Response:
    if fmt == "json":
        return Response(orjson.dumps({**meta, list_key: items}), media_type=JSON_TYPE)
    return Response(xml.render_list(element, item_element, meta, items), media_type=XML_TYPE)


def render_error(fmt: str, error: TwilioError, extra_headers: Mapping[str, str] | None = None) -> Response:
    headers = dict(extra_headers or {})
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
    if fmt == "json":
        body = orjson.dumps(error.as_dict())
        return Response(body, status_code=error.status, media_type=JSON_TYPE, headers=headers)
    text = xml.render_error(error.status, error.message, error.code, error.more_info)
    return Response(text, status_code=error.status, media_type=XML_TYPE, headers=headers)


class Form:
    """A parsed ``application/x-www-form-urlencoded`` body: PascalCase keys, repeatable values."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str] = {}
        for key, value in pairs:
            self._first.setdefault(key, value)

    def get(self, key: str) -> str | None:
        return self._first.get(key)

    def getall(self, key: str) -> list[str]:
        return [value for k, value in self._pairs if k == key]

    def __contains__(self, key: object) -> bool:
        return key in self._first

    def keys(self) -> list[str]:
        return list(self._first)


async def read_form(request: Request, limit: int) -> Form:
    """The request body as form fields, refusing bodies over ``limit`` bytes before reading them all.

    Non-form bodies parse to nothing, which then fails the resource's own required-parameter check,
    as Twilio answers a JSON body with 21604 (twilio-api.md §9).
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise TwilioError.of(20413, limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TwilioError.of(20413, limit=limit)
        chunks.append(chunk)
    content_type = request.headers.get("content-type", FORM_TYPE).split(";", 1)[0].strip().lower()
    if content_type != FORM_TYPE:
        return Form([])
    try:
        text = b"".join(chunks).decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=200)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TwilioError.of(20001, detail=f"The request body is not valid form data: {exc}") from exc
    return Form(pairs)


def _credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


async def authenticate(request: Request) -> Account:
    """The account whose credentials came with the request (401/20003 when none is valid).

    A suspended or closed account can still authenticate but may do nothing (403/20403).
    """
    credentials = _credentials(request)
    if credentials is None:
        raise TwilioError.of(20003)
    username, password = credentials
    account = await context(request).store.get_account(username) if username.startswith("AC") else None
    # Compare even when the account is unknown, so timing does not tell which SIDs exist.
    expected = account.auth_token if account is not None else "x" * 32
    if not hmac.compare_digest(expected.encode(), password.encode()) or account is None:
        raise TwilioError.of(20003)
    if account.status is not AccountStatus.ACTIVE:
        raise TwilioError.of(20403, detail=f"Account {account.sid} is {account.status.value}")
    return account


async def account_in_path(request: Request, *, writing: bool = False) -> Account:
    """The account named in the path, which the caller must be, or own as a subaccount.

    Another account's path answers 404/20404, exactly as a path that does not exist, so nothing is
    learnt about other accounts. Writing to a suspended subaccount answers 403/20403.
    """
    caller = await authenticate(request)
    sid = request.path_params["account_sid"]
    if sid == caller.sid:
        return caller
    target = await context(request).store.get_account(sid)
    if target is None or target.owner_account_sid != caller.sid:
        raise not_found(request.url.path)
    if writing and target.status is not AccountStatus.ACTIVE:
        raise TwilioError.of(20403, detail=f"Account {target.sid} is {target.status.value}")
    return target
