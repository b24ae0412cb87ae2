"""The Accounts resource: fetch your own, create and list subaccounts, update name and status (§7.4).

A subaccount's credentials reach only the subaccount; its owner's credentials reach both. A suspended
or closed account can authenticate but do nothing; only its owner can reactivate it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kittiwake import provisioning
from kittiwake.api.http import authenticate, context, format_of, read_form, render, render_list
from kittiwake.api.pagination import envelope, parse_page_params
from kittiwake.api.representations import PREFIX, account_dict, suffix
from kittiwake.domain import AccountStatus, SidPrefix, is_sid
from kittiwake.errors import TwilioError, invalid_parameter, not_found
from kittiwake.models import Account
from kittiwake.store.base import AccountFilter, Changes, Page, PageRequest

STATUSES = frozenset(s.value for s in AccountStatus)


async def _owned(request: Request) -> tuple[Account, Account]:
    """The caller, and the account in the path if the caller is it or owns it (404 otherwise)."""
    caller = await authenticate(request)
    sid = request.path_params["account_sid"]
    if sid == caller.sid:
        return caller, caller
    found = await context(request).store.get_account(sid) if is_sid(sid, SidPrefix.ACCOUNT) else None
    if found is None or found.owner_account_sid != caller.sid:
        raise not_found(request.url.path)
    return caller, found


async def fetch_account(request: Request) -> Response:
    fmt = format_of(request)
    _, account = await _owned(request)
    return render(fmt, 200, "Account", account_dict(account, fmt))


async def update_account(request: Request) -> Response:
    caller, account = await _owned(request)
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_request_bytes)
    values: dict[str, object] = {}
    name = form.get("FriendlyName")
    if name is not None:
        if len(name) > 64:
            raise invalid_parameter("FriendlyName is limited to 64 characters")
        values["friendly_name"] = name
    status = form.get("Status")
    if status is not None:
        if status not in STATUSES:
            raise invalid_parameter(f"Status must be one of active, suspended, closed; got {status!r}")
        if account.sid == caller.sid and status != account.status.value:
            raise TwilioError.of(20403, detail="An account cannot change its own status; its owner can")
        if account.status is AccountStatus.CLOSED and status != AccountStatus.CLOSED.value:
            raise invalid_parameter("A closed account cannot be reopened")
        values["status"] = status
    if values:
        account = await ctx.store.update_account(account.sid, Changes(values), ctx.clock.now_micros()) or account
    fmt = format_of(request)
    return render(fmt, 200, "Account", account_dict(account, fmt))


async def create_account(request: Request) -> Response:
    caller = await authenticate(request)
    if caller.is_subaccount:
        raise TwilioError.of(20403, detail="A subaccount cannot create subaccounts")
    ctx = context(request)
    form = await read_form(request, ctx.settings.max_request_bytes)
    name = form.get("FriendlyName")
    if name is not None and len(name) > 64:
        raise invalid_parameter("FriendlyName is limited to 64 characters")
    account = await provisioning.create_account(ctx.store, ctx.clock, name, owner=caller)
    fmt = format_of(request)
    return render(fmt, 201, "Account", account_dict(account, fmt))


async def list_accounts(request: Request) -> Response:
    caller = await authenticate(request)
    query = request.query_params
    params = parse_page_params(query)
    status = query.get("Status") or None
    if status is not None and status not in STATUSES:
        raise invalid_parameter(f"Status must be one of active, suspended, closed; got {status!r}")
    filters = AccountFilter(query.get("FriendlyName") or None, status)
    if caller.is_subaccount:
        # A subaccount sees only itself.
        matches = (filters.friendly_name in (None, caller.friendly_name)) and (filters.status in (None, caller.status))
        page: Page[Account] = Page([caller] if matches and params.offset == 0 else [], False)
    else:
        offset = params.token if params.token is not None else params.offset
        page = await context(request).store.list_accounts(caller.sid, filters, PageRequest(params.size, offset))
    fmt = format_of(request)
    echo = [(k, query[k]) for k in ("FriendlyName", "Status") if query.get(k)]
    meta = envelope(f"{PREFIX}/Accounts{suffix(fmt)}", echo, params, page)
    return render_list(fmt, "accounts", "Accounts", "Account", meta, [account_dict(a, fmt) for a in page.items])
