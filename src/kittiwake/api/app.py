"""The Starlette application: Twilio's 2010-04-01 routes, error handling, /healthz and /openapi.json.

Every path exists with a ``.json`` suffix, a ``.xml`` suffix and none (XML), as on api.twilio.com.
Whatever goes wrong, the client gets Twilio's error format in the format its path asked for.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kittiwake.api import accounts, applications, messages, numbers, sim
from kittiwake.api.http import JSON_TYPE, ApiContext, format_of, render_error
from kittiwake.api.openapi import build_openapi
from kittiwake.errors import TwilioError, not_found

log = logging.getLogger(__name__)


class FormatSuffix(Convertor[str]):
    """``.json``, ``.xml`` or nothing at the end of a path."""

    regex = r"(?:\.json|\.xml)?"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class SidSegment(Convertor[str]):
    """A path segment without dots, so that ``SM….json`` splits into the SID and its suffix."""

    regex = r"[^/.]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fmt", FormatSuffix())
register_url_convertor("sid", SidSegment())

ACCOUNT = "/2010-04-01/Accounts/{account_sid:sid}"


def _routes() -> list[Route]:
    def r(path: str, endpoint: Any, methods: list[str]) -> Route:
        return Route(path + "{fmt:fmt}", endpoint, methods=methods)

    return [
        r("/2010-04-01/Accounts", accounts.list_accounts, ["GET"]),
        r("/2010-04-01/Accounts", accounts.create_account, ["POST"]),
        r(ACCOUNT, accounts.fetch_account, ["GET"]),
        r(ACCOUNT, accounts.update_account, ["POST"]),
        r(f"{ACCOUNT}/Messages", messages.list_messages, ["GET"]),
        r(f"{ACCOUNT}/Messages", messages.create_message, ["POST"]),
        r(f"{ACCOUNT}/Messages/{{sid:sid}}", messages.fetch_message, ["GET"]),
        r(f"{ACCOUNT}/Messages/{{sid:sid}}", messages.update_message, ["POST"]),
        r(f"{ACCOUNT}/Messages/{{sid:sid}}", messages.delete_message, ["DELETE"]),
        r(f"{ACCOUNT}/SMS/Messages", messages.list_sms_messages, ["GET"]),
        r(f"{ACCOUNT}/SMS/Messages", messages.create_sms_message, ["POST"]),
        r(f"{ACCOUNT}/SMS/Messages/{{sid:sid}}", messages.fetch_sms_message, ["GET"]),
        r(f"{ACCOUNT}/IncomingPhoneNumbers", numbers.list_numbers, ["GET"]),
        r(f"{ACCOUNT}/IncomingPhoneNumbers", numbers.create_number, ["POST"]),
        r(f"{ACCOUNT}/IncomingPhoneNumbers/{{sid:sid}}", numbers.fetch_number, ["GET"]),
        r(f"{ACCOUNT}/IncomingPhoneNumbers/{{sid:sid}}", numbers.update_number, ["POST"]),
        r(f"{ACCOUNT}/IncomingPhoneNumbers/{{sid:sid}}", numbers.delete_number, ["DELETE"]),
        r(f"{ACCOUNT}/SMS/ShortCodes", numbers.list_short_codes, ["GET"]),
        r(f"{ACCOUNT}/SMS/ShortCodes/{{sid:sid}}", numbers.fetch_short_code, ["GET"]),
        r(f"{ACCOUNT}/SMS/ShortCodes/{{sid:sid}}", numbers.update_short_code, ["POST"]),
        r(f"{ACCOUNT}/Applications", applications.list_applications, ["GET"]),
        r(f"{ACCOUNT}/Applications", applications.create_application, ["POST"]),
        r(f"{ACCOUNT}/Applications/{{sid:sid}}", applications.fetch_application, ["GET"]),
        r(f"{ACCOUNT}/Applications/{{sid:sid}}", applications.update_application, ["POST"]),
        r(f"{ACCOUNT}/Applications/{{sid:sid}}", applications.delete_application, ["DELETE"]),
        Route("/sim/messages", sim.list_sim_messages, methods=["GET"]),
        Route("/sim/messages", sim.clear_sim_messages, methods=["DELETE"]),
        Route("/sim/inbound", sim.receive_inbound, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON_TYPE)


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's counters (no account data; see kittiwake.metrics)."""
    registry = request.app.state.kittiwake.metrics
    text = registry.render() if registry is not None else ""
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> Response:
    """The description, built once; its `servers` entry follows each request's own base URL (never cached:
    it comes from the Host header)."""
    spec: dict[str, Any] | None = getattr(request.app.state, "openapi", None)
    if spec is None:
        spec = build_openapi()
        request.app.state.openapi = spec
    return Response(
        orjson.dumps({**spec, "servers": [{"url": str(request.base_url).rstrip("/")}]}), media_type=JSON_TYPE
    )


async def _twilio_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TwilioError)
    return render_error(format_of(request), exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = TwilioError.of(20004)
    elif exc.status_code == 404:
        error = not_found(request.url.path)
    else:
        error = TwilioError(exc.status_code, exc.status_code, str(exc.detail))
    return render_error(format_of(request), error, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return render_error(format_of(request), TwilioError(20500, 500, "An internal server error occurred"))


def create_app(ctx: ApiContext) -> Starlette:
    """The ASGI app for one process; ``ctx`` carries the store, settings and clock."""
    app = Starlette(
        routes=_routes(),
        exception_handlers={TwilioError: _twilio_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.kittiwake = ctx
    return app
