"""Kittiwake's own OpenAPI 3.0 description of its Twilio-compatible REST API.

This module owns the machine-readable contract served at ``GET /openapi.json``: the paths,
operations, parameters, form request bodies, status codes and JSON response schemas of the
2010-04-01 resources Kittiwake implements (Accounts, Messages, the legacy SMS/Messages resource,
IncomingPhoneNumbers, SMS/ShortCodes and Applications).  Names, shapes, enums and patterns are
taken from Twilio's official ``twilio_api_v2010.json`` (twilio-oai, MIT licence) and written out
here, because Kittiwake never reads that file at run or test time.

The document is precise enough for schemathesis to fuzz a live server, so it differs from the
official one where the official one is loose or Kittiwake is narrower:

* response records list every documented key as required (an unknown value is ``null``, never
  omitted; an unset URL or SID is ``null``, except that IncomingPhoneNumbers show it as ``""``
  like Twilio), and dates carry a pattern for Twilio's RFC 2822 form (``Thu, 24 Aug 2023 05:01:45 +0000``);
* list-envelope page URIs are relative, so they are ``uri-reference`` rather than ``uri``;
* limits stated only in Twilio's prose, or enforced by Kittiwake, are schema bounds (``ValidityPeriod``
  1..36000, ``Body`` 1600 or, legacy, 160 characters, friendly names 64, URLs http(s) or "" to clear);
* message SIDs are ``SM`` only, and IncomingPhoneNumbers are created by ``PhoneNumber`` only.

:func:`build_openapi` is pure: it builds a fresh dict on every call, and callers cache it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["build_openapi"]

Schema = dict[str, Any]

API = "/2010-04-01"
ACCOUNT = f"{API}/Accounts/{{AccountSid}}"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
SECURITY_SCHEME = "accountSid_authToken"

RFC2822_PATTERN = (
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-3][0-9] (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-2][0-9]:[0-5][0-9]:[0-6][0-9] \+0000$"
)

# String enums, named as in the official spec (``sms_message_enum_status`` is Kittiwake's own).
ENUMS: dict[str, list[str]] = {
    "account_enum_status": ["active", "suspended", "closed"],
    "account_enum_type": ["Trial", "Full"],
    "message_enum_status": (  # noqa: SIM905
        "queued sending sent failed delivered undelivered receiving received accepted scheduled read "
        "partially_delivered canceled"
    ).split(),
    "message_enum_direction": ["inbound", "outbound-api", "outbound-call", "outbound-reply"],
    "message_enum_update_status": ["canceled"],
    "message_enum_content_retention": ["retain", "discard"],
    "message_enum_address_retention": ["retain", "obfuscate"],
    "message_enum_traffic_type": ["free"],
    "message_enum_schedule_type": ["fixed"],
    "message_enum_risk_check": ["enable", "disable"],
    "sms_message_enum_status": (  # noqa: SIM905
        "queued sending sent failed received delivered undelivered canceled"
    ).split(),
}

# Every 4xx body is an ``error`` object; each code gets a reusable response component.
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "A parameter is missing, malformed or out of range."),
    401: ("Unauthorized", "HTTP Basic credentials are missing or wrong."),
    403: ("Forbidden", "The credentials are valid but may not act on this resource."),
    404: ("NotFound", "No such resource, or it belongs to an account the credentials cannot reach."),
    405: ("MethodNotAllowed", "The path exists but does not support the HTTP method."),
    413: ("PayloadTooLarge", "The request body is too large."),
}
READ_ERRORS = (401, 403, 404)
LIST_ERRORS = (400, 401, 403, 404)
WRITE_ERRORS = (400, 401, 403, 404, 413)

ERROR_SCHEMA = "Error"


class Resource(NamedTuple):
    """How a resource is addressed; its schema component is named after it (``Message``)."""

    key: str  # the record array's key in the list envelope
    sid_prefix: str
    collection: str  # path of the list resource, without ``.json``
    tag: str


RESOURCES: dict[str, Resource] = {
    "Account": Resource("accounts", "AC", f"{API}/Accounts", "Accounts"),
    "Message": Resource("messages", "SM", f"{ACCOUNT}/Messages", "Messages"),
    "SmsMessage": Resource("sms_messages", "SM", f"{ACCOUNT}/SMS/Messages", "legacy"),
    "IncomingPhoneNumber": Resource(
        "incoming_phone_numbers", "PN", f"{ACCOUNT}/IncomingPhoneNumbers", "IncomingPhoneNumbers"
    ),
    "ShortCode": Resource("short_codes", "SC", f"{ACCOUNT}/SMS/ShortCodes", "ShortCodes"),
    "Application": Resource("applications", "AP", f"{ACCOUNT}/Applications", "Applications"),
}


# --- schema primitives --------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _scalar(type_: str, fmt: str | None = None, *, nullable: bool = False, **keywords: Any) -> Schema:
    schema: Schema = {"type": type_, **({"format": fmt} if fmt else {}), **keywords}
    return {**schema, "nullable": True} if nullable else schema


def _string(fmt: str | None = None, *, nullable: bool = False, **keywords: Any) -> Schema:
    return _scalar("string", fmt, nullable=nullable, **keywords)


def _sid(prefix: str, *, nullable: bool = False) -> Schema:
    """A 34-character Twilio SID: two-letter prefix then 32 hex digits."""
    return _string(nullable=nullable, minLength=34, maxLength=34, pattern=f"^{prefix}[0-9a-fA-F]{{32}}$")


def _http_method(*, nullable: bool = False) -> Schema:
    values: list[str | None] = ["GET", "POST"]
    return _string("http-method", nullable=nullable, enum=[*values, None] if nullable else values)


def _object(fmt: str, **keywords: Any) -> Schema:
    return {"type": "object", "format": fmt, "nullable": True, **keywords}


def _record(properties: Schema) -> Schema:
    """A response object whose every documented key is always present."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _count() -> Schema:
    return _scalar("integer", minimum=0)


def _texts(*names: str) -> Schema:
    return {name: _string(nullable=True) for name in names}


def _urls(*names: str) -> Schema:
    return {name: _string("uri", nullable=True) for name in names}


def _callback() -> Schema:
    """A request URL: absolute http(s) with a host, at most 4000 characters, or "" to clear it."""
    web = _string("uri", pattern="^https?://[^/?#]+")
    return _string(maxLength=4000, anyOf=[web, {"maxLength": 0}])


def _friendly_name() -> Schema:
    return _string(maxLength=64)


def _date() -> Schema:
    return _string("date-time-rfc-2822", nullable=True, pattern=RFC2822_PATTERN)


# --- response schemas ---------------------------------------------------------------------------


def _owned_props(sid_prefix: str) -> Schema:
    """Keys every account-owned resource carries."""
    return {
        "sid": _sid(sid_prefix, nullable=True),
        "account_sid": _sid("AC", nullable=True),
        **_texts("api_version", "uri"),
        "date_created": _date(),
        "date_updated": _date(),
    }


def _sms_routing_props() -> Schema:
    return {
        **_urls("sms_url", "sms_fallback_url"),
        "sms_method": _http_method(nullable=True),
        "sms_fallback_method": _http_method(nullable=True),
    }


def _status_callback_props() -> Schema:
    return {**_urls("status_callback"), "status_callback_method": _http_method(nullable=True)}


def _or_empty(schema: Schema) -> Schema:
    """``schema``, or "": how IncomingPhoneNumbers show unset URLs and SIDs (as Twilio's own example)."""
    moved = ("format", "pattern", "minLength")
    kept = {key: value for key, value in schema.items() if key not in moved}
    return {**kept, "anyOf": [{key: schema[key] for key in moved if key in schema}, {"maxLength": 0}]}


def _account_schema() -> Schema:
    return _record(
        {
            "sid": _sid("AC", nullable=True),
            "owner_account_sid": _sid("AC", nullable=True),
            **_texts("auth_token", "friendly_name", "uri"),
            "date_created": _date(),
            "date_updated": _date(),
            "status": _ref("account_enum_status"),
            "type": _ref("account_enum_type"),
            "subresource_uris": _object("uri-map", additionalProperties=_string()),
        }
    )


def _message_schema() -> Schema:
    return _record(
        {
            **_owned_props("SM"),
            **_texts("to", "body", "num_segments", "num_media", "price", "error_message"),
            "from": _string("phone-number", nullable=True),
            "messaging_service_sid": _sid("MG", nullable=True),
            "status": _ref("message_enum_status"),
            "direction": _ref("message_enum_direction"),
            "date_sent": _date(),
            "error_code": _scalar("integer", nullable=True),
            "price_unit": _string("currency", nullable=True),
            "subresource_uris": _object("uri-map", properties={"media": _string(), "feedback": _string()}),
        }
    )


def _sms_message_schema() -> Schema:
    return _record(
        {
            **_owned_props("SM"),
            **_texts("to", "body", "price"),
            "from": _string("phone-number", nullable=True),
            "status": _ref("sms_message_enum_status"),
            "direction": _ref("message_enum_direction"),
            "date_sent": _date(),
        }
    )


def _incoming_phone_number_schema() -> Schema:
    capabilities = ["voice", "sms", "mms", "fax"]
    properties: Schema = {
        **_owned_props("PN"),
        **_texts("friendly_name", "status", "origin"),
        "phone_number": _string("phone-number", nullable=True),
        **_sms_routing_props(),
        "sms_application_sid": _sid("AP", nullable=True),
        **_status_callback_props(),
        **_urls("voice_url"),
        "voice_method": _http_method(nullable=True),
        "beta": _scalar("boolean", nullable=True),
        "capabilities": _object(
            "phone-number-capabilities",
            required=capabilities,
            properties={name: _scalar("boolean") for name in capabilities},
        ),
    }
    for name in ("sms_url", "sms_fallback_url", "sms_application_sid", "status_callback", "voice_url"):
        properties[name] = _or_empty(properties[name])
    return _record(properties)


def _short_code_schema() -> Schema:
    return _record({**_owned_props("SC"), **_texts("friendly_name", "short_code"), **_sms_routing_props()})


def _application_schema() -> Schema:
    return _record(
        {
            **_owned_props("AP"),
            **_texts("friendly_name"),
            **_sms_routing_props(),
            **_urls("sms_status_callback", "message_status_callback"),
            **_status_callback_props(),
            **_urls("voice_url", "voice_fallback_url"),
            "voice_method": _http_method(nullable=True),
            "voice_fallback_method": _http_method(nullable=True),
            "voice_caller_id_lookup": _scalar("boolean", nullable=True),
            "public_application_connect_enabled": _scalar("boolean", nullable=True),
        }
    )


def _error_schema() -> Schema:
    properties = {
        "code": _scalar("integer"),
        "message": _string(),
        "more_info": _string(),
        "status": _scalar("integer", minimum=400, maximum=499),
    }
    return _record(properties)


def _list_envelope(name: str, key: str, *, legacy: bool = False) -> Schema:
    """A page of ``name`` records under ``key`` plus Twilio's paging fields (all required)."""
    properties: Schema = {
        key: {"type": "array", "items": _ref(name)},
        "first_page_uri": _string("uri-reference"),
        "next_page_uri": _string("uri-reference", nullable=True),
        "previous_page_uri": _string("uri-reference", nullable=True),
        "uri": _string("uri-reference"),
        **{field: _count() for field in ("page", "page_size", "start", "end")},
    }
    if legacy:
        properties |= {"num_pages": _count(), "total": _count(), "last_page_uri": _string("uri-reference")}
    return {"title": f"List{name}Response", **_record(properties)}


def _schemas() -> Schema:
    return {
        "Account": _account_schema(),
        "Message": _message_schema(),
        "SmsMessage": _sms_message_schema(),
        "IncomingPhoneNumber": _incoming_phone_number_schema(),
        "ShortCode": _short_code_schema(),
        "Application": _application_schema(),
        ERROR_SCHEMA: _error_schema(),
        **{name: {"type": "string", "enum": list(values)} for name, values in ENUMS.items()},
    }


# --- parameters and request bodies --------------------------------------------------------------


def _path_param(name: str, prefix: str, description: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": _sid(prefix)}


def _account_param() -> Schema:
    return _path_param("AccountSid", "AC", "The SID of the Account that owns the resource.")


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _paging() -> list[Schema]:
    # No maximum: clients send `limit` as PageSize unchecked, so larger values are clamped to 1000.
    size = _scalar("integer", "int64", minimum=1, maximum=999_999_999)
    page = _scalar("integer", minimum=0, maximum=999_999_999)
    token = _string(pattern="^(PA[0-9]{1,18})?$")
    return [
        _query("PageSize", size, "How many resources to return in each page (default 50, at most 1000)."),
        _query("Page", page, "The page index; client state only."),
        _query("PageToken", token, "The token Kittiwake put in a next page URI."),
    ]


def _form_body(title: str, properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    """A form-encoded body; undocumented fields are plain strings, which the server ignores."""
    schema: Schema = {
        "type": "object",
        "title": title,
        "properties": properties,
        "additionalProperties": _string(),
    }
    if required:
        schema["required"] = list(required)
    return {"required": bool(required), "content": {FORM: {"schema": schema}}}


def _sms_routing_fields() -> Schema:
    return {
        "SmsUrl": _callback(),
        "SmsMethod": _http_method(),
        "SmsFallbackUrl": _callback(),
        "SmsFallbackMethod": _http_method(),
    }


def _status_callback_fields() -> Schema:
    return {"StatusCallback": _callback(), "StatusCallbackMethod": _http_method()}


def _phone_number_fields() -> Schema:
    return {
        "FriendlyName": _friendly_name(),
        **_sms_routing_fields(),
        "SmsApplicationSid": _sid("AP"),
        **_status_callback_fields(),
    }


def _application_fields() -> Schema:
    return {
        "FriendlyName": _friendly_name(),
        **_sms_routing_fields(),
        "SmsStatusCallback": _callback(),
        "MessageStatusCallback": _callback(),
        **_status_callback_fields(),
        "VoiceUrl": _callback(),
        "VoiceMethod": _http_method(),
    }


def _create_message_fields() -> Schema:
    """CreateMessage as in the official spec; Kittiwake accepts and ignores the channel extras."""
    return {
        "To": _string("phone-number"),
        "From": _string("phone-number"),
        "MessagingServiceSid": _sid("MG"),
        "Body": _string(maxLength=1600),
        "StatusCallback": _callback(),
        "ApplicationSid": _sid("AP"),
        "ValidityPeriod": _scalar("integer", minimum=1, maximum=36000),
        "MaxPrice": _scalar("number"),
        "ProvideFeedback": _scalar("boolean"),
        "Attempt": _scalar("integer"),
        "ForceDelivery": _scalar("boolean"),
        "ContentRetention": _ref("message_enum_content_retention"),
        "AddressRetention": _ref("message_enum_address_retention"),
        "SmartEncoded": _scalar("boolean"),
        "PersistentAction": {"type": "array", "items": _string()},
        "TrafficType": _ref("message_enum_traffic_type"),
        "ShortenUrls": _scalar("boolean"),
        "ScheduleType": _ref("message_enum_schedule_type"),
        "SendAt": _string("date-time"),
        "SendAsMms": _scalar("boolean"),
        "ContentVariables": _string(),
        "RiskCheck": _ref("message_enum_risk_check"),
        "FallbackFrom": _string("phone-number"),
        "MediaUrl": {"type": "array", "items": _string("uri")},
        "ContentSid": _sid("HX"),
    }


# --- operations ---------------------------------------------------------------------------------


def _json_response(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error_components() -> Schema:
    return {name: _json_response(text, _ref(ERROR_SCHEMA)) for name, text in ERROR_RESPONSES.values()}


def _errors(codes: tuple[int, ...]) -> Schema:
    return {str(code): {"$ref": f"#/components/responses/{ERROR_RESPONSES[code][0]}"} for code in codes}


def _operation(verb: str, name: str, tag: str, ok: tuple[str, Schema], errors: tuple[int, ...]) -> Schema:
    """One operation: ``ok`` is its (status, response) pair, ``errors`` its documented 4xx codes."""
    status, response = ok
    return {
        "operationId": f"{verb}{name}",
        "summary": f"{verb} {name}",
        "tags": [tag],
        "responses": {status: response, **_errors(errors)},
    }


# --- paths --------------------------------------------------------------------------------------


def _resource_paths(
    name: str,
    filters: list[Schema],
    *,
    create: Schema | None = None,
    create_required: tuple[str, ...] = (),
    update: Schema | None = None,
    delete_errors: tuple[int, ...] | None = None,
) -> Schema:
    """The ``<collection>.json`` and ``<collection>/{Sid}.json`` path items of one resource.

    The collection lists and, given ``create`` form fields, creates; the instance fetches,
    updates given ``update`` form fields, and deletes given ``delete_errors``.
    """
    key, sid_prefix, collection, tag = RESOURCES[name]
    envelope = _list_envelope(name, key, legacy=tag == "legacy")
    page = _json_response(f"A page of {name} records.", envelope)

    def record(status: str) -> tuple[str, Schema]:
        return status, _json_response(f"The {name}.", _ref(name))

    collection_ops: Schema = {"get": _operation("List", name, tag, ("200", page), LIST_ERRORS)}
    collection_ops["get"]["parameters"] = [*filters, *_paging()]
    if create is not None:
        collection_ops["post"] = _operation("Create", name, tag, record("201"), WRITE_ERRORS)
        collection_ops["post"]["requestBody"] = _form_body(f"Create{name}Request", create, create_required)
    instance_ops: Schema = {"get": _operation("Fetch", name, tag, record("200"), READ_ERRORS)}
    if update is not None:
        instance_ops["post"] = _operation("Update", name, tag, record("200"), WRITE_ERRORS)
        instance_ops["post"]["requestBody"] = _form_body(f"Update{name}Request", update)
    if delete_errors is not None:
        deleted = ("204", {"description": "Deleted; no content."})
        instance_ops["delete"] = _operation("Delete", name, tag, deleted, delete_errors)

    def scoped(*params: Schema) -> Schema:
        """Path-level parameters: the owning AccountSid (if any), then ``params``."""
        scope = [_account_param()] if "{AccountSid}" in collection else []
        return {"parameters": [*scope, *params]} if scope or params else {}

    sid = _path_param("Sid", sid_prefix, f"The {name} SID.")
    return {
        f"{collection}.json": scoped() | collection_ops,
        f"{collection}/{{Sid}}.json": scoped(sid) | instance_ops,
    }


def _message_filters() -> list[Schema]:
    return [
        _query("To", _string("phone-number"), "Only messages sent to this address."),
        _query("From", _string("phone-number"), "Only messages sent from this address."),
        *(
            _query(name, _string("date-time"), f"Only messages sent {when} (YYYY-MM-DD is also accepted).")
            for name, when in (
                ("DateSent", "that day"),
                ("DateSent<", "on or before"),
                ("DateSent>", "on or after"),
            )
        ),
    ]


def _paths() -> Schema:
    def friendly_name() -> Schema:
        return _query("FriendlyName", _string(), "Only resources with this friendly name.")

    return {
        **_resource_paths(
            "Account",
            [
                friendly_name(),
                _query("Status", _ref("account_enum_status"), "Only accounts with this status."),
            ],
            create={"FriendlyName": _friendly_name()},
            update={"FriendlyName": _friendly_name(), "Status": _ref("account_enum_status")},
        ),
        **_resource_paths(
            "Message",
            _message_filters(),
            create=_create_message_fields(),
            create_required=("To",),
            # Body can only be redacted (set to ""); Status can only cancel a scheduled message.
            update={"Body": _string(maxLength=0), "Status": _ref("message_enum_update_status")},
            # Twilio refuses to delete a message whose delivery is still in progress.
            delete_errors=(400, *READ_ERRORS),
        ),
        **_resource_paths(
            "SmsMessage",
            _message_filters(),
            create={
                "From": _string("phone-number"),
                "To": _string("phone-number"),
                "Body": _string(maxLength=160),
                "StatusCallback": _callback(),
                "ApplicationSid": _sid("AP"),
            },
            create_required=("From", "To", "Body"),
        ),
        **_resource_paths(
            "IncomingPhoneNumber",
            [
                _query("Beta", _scalar("boolean"), "Whether to include beta numbers."),
                friendly_name(),
                _query("PhoneNumber", _string("phone-number"), "Only numbers matching this number."),
                _query("Origin", _string(), "Only numbers of this origin (twilio or hosted)."),
            ],
            create={"PhoneNumber": _string("phone-number"), "AreaCode": _string(), **_phone_number_fields()},
            create_required=("PhoneNumber",),
            update=_phone_number_fields(),
            delete_errors=READ_ERRORS,
        ),
        **_resource_paths(
            "ShortCode",
            [friendly_name(), _query("ShortCode", _string(), "Only short codes matching this code.")],
            update={"FriendlyName": _friendly_name(), **_sms_routing_fields()},
        ),
        **_resource_paths(
            "Application",
            [friendly_name()],
            create=_application_fields(),
            update=_application_fields(),
            delete_errors=READ_ERRORS,
        ),
    }


# --- document -----------------------------------------------------------------------------------

DESCRIPTION = (
    "Kittiwake's own description of the subset of Twilio's 2010-04-01 REST API it serves. "
    "Resource, field and parameter names, enums and patterns are derived from Twilio's official "
    "OpenAPI specification (twilio-oai, MIT licence); this document is not published by Twilio. "
    "Request bodies are form-encoded with PascalCase names; responses are JSON with snake_case keys. "
    "Every 4xx response carries the `error` object; an unsupported method on a documented path gets 405."
)

TAGS = [
    ("Accounts", "The account and its subaccounts."),
    ("Messages", "Outbound and inbound SMS messages."),
    ("IncomingPhoneNumbers", "Phone numbers owned by the account."),
    ("ShortCodes", "Short codes owned by the account."),
    ("Applications", "TwiML applications that route messages."),
    ("legacy", "The pre-2013 SMS/Messages resource, kept for old clients."),
]


def build_openapi(server_url: str | None = None) -> dict[str, Any]:
    """Return the OpenAPI 3.0 document, with ``servers`` set to ``server_url`` when given."""
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Kittiwake",
            "version": "2010-04-01",
            "description": DESCRIPTION,
            "license": {"name": "MIT", "url": "https://opensource.org/licenses/MIT"},
        },
    }
    if server_url is not None:
        document["servers"] = [{"url": server_url}]
    document |= {
        "tags": [{"name": name, "description": description} for name, description in TAGS],
        "security": [{SECURITY_SCHEME: []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {SECURITY_SCHEME: {"type": "http", "scheme": "basic"}},
            "schemas": _schemas(),
            "responses": _error_components(),
        },
    }
    return document
