"""Introspection of the simulated carrier for tests: what it took, per account, in submission order.

``GET /sim/messages`` (optional filters ``From``, ``To``) and ``DELETE /sim/messages``, authenticated as
the account (HTTP Basic, like the REST API) and showing only that account's traffic.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from starlette.requests import Request
from starlette.responses import Response

from kittiwake.api.http import JSON_TYPE, authenticate, context, read_form, render
from kittiwake.api.messages import unmangle_plus
from kittiwake.api.representations import message_dict
from kittiwake.errors import TwilioError
from kittiwake.receiving import receive_sms
from kittiwake.store.base import SimRecord


def iso_millis(micros: int) -> str:
    """ISO 8601 UTC with millisecond precision, e.g. ``2026-11-30T04:05:06.789Z``."""
    moment = datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _record(r: SimRecord) -> dict[str, object]:
    return {
        "sid": r.message_sid,
        "from": r.from_,
        "to": r.to,
        "body": r.body,
        "segments": r.segments,
        "submitted_at": iso_millis(r.submitted_at),
        "outcome": r.outcome,
        "error_code": r.error_code,
    }


async def list_sim_messages(request: Request) -> Response:
    account = await authenticate(request)
    query = request.query_params
    from_ = unmangle_plus(query["From"]).strip() if query.get("From") else None
    to = unmangle_plus(query["To"]).strip() if query.get("To") else None
    found = await context(request).store.list_sim_submissions(account.sid, from_, to, limit=1_000_000)
    return Response(orjson.dumps({"messages": [_record(r) for r in found]}), media_type=JSON_TYPE)


async def receive_inbound(request: Request) -> Response:
    """A simulated handset sends an SMS (form From, To, Body) to one of the caller's numbers: 201 + Message."""
    account = await authenticate(request)
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_request_bytes)
    from_raw, to_raw = unmangle_plus(form.get("From") or ""), unmangle_plus(form.get("To") or "")
    if not to_raw:
        raise TwilioError.of(21604)
    if not from_raw:
        raise TwilioError.of(21603)
    message = await receive_sms(
        ctx.store, ctx.clock, ctx.policy, ctx.settings,
        account_sid=account.sid, from_raw=from_raw, to_raw=to_raw, body=form.get("Body") or "",
    )  # fmt: skip
    return render("json", 201, "Message", message_dict(message, "json"))


async def clear_sim_messages(request: Request) -> Response:
    account = await authenticate(request)
    await context(request).store.clear_sim_submissions(account.sid)
    return Response(status_code=204)
