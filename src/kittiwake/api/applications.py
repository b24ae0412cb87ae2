"""The Applications resource: full CRUD of the URL bundles numbers and messages can refer to (§7.2)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kittiwake import provisioning
from kittiwake.api.http import account_in_path, context, format_of, read_form, render, render_list
from kittiwake.api.pagination import envelope, parse_page_params
from kittiwake.api.representations import account_base, application_dict, suffix
from kittiwake.domain import SidPrefix, is_sid, new_sid
from kittiwake.errors import invalid_parameter, not_found
from kittiwake.models import Application
from kittiwake.store.base import Changes, PageRequest

APPLICATION_PARAMS = {
    "FriendlyName": "friendly_name",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
    "SmsStatusCallback": "sms_status_callback",
    "MessageStatusCallback": "message_status_callback",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
}


async def _values(request: Request) -> dict[str, object]:
    form = await read_form(request, context(request).settings.max_request_bytes)
    values = provisioning.settings_from(form, APPLICATION_PARAMS)
    if len(str(values.get("friendly_name") or "")) > 64:
        raise invalid_parameter("FriendlyName is limited to 64 characters")
    return values


async def create_application(request: Request) -> Response:
    account = await account_in_path(request, writing=True)
    values = await _values(request)
    ctx = context(request)
    now = ctx.clock.now_micros()

    def text(column: str) -> str | None:
        value = values.get(column)
        return None if value is None else str(value)

    application = Application(
        sid=new_sid(SidPrefix.APPLICATION),
        account_sid=account.sid,
        friendly_name=text("friendly_name") or "",
        sms_url=text("sms_url"),
        sms_method=text("sms_method") or "POST",
        sms_fallback_url=text("sms_fallback_url"),
        sms_fallback_method=text("sms_fallback_method") or "POST",
        sms_status_callback=text("sms_status_callback"),
        message_status_callback=text("message_status_callback"),
        status_callback=text("status_callback"),
        status_callback_method=text("status_callback_method") or "POST",
        voice_url=text("voice_url"),
        voice_method=text("voice_method") or "POST",
        date_created=now,
        date_updated=now,
    )
    await ctx.store.add_application(application)
    fmt = format_of(request)
    return render(fmt, 201, "Application", application_dict(application, fmt))


async def _fetch(request: Request, *, writing: bool = False) -> Application:
    account = await account_in_path(request, writing=writing)
    sid = request.path_params["sid"]
    found = (
        await context(request).store.get_application(account.sid, sid) if is_sid(sid, SidPrefix.APPLICATION) else None
    )
    if found is None:
        raise not_found(request.url.path)
    return found


async def fetch_application(request: Request) -> Response:
    fmt = format_of(request)
    return render(fmt, 200, "Application", application_dict(await _fetch(request), fmt))


async def update_application(request: Request) -> Response:
    application = await _fetch(request, writing=True)
    values = await _values(request)
    ctx = context(request)
    if values:
        changes = Changes(values)
        found = await ctx.store.update_application(
            application.account_sid, application.sid, changes, ctx.clock.now_micros()
        )
        application = found or application
    fmt = format_of(request)
    return render(fmt, 200, "Application", application_dict(application, fmt))


async def delete_application(request: Request) -> Response:
    application = await _fetch(request, writing=True)
    await context(request).store.delete_application(application.account_sid, application.sid)
    return Response(status_code=204)


async def list_applications(request: Request) -> Response:
    account = await account_in_path(request)
    query = request.query_params
    params = parse_page_params(query)
    name = query.get("FriendlyName") or None
    offset = params.token if params.token is not None else params.offset
    page = await context(request).store.list_applications(account.sid, name, PageRequest(params.size, offset))
    fmt = format_of(request)
    echo = [("FriendlyName", name)] if name else []
    meta = envelope(f"{account_base(account.sid)}/Applications{suffix(fmt)}", echo, params, page)
    items = [application_dict(a, fmt) for a in page.items]
    return render_list(fmt, "applications", "Applications", "Application", meta, items)
