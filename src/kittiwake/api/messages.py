"""The Messages resource (``/Messages``) and the legacy SMS resource of the seed (``/SMS/Messages``).

Both are views over one table of messages: a message created through either shows in both lists.
They differ in body limit (160 vs 1600 characters), representation, and, later, in which status
callbacks fire (twilio-api.md §2, §3).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from kittiwake.api.http import (
    account_in_path,
    context,
    format_of,
    read_form,
    render,
    render_list,
)
from kittiwake.api.pagination import envelope, parse_page_params
from kittiwake.api.representations import account_base, message_dict, sms_message_dict, suffix
from kittiwake.domain import Direction, MessageStatus, SidPrefix, is_sid, new_sid, to_micros
from kittiwake.errors import TwilioError, invalid_parameter, not_found
from kittiwake.models import Application, Message
from kittiwake.phone import AddressKind, classify, count_segments, normalize_destination
from kittiwake.store.base import Changes, MessageFilter, PageRequest, QueueFull

LEGACY_BODY_LIMIT = 160
BODY_LIMIT = 1600
MAX_VALIDITY = 36000

# Simulated-carrier magic destinations that fail at create, as Twilio's test credentials do
# (documented in the README).
MAGIC_TO_ERRORS = {"+15005550001": 21211, "+15005550004": 21610, "+15005550009": 21614}

# Statuses in which a message is still in Kittiwake's hands: it can be neither redacted nor deleted.
IN_FLIGHT = frozenset({MessageStatus.ACCEPTED, MessageStatus.QUEUED, MessageStatus.SENDING})


def unmangle_plus(raw: str) -> str:
    """Undo the commonest client mistake: ``To=+1415…`` sent unencoded arrives as `` 1415…``.

    In form encoding '+' means space, so a leading space before digits can only be a lost '+'.
    """
    if raw[:1] == " " and raw[1:].isdigit():
        return "+" + raw[1:]
    return raw


def _require_url(value: str | None, code: int = 21609) -> str | None:
    """A callback URL must be absolute http(s) with a host (Twilio error 21609 for StatusCallback)."""
    if value is None or value == "":
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        raise TwilioError(code, 400, f"The StatusCallback URL {value} is not a valid URL.") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname or len(value) > 4000:
        raise TwilioError(code, 400, f"The StatusCallback URL {value} is not a valid URL.")
    return value


async def _create(request: Request, *, legacy: bool) -> Response:
    account = await account_in_path(request, writing=True)
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_request_bytes)
    to_raw = unmangle_plus(form.get("To") or "")
    from_raw = unmangle_plus(form.get("From") or "")
    service_sid = None if legacy else form.get("MessagingServiceSid")
    body = form.get("Body")
    if not to_raw:
        raise TwilioError.of(21604)
    if not from_raw and not service_sid:
        raise TwilioError.of(21603)
    if not body and (legacy or not form.getall("MediaUrl")):
        raise TwilioError.of(21602)
    body = body or ""
    limit = LEGACY_BODY_LIMIT if legacy else BODY_LIMIT
    if len(body) > limit:
        raise TwilioError.of(21605 if legacy else 21617)
    if not from_raw:
        # Messaging Services live in a different API (messaging.twilio.com) that Kittiwake does not
        # serve yet, so no MG… SID can name one of this account's services.
        raise TwilioError.of(21701, value=service_sid)
    from_number = from_raw.strip()
    if classify(from_number) not in {AddressKind.E164, AddressKind.SHORT_CODE}:
        raise TwilioError.of(21212, value=from_raw)
    sender = await ctx.store.find_number(from_number)
    if sender is None or sender.account_sid != account.sid:
        raise TwilioError.of(21606, value=from_raw)
    to = normalize_destination(to_raw, from_number, short_code_region=ctx.settings.short_code_region)
    if to is None:
        raise TwilioError.of(21211, value=to_raw)
    magic = MAGIC_TO_ERRORS.get(to)
    if magic is not None:
        raise TwilioError.of(magic, value=to)
    if await ctx.store.is_opted_out(sender.phone_number, to):
        raise TwilioError.of(21610)
    status_callback = _require_url(form.get("StatusCallback"))
    application = await _application(request, account.sid, form.get("ApplicationSid"))
    validity = _validity(form.get("ValidityPeriod")) if not legacy else MAX_VALIDITY
    now = ctx.clock.now_micros()
    message = Message(
        sid=new_sid(SidPrefix.SMS_MESSAGE),
        account_sid=account.sid,
        api="legacy" if legacy else "modern",
        from_=sender.phone_number,
        to=to,
        body=body,
        status=MessageStatus.QUEUED,
        direction=Direction.OUTBOUND_API,
        num_segments=count_segments(body),
        num_media=len(form.getall("MediaUrl")),
        status_callback=status_callback,
        application_sid=application.sid if application else None,
        validity_period=validity,
        date_created=now,
        date_updated=now,
        price_unit="USD",
        callback_url=callback_url(legacy, status_callback, application),
        expires_at=now + validity * 1_000_000,
    )
    rate = ctx.policy.rate_for(sender.phone_number, sender.kind.value)
    cap = int(ctx.settings.pacing.max_backlog_seconds * rate.segments_per_second)
    try:
        stored = await ctx.store.enqueue_message(message, cap)
    except QueueFull:
        raise TwilioError.of(21611) from None
    fmt = format_of(request)
    if legacy:
        return render(fmt, 201, "SMSMessage", sms_message_dict(stored, fmt))
    return render(fmt, 201, "Message", message_dict(stored, fmt))


async def _application(request: Request, account_sid: str, sid: str | None) -> Application | None:
    if not sid:
        return None
    found = (
        await context(request).store.get_application(account_sid, sid) if is_sid(sid, SidPrefix.APPLICATION) else None
    )
    if found is None:
        raise invalid_parameter(f"ApplicationSid {sid} is not an Application of this account")
    return found


def callback_url(legacy: bool, status_callback: str | None, application: Application | None) -> str | None:
    """Where status callbacks go. Legacy (the seed): the Application's SmsStatusCallback takes precedence
    over the StatusCallback parameter. Modern: StatusCallback wins, else the Application's
    MessageStatusCallback (twilio-api.md §2.2, §3.2)."""
    if legacy:
        return (application.sms_status_callback if application else None) or status_callback
    return status_callback or (application.message_status_callback if application else None)


def _validity(raw: str | None) -> int:
    if raw is None or raw == "":
        return MAX_VALIDITY
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_VALIDITY:
        raise TwilioError.of(21624)
    return int(raw)


async def create_message(request: Request) -> Response:
    return await _create(request, legacy=False)


async def create_sms_message(request: Request) -> Response:
    return await _create(request, legacy=True)


async def _fetch(request: Request, *, writing: bool = False) -> Message:
    account = await account_in_path(request, writing=writing)
    sid = request.path_params["sid"]
    message = await context(request).store.get_message(account.sid, sid) if is_sid(sid, SidPrefix.SMS_MESSAGE) else None
    if message is None:
        raise not_found(request.url.path)
    return message


async def fetch_message(request: Request) -> Response:
    fmt = format_of(request)
    return render(fmt, 200, "Message", message_dict(await _fetch(request), fmt))


async def fetch_sms_message(request: Request) -> Response:
    fmt = format_of(request)
    return render(fmt, 200, "SMSMessage", sms_message_dict(await _fetch(request), fmt))


def parse_date_param(name: str, raw: str) -> tuple[int, int]:
    """The half-open interval [start, end) of epoch microseconds a DateSent value names.

    A date (``2010-08-18``, what the docs show) names that UTC day; a time (``2010-08-18T20:01:40Z``, what
    twilio-python 9 sends, or RFC 2822) names that second. Parsed leniently, as Twilio's examples vary.
    """
    text = raw.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return to_micros(start), to_micros(start + timedelta(days=1))
    moment: datetime | None = None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            moment = None
    if moment is None:
        raise invalid_parameter(f"{name} must be a date (YYYY-MM-DD) or a time, got {raw!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    start_micros = to_micros(moment.replace(microsecond=0))
    return start_micros, start_micros + 1_000_000


def _message_filter(request: Request) -> tuple[MessageFilter, list[tuple[str, str]]]:
    query = request.query_params
    echo: list[tuple[str, str]] = []
    values: dict[str, str | None] = {"to": None, "from_": None}
    for param, field in (("To", "to"), ("From", "from_")):
        raw = query.get(param)
        if raw:
            values[field] = unmangle_plus(raw).strip()
            echo.append((param, raw))
    sent_from: int | None = None
    sent_until: int | None = None
    for param in ("DateSent", "DateSent>", "DateSent<"):
        raw = query.get(param)
        if not raw:
            continue
        echo.append((param, raw))
        start, end = parse_date_param(param, raw)
        # "DateSent>" means on or after, "DateSent<" on or before (twilio-api.md §2.3).
        if param != "DateSent<":
            sent_from = start if sent_from is None else max(sent_from, start)
        if param != "DateSent>":
            sent_until = end if sent_until is None else min(sent_until, end)
    return MessageFilter(values["to"], values["from_"], sent_from, sent_until), echo


async def _list(request: Request, *, legacy: bool) -> Response:
    account = await account_in_path(request)
    filters, echo = _message_filter(request)
    params = parse_page_params(request.query_params)
    page = await context(request).store.list_messages(
        account.sid, filters, PageRequest(params.size, params.offset, params.token), with_total=legacy
    )
    fmt = format_of(request)
    resource = "SMS/Messages" if legacy else "Messages"
    meta = envelope(f"{account_base(account.sid)}/{resource}{suffix(fmt)}", echo, params, page, legacy=legacy)
    if legacy:
        items = [sms_message_dict(m, fmt) for m in page.items]
        return render_list(fmt, "sms_messages", "SMSMessages", "SMSMessage", meta, items)
    return render_list(fmt, "messages", "Messages", "Message", meta, [message_dict(m, fmt) for m in page.items])


async def list_messages(request: Request) -> Response:
    return await _list(request, legacy=False)


async def list_sms_messages(request: Request) -> Response:
    return await _list(request, legacy=True)


async def update_message(request: Request) -> Response:
    """Redact (``Body=""``) a message that has left the queue, or cancel a scheduled one."""
    message = await _fetch(request, writing=True)
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_request_bytes)
    changes: dict[str, object] = {}
    body = form.get("Body")
    status = form.get("Status")
    if body is not None:
        if body != "":
            raise invalid_parameter("Body can only be updated to an empty string (redaction)")
        if message.status in IN_FLIGHT:
            raise invalid_parameter(f"Message {message.sid} is {message.status.value} and cannot be redacted yet")
        changes["body"] = ""
    if status is not None:
        if status != MessageStatus.CANCELED.value:
            raise invalid_parameter("Status can only be updated to 'canceled'")
        if message.status is not MessageStatus.SCHEDULED:
            raise invalid_parameter(
                f"Message {message.sid} is {message.status.value}; only scheduled messages can be canceled"
            )
        changes["status"] = MessageStatus.CANCELED.value
    updated = message
    if changes:
        found = await ctx.store.update_message(
            message.account_sid, message.sid, Changes(changes), ctx.clock.now_micros()
        )
        updated = found or message
    fmt = format_of(request)
    return render(fmt, 200, "Message", message_dict(updated, fmt))


async def delete_message(request: Request) -> Response:
    message = await _fetch(request, writing=True)
    if message.status in IN_FLIGHT:
        raise invalid_parameter(f"Message {message.sid} is {message.status.value} and cannot be deleted yet")
    await context(request).store.delete_message(message.account_sid, message.sid)
    return Response(status_code=204)
