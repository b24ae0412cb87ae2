"""How each record looks on the wire: the snake_case dict Twilio's JSON carries.

The same dicts feed the XML renderer (which PascalCases the keys), so JSON and XML never disagree on
content. ``uri`` fields follow Twilio's rule: JSON URIs end in ``.json``, XML URIs have no suffix
(twilio-api.md §1).
"""

from __future__ import annotations

from typing import Any

from kittiwake.domain import API_VERSION, NumberKind, rfc2822
from kittiwake.models import Account, Application, Message, PhoneNumber

PREFIX = f"/{API_VERSION}"


def suffix(fmt: str) -> str:
    return ".json" if fmt == "json" else ""


def account_base(account_sid: str) -> str:
    return f"{PREFIX}/Accounts/{account_sid}"


def message_dict(m: Message, fmt: str) -> dict[str, Any]:
    """The modern Messages representation (OAI schema ``api.v2010.account.message``), keys in its order."""
    base = f"{account_base(m.account_sid)}/Messages/{m.sid}"
    sfx = suffix(fmt)
    return {
        "account_sid": m.account_sid,
        "api_version": API_VERSION,
        "body": m.body,
        "date_created": rfc2822(m.date_created),
        "date_sent": rfc2822(m.date_sent),
        "date_updated": rfc2822(m.date_updated),
        "direction": m.direction.value,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "from": m.from_,
        "messaging_service_sid": m.messaging_service_sid,
        "num_media": str(m.num_media),
        "num_segments": str(m.num_segments),
        "price": m.price,
        "price_unit": m.price_unit,
        "sid": m.sid,
        "status": m.status.value,
        "subresource_uris": {"media": f"{base}/Media{sfx}", "feedback": f"{base}/Feedback{sfx}"},
        "to": m.to,
        "uri": f"{base}{sfx}",
    }


def sms_message_dict(m: Message, fmt: str) -> dict[str, Any]:
    """The legacy /SMS/Messages representation, fields and order as Twilio's 2010 example (§2.4)."""
    return {
        "sid": m.sid,
        "date_created": rfc2822(m.date_created),
        "date_updated": rfc2822(m.date_updated),
        "date_sent": rfc2822(m.date_sent),
        "account_sid": m.account_sid,
        "to": m.to,
        "from": m.from_,
        "body": m.body,
        "status": m.status.value,
        "direction": m.direction.value,
        "api_version": API_VERSION,
        "price": m.price,
        "uri": f"{account_base(m.account_sid)}/SMS/Messages/{m.sid}{suffix(fmt)}",
    }


def phone_number_dict(n: PhoneNumber, fmt: str) -> dict[str, Any]:
    return {
        "sid": n.sid,
        "account_sid": n.account_sid,
        "friendly_name": n.friendly_name,
        "phone_number": n.phone_number,
        "api_version": API_VERSION,
        "date_created": rfc2822(n.date_created),
        "date_updated": rfc2822(n.date_updated),
        "sms_url": n.sms_url or "",
        "sms_method": n.sms_method,
        "sms_fallback_url": n.sms_fallback_url or "",
        "sms_fallback_method": n.sms_fallback_method,
        "sms_application_sid": n.sms_application_sid or "",
        "status_callback": n.status_callback or "",
        "status_callback_method": n.status_callback_method,
        "voice_url": "",
        "voice_method": "POST",
        "capabilities": {"voice": False, "sms": True, "mms": False, "fax": False},
        "status": "in-use",
        "origin": "twilio",
        "beta": False,
        "uri": f"{account_base(n.account_sid)}/IncomingPhoneNumbers/{n.sid}{suffix(fmt)}",
    }


def short_code_dict(n: PhoneNumber, fmt: str) -> dict[str, Any]:
    assert n.kind is NumberKind.SHORT_CODE
    return {
        "account_sid": n.account_sid,
        "api_version": API_VERSION,
        "date_created": rfc2822(n.date_created),
        "date_updated": rfc2822(n.date_updated),
        "friendly_name": n.friendly_name,
        "short_code": n.phone_number,
        "sid": n.sid,
        "sms_fallback_method": n.sms_fallback_method,
        "sms_fallback_url": n.sms_fallback_url,
        "sms_method": n.sms_method,
        "sms_url": n.sms_url,
        "uri": f"{account_base(n.account_sid)}/SMS/ShortCodes/{n.sid}{suffix(fmt)}",
    }


def application_dict(a: Application, fmt: str) -> dict[str, Any]:
    return {
        "sid": a.sid,
        "account_sid": a.account_sid,
        "friendly_name": a.friendly_name,
        "api_version": API_VERSION,
        "date_created": rfc2822(a.date_created),
        "date_updated": rfc2822(a.date_updated),
        "sms_url": a.sms_url,
        "sms_method": a.sms_method,
        "sms_fallback_url": a.sms_fallback_url,
        "sms_fallback_method": a.sms_fallback_method,
        "sms_status_callback": a.sms_status_callback,
        "message_status_callback": a.message_status_callback,
        "status_callback": a.status_callback,
        "status_callback_method": a.status_callback_method,
        "voice_url": a.voice_url,
        "voice_method": a.voice_method,
        "voice_fallback_url": None,
        "voice_fallback_method": "POST",
        "voice_caller_id_lookup": False,
        "public_application_connect_enabled": False,
        "uri": f"{account_base(a.account_sid)}/Applications/{a.sid}{suffix(fmt)}",
    }


def account_dict(a: Account, fmt: str) -> dict[str, Any]:
    base = account_base(a.sid)
    sfx = suffix(fmt)
    return {
        "auth_token": a.auth_token,
        "date_created": rfc2822(a.date_created),
        "date_updated": rfc2822(a.date_updated),
        "friendly_name": a.friendly_name,
        "owner_account_sid": a.owner_account_sid,
        "sid": a.sid,
        "status": a.status.value,
        "subresource_uris": {
            "messages": f"{base}/Messages{sfx}",
            "sms_messages": f"{base}/SMS/Messages{sfx}",
            "short_codes": f"{base}/SMS/ShortCodes{sfx}",
            "incoming_phone_numbers": f"{base}/IncomingPhoneNumbers{sfx}",
            "applications": f"{base}/Applications{sfx}",
        },
        "type": "Full",
        "uri": f"{base}{sfx}",
    }
