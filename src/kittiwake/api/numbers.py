"""IncomingPhoneNumbers (long codes and toll-free numbers) and SMS/ShortCodes (twilio-api.md §7.1, §7.3).

Both resources are views over the one table of provisioned senders; short codes cannot be created or
deleted through the API (Twilio provisions them out of band; here ``kittiwake numbers add --short-code``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kittiwake import provisioning
from kittiwake.api.http import account_in_path, context, format_of, read_form, render, render_list
from kittiwake.api.pagination import envelope, parse_page_params
from kittiwake.api.representations import account_base, phone_number_dict, short_code_dict, suffix
from kittiwake.domain import NumberKind, SidPrefix, is_sid
from kittiwake.errors import TwilioError, invalid_parameter, not_found
from kittiwake.models import PhoneNumber
from kittiwake.store.base import Changes, NumberFilter, PageRequest

NUMBER_PARAMS = {
    "FriendlyName": "friendly_name",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
    "SmsApplicationSid": "sms_application_sid",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
}
SHORT_CODE_PARAMS = {
    "FriendlyName": "friendly_name",
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsFallbackMethod": "sms_fallback_method",
}


async def _settings(request: Request, account_sid: str, mapping: dict[str, str]) -> dict[str, object]:
    form = await read_form(request, context(request).settings.max_request_bytes)
    values = provisioning.settings_from(form, mapping)
    app_sid = values.get("sms_application_sid")
    if app_sid is not None:
        valid = is_sid(str(app_sid), SidPrefix.APPLICATION)
        if not valid or await context(request).store.get_application(account_sid, str(app_sid)) is None:
            raise invalid_parameter(f"SmsApplicationSid {app_sid} is not an Application of this account")
    if "friendly_name" in values and len(str(values["friendly_name"])) > 64:
        raise invalid_parameter("FriendlyName is limited to 64 characters")
    return values


async def create_number(request: Request) -> Response:
    """Claim a number: ``PhoneNumber`` (any valid number, with the simulated carrier) or ``AreaCode``."""
    account = await account_in_path(request, writing=True)
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_request_bytes)
    number = form.get("PhoneNumber")
    if not number:
        area_code = form.get("AreaCode")
        if not area_code:
            raise invalid_parameter("A PhoneNumber or an AreaCode is required")
        number = provisioning.number_in_area(area_code)
        if number is None:
            raise TwilioError.of(21452, detail=f"No phone numbers found in area code {area_code}")
    if provisioning.number_kind(number.strip()) is NumberKind.SHORT_CODE:
        raise TwilioError.of(21421, value=number)
    values = provisioning.settings_from(form, NUMBER_PARAMS)
    app_sid = values.get("sms_application_sid")
    if app_sid is not None and await ctx.store.get_application(account.sid, str(app_sid)) is None:
        raise invalid_parameter(f"SmsApplicationSid {app_sid} is not an Application of this account")
    record = await provisioning.provision_number(ctx.store, ctx.clock, account.sid, number, values)
    fmt = format_of(request)
    return render(fmt, 201, "IncomingPhoneNumber", phone_number_dict(record, fmt))


async def _fetch(request: Request, *, short_code: bool, writing: bool = False) -> PhoneNumber:
    account = await account_in_path(request, writing=writing)
    sid = request.path_params["sid"]
    prefix = SidPrefix.SHORT_CODE if short_code else SidPrefix.PHONE_NUMBER
    number = await context(request).store.get_number(account.sid, sid) if is_sid(sid, prefix) else None
    if number is None:
        raise not_found(request.url.path)
    return number


async def fetch_number(request: Request) -> Response:
    fmt = format_of(request)
    return render(fmt, 200, "IncomingPhoneNumber", phone_number_dict(await _fetch(request, short_code=False), fmt))


async def fetch_short_code(request: Request) -> Response:
    fmt = format_of(request)
    return render(fmt, 200, "ShortCode", short_code_dict(await _fetch(request, short_code=True), fmt))


async def _update(request: Request, *, short_code: bool) -> PhoneNumber:
    number = await _fetch(request, short_code=short_code, writing=True)
    values = await _settings(request, number.account_sid, SHORT_CODE_PARAMS if short_code else NUMBER_PARAMS)
    ctx = context(request)
    if not values:
        return number
    updated = await ctx.store.update_number(number.account_sid, number.sid, Changes(values), ctx.clock.now_micros())
    if updated is None:
        raise not_found(request.url.path)
    return updated


async def update_number(request: Request) -> Response:
    fmt = format_of(request)
    return render(fmt, 200, "IncomingPhoneNumber", phone_number_dict(await _update(request, short_code=False), fmt))


async def update_short_code(request: Request) -> Response:
    fmt = format_of(request)
    return render(fmt, 200, "ShortCode", short_code_dict(await _update(request, short_code=True), fmt))


async def delete_number(request: Request) -> Response:
    number = await _fetch(request, short_code=False, writing=True)
    await context(request).store.delete_number(number.account_sid, number.sid)
    return Response(status_code=204)


async def _list(request: Request, *, short_code: bool) -> Response:
    account = await account_in_path(request)
    query = request.query_params
    params = parse_page_params(query)
    number_param = "ShortCode" if short_code else "PhoneNumber"
    echo = [(k, query[k]) for k in ("FriendlyName", number_param) if query.get(k)]
    filters = NumberFilter(short_code, query.get("FriendlyName") or None, query.get(number_param) or None)
    offset = params.token if params.token is not None else params.offset
    page = await context(request).store.list_numbers(account.sid, filters, PageRequest(params.size, offset))
    fmt = format_of(request)
    resource = "SMS/ShortCodes" if short_code else "IncomingPhoneNumbers"
    meta = envelope(f"{account_base(account.sid)}/{resource}{suffix(fmt)}", echo, params, page)
    if short_code:
        items = [short_code_dict(n, fmt) for n in page.items]
        return render_list(fmt, "short_codes", "ShortCodes", "ShortCode", meta, items)
    items = [phone_number_dict(n, fmt) for n in page.items]
    return render_list(fmt, "incoming_phone_numbers", "IncomingPhoneNumbers", "IncomingPhoneNumber", meta, items)


async def list_numbers(request: Request) -> Response:
    return await _list(request, short_code=False)


async def list_short_codes(request: Request) -> Response:
    return await _list(request, short_code=True)
