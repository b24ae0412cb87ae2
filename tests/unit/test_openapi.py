"""Unit tests for kittiwake.api.openapi: the served OpenAPI 3.0 description is valid, and its paths,
parameters, bodies, status codes and response schemas match Twilio's 2010-04-01 shapes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from openapi_spec_validator import validate

from kittiwake.api.openapi import build_openapi

SPEC = build_openapi()
API = "/2010-04-01"
ACCOUNT = f"{API}/Accounts/{{AccountSid}}"
AC = "AC" + "a" * 32
FORM = "application/x-www-form-urlencoded"
OWNED = {"sid", "account_sid", "api_version", "date_created", "date_updated", "uri"}
SMS_ROUTING = {"sms_url", "sms_method", "sms_fallback_url", "sms_fallback_method"}
ENVELOPE = {
    "first_page_uri",
    "next_page_uri",
    "previous_page_uri",
    "uri",
    "page",
    "page_size",
    "start",
    "end",
}

PATH_METHODS = {
    f"{API}/Accounts.json": {"get", "post"},
    f"{API}/Accounts/{{Sid}}.json": {"get", "post"},
    f"{ACCOUNT}/Messages.json": {"get", "post"},
    f"{ACCOUNT}/Messages/{{Sid}}.json": {"get", "post", "delete"},
    f"{ACCOUNT}/SMS/Messages.json": {"get", "post"},
    f"{ACCOUNT}/SMS/Messages/{{Sid}}.json": {"get"},
    f"{ACCOUNT}/IncomingPhoneNumbers.json": {"get", "post"},
    f"{ACCOUNT}/IncomingPhoneNumbers/{{Sid}}.json": {"get", "post", "delete"},
    f"{ACCOUNT}/SMS/ShortCodes.json": {"get"},
    f"{ACCOUNT}/SMS/ShortCodes/{{Sid}}.json": {"get", "post"},
    f"{ACCOUNT}/Applications.json": {"get", "post"},
    f"{ACCOUNT}/Applications/{{Sid}}.json": {"get", "post", "delete"},
}
OPERATIONS = [(path, method) for path, methods in PATH_METHODS.items() for method in sorted(methods)]
LIST_KEYS = {
    f"{API}/Accounts.json": "accounts",
    f"{ACCOUNT}/Messages.json": "messages",
    f"{ACCOUNT}/SMS/Messages.json": "sms_messages",
    f"{ACCOUNT}/IncomingPhoneNumbers.json": "incoming_phone_numbers",
    f"{ACCOUNT}/SMS/ShortCodes.json": "short_codes",
    f"{ACCOUNT}/Applications.json": "applications",
}


def _op(path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = SPEC["paths"][path][method]
    return operation


def _form_schema(path: str, method: str = "post") -> dict[str, Any]:
    schema: dict[str, Any] = _op(path, method)["requestBody"]["content"][FORM]["schema"]
    return schema


def _params(path: str, method: str) -> dict[str, dict[str, Any]]:
    shared = SPEC["paths"][path].get("parameters", [])
    return {param["name"]: param for param in [*shared, *_op(path, method).get("parameters", [])]}


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema, the way schemathesis reads response schemas."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/definitions/")
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out


def _validator(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    definitions = _json_schema(SPEC["components"]["schemas"])
    root = {"allOf": [_json_schema(schema)], "definitions": definitions}
    return jsonschema_rs.Draft4Validator(root, validate_formats=True)


def _component(name: str) -> jsonschema_rs.Validator:
    return _validator({"$ref": f"#/components/schemas/{name}"})


def _list_schema(path: str) -> dict[str, Any]:
    schema: dict[str, Any] = _op(path, "get")["responses"]["200"]["content"]["application/json"]["schema"]
    return schema


# Records shaped like the examples in Twilio's official spec (unset URLs and SIDs as null).
MESSAGE: dict[str, Any] = {
    "account_sid": AC,
    "api_version": "2010-04-01",
    "body": "testing",
    "date_created": "Fri, 24 May 2019 17:18:27 +0000",
    "date_sent": "Fri, 24 May 2019 17:18:28 +0000",
    "date_updated": "Fri, 24 May 2019 17:18:28 +0000",
    "direction": "outbound-api",
    "error_code": 30007,
    "error_message": "Carrier violation",
    "from": "+12019235161",
    "messaging_service_sid": None,
    "num_media": "0",
    "num_segments": "1",
    "price": "-0.00750",
    "price_unit": "USD",
    "sid": "SMb7c0a2ce80504485a6f653a7110836f5",
    "status": "sent",
    "subresource_uris": {
        "media": f"/2010-04-01/Accounts/{AC}/Messages/SMb7c0a2ce80504485a6f653a7110836f5/Media.json",
        "feedback": f"/2010-04-01/Accounts/{AC}/Messages/SMb7c0a2ce80504485a6f653a7110836f5/Feedback.json",
    },
    "to": "+18182008801",
    "uri": f"/2010-04-01/Accounts/{AC}/Messages/SMb7c0a2ce80504485a6f653a7110836f5.json",
}
SMS_MESSAGE: dict[str, Any] = {
    key: MESSAGE[key]
    for key in ("sid", "date_created", "date_updated", "date_sent", "account_sid", "to", "from", "body")
} | {
    "status": "sent",
    "direction": "outbound-api",
    "api_version": "2010-04-01",
    "price": None,
    "uri": "/x.json",
}
ACCOUNT_RECORD: dict[str, Any] = {
    "auth_token": "auth_token",
    "date_created": "Thu, 30 Jul 2015 20:00:00 +0000",
    "date_updated": "Thu, 30 Jul 2015 20:00:00 +0000",
    "friendly_name": "friendly_name",
    "owner_account_sid": AC,
    "sid": AC,
    "status": "active",
    "subresource_uris": {"messages": f"/2010-04-01/Accounts/{AC}/Messages.json"},
    "type": "Full",
    "uri": f"/2010-04-01/Accounts/{AC}.json",
}
PHONE_NUMBER: dict[str, Any] = {
    "account_sid": AC,
    "api_version": "2010-04-01",
    "beta": False,
    "capabilities": {"voice": True, "sms": False, "mms": True, "fax": False},
    "date_created": "Thu, 30 Jul 2015 23:19:04 +0000",
    "date_updated": "Thu, 30 Jul 2015 23:19:04 +0000",
    "friendly_name": "(808) 925-5327",
    "origin": "origin",
    "phone_number": "+18089255327",
    "sid": "PN" + "a" * 32,
    "sms_application_sid": None,
    "sms_fallback_method": "POST",
    "sms_fallback_url": None,
    "sms_method": "POST",
    "sms_url": "https://example.com/sms",
    "status_callback": None,
    "status_callback_method": "POST",
    "uri": f"/2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/PN{'a' * 32}.json",
    "voice_method": "POST",
    "voice_url": None,
    "status": "in-use",
}
SHORT_CODE: dict[str, Any] = {
    "account_sid": AC,
    "api_version": "2010-04-01",
    "date_created": "Thu, 01 Apr 2010 00:00:00 +0000",
    "date_updated": "Thu, 01 Apr 2010 00:00:00 +0000",
    "friendly_name": "API_CLUSTER_TEST_SHORT_CODE",
    "short_code": "99990",
    "sid": "SC" + "a" * 32,
    "sms_fallback_method": "POST",
    "sms_fallback_url": None,
    "sms_method": "POST",
    "sms_url": None,
    "uri": f"/2010-04-01/Accounts/{AC}/SMS/ShortCodes/SC{'a' * 32}.json",
}
APPLICATION: dict[str, Any] = {
    "account_sid": AC,
    "api_version": "2010-04-01",
    "date_created": "Mon, 22 Aug 2011 20:59:45 +0000",
    "date_updated": "Tue, 18 Aug 2015 16:48:57 +0000",
    "friendly_name": "Application Friendly Name",
    "message_status_callback": "http://www.example.com/sms-status-callback",
    "sid": "AP" + "a" * 32,
    "sms_fallback_method": "GET",
    "sms_fallback_url": "http://www.example.com/sms-fallback",
    "sms_method": "GET",
    "sms_status_callback": "http://www.example.com/sms-status-callback",
    "sms_url": "http://example.com",
    "status_callback": "http://example.com",
    "status_callback_method": "GET",
    "uri": f"/2010-04-01/Accounts/{AC}/Applications/AP{'a' * 32}.json",
    "voice_caller_id_lookup": False,
    "voice_fallback_method": "GET",
    "voice_fallback_url": "http://www.example.com/voice-callback",
    "voice_method": "GET",
    "voice_url": "http://example.com",
    "public_application_connect_enabled": False,
}
RECORDS: dict[str, dict[str, Any]] = {
    "Account": ACCOUNT_RECORD,
    "Message": MESSAGE,
    "SmsMessage": SMS_MESSAGE,
    "IncomingPhoneNumber": PHONE_NUMBER,
    "ShortCode": SHORT_CODE,
    "Application": APPLICATION,
}


# --- the document as a whole --------------------------------------------------------------------


@pytest.mark.parametrize("server_url", [None, "http://127.0.0.1:8080"])
def test_document_is_a_valid_openapi_3_0_description(server_url: str | None) -> None:
    document = build_openapi(server_url)
    validate(document)
    assert document["openapi"].startswith("3.0.")


def test_servers_appear_only_when_given() -> None:
    assert "servers" not in build_openapi()
    assert build_openapi("http://127.0.0.1:8080")["servers"] == [{"url": "http://127.0.0.1:8080"}]


def test_build_is_pure_and_returns_a_fresh_document() -> None:
    first, second = build_openapi(), build_openapi()
    assert first == second
    first["paths"].clear()
    first["components"]["schemas"]["Message"]["properties"].clear()
    assert build_openapi() == second


def test_document_round_trips_through_json() -> None:
    assert json.loads(json.dumps(SPEC)) == SPEC


def test_no_container_is_shared_between_two_places() -> None:
    seen: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict | list):
            assert id(node) not in seen
            seen.add(id(node))
            for child in node.values() if isinstance(node, dict) else node:
                walk(child)

    walk(SPEC)


def test_schemathesis_loads_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(build_openapi("http://127.0.0.1:8080"))
    results: list[Any] = list(schema.get_all_operations())
    loaded = {(result.ok().path, result.ok().method.lower()) for result in results}
    assert loaded == set(OPERATIONS)


def test_info_credits_twilio_spec_and_licence() -> None:
    description = SPEC["info"]["description"]
    assert "Kittiwake" in description
    assert "Twilio" in description
    assert "MIT" in description


def test_paths_and_methods_are_exactly_the_served_ones() -> None:
    methods = {path: set(item) - {"parameters"} for path, item in SPEC["paths"].items()}
    assert methods == PATH_METHODS


def test_http_basic_security_applies_to_every_operation() -> None:
    basic = {"type": "http", "scheme": "basic"}
    assert SPEC["components"]["securitySchemes"] == {"accountSid_authToken": basic}
    assert SPEC["security"] == [{"accountSid_authToken": []}]
    assert all("security" not in _op(path, method) for path, method in OPERATIONS)


def test_operation_ids_are_unique_and_follow_twilio() -> None:
    ids = [_op(path, method)["operationId"] for path, method in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert {"CreateMessage", "ListMessage", "FetchMessage", "UpdateMessage", "DeleteMessage"} <= set(ids)
    assert {"ListAccount", "CreateAccount", "FetchAccount", "UpdateAccount", "UpdateShortCode"} <= set(ids)


def test_legacy_resource_is_tagged_legacy() -> None:
    legacy = {path for path, method in OPERATIONS if _op(path, method)["tags"] == ["legacy"]}
    assert legacy == {f"{ACCOUNT}/SMS/Messages.json", f"{ACCOUNT}/SMS/Messages/{{Sid}}.json"}


# --- status codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_every_operation_documents_401_and_404_with_the_error_body(path: str, method: str) -> None:
    responses = _op(path, method)["responses"]
    assert {"401", "404"} <= set(responses)
    for code, response in responses.items():
        if code.startswith("4"):
            name = response["$ref"].rsplit("/", 1)[-1]
            content = SPEC["components"]["responses"][name]["content"]
            assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_success_status_matches_the_operation_kind(path: str, method: str) -> None:
    responses = _op(path, method)["responses"]
    success = {code for code in responses if code.startswith("2")}
    is_collection = not path.endswith("{Sid}.json")
    if method == "delete":
        assert success == {"204"}
        assert "content" not in responses["204"]
    elif method == "post" and is_collection:
        assert success == {"201"}
    else:
        assert success == {"200"}
    if method == "post" or (method == "get" and is_collection):
        assert "400" in responses
    if method == "post":
        assert "413" in responses


def test_error_schema_has_the_four_twilio_fields() -> None:
    error = SPEC["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"code", "message", "more_info", "status"}
    assert error["properties"]["code"]["type"] == "integer"
    assert error["properties"]["status"]["type"] == "integer"
    body = {"code": 20404, "message": "Not found", "more_info": "https://www.twilio.com/docs/errors/20404"}
    assert _component("Error").is_valid({**body, "status": 404, "detail": "extra keys are allowed"})
    assert not _component("Error").is_valid(body)


# --- parameters and request bodies --------------------------------------------------------------


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_path_parameters_carry_twilio_sid_patterns(path: str, method: str) -> None:
    params = _params(path, method)
    if "{AccountSid}" in path:
        assert params["AccountSid"]["schema"]["pattern"] == "^AC[0-9a-fA-F]{32}$"
    if "{Sid}" in path:
        prefix = {"Accounts": "AC", "Messages": "SM", "IncomingPhoneNumbers": "PN", "ShortCodes": "SC"}
        collection = path.rsplit("/", 2)[-2]
        expected = prefix.get(collection, "AP")
        assert params["Sid"]["schema"]["pattern"] == f"^{expected}[0-9a-fA-F]{{32}}$"
        assert params["Sid"]["required"] is True


@pytest.mark.parametrize("path", LIST_KEYS)
def test_lists_take_twilio_paging_parameters(path: str) -> None:
    params = _params(path, "get")
    assert params["PageSize"]["schema"] == {
        "type": "integer",
        "format": "int64",
        "minimum": 1,
        "maximum": 999_999_999,
    }
    assert params["Page"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 999_999_999}
    assert params["PageToken"]["schema"] == {"type": "string", "pattern": "^(PA[0-9]{1,18})?$"}
    queries = [param for param in params.values() if param["in"] != "path"]
    assert all(param["in"] == "query" and not param["required"] for param in queries)


@pytest.mark.parametrize(
    ("path", "filters"),
    [
        (f"{API}/Accounts.json", {"FriendlyName", "Status"}),
        (f"{ACCOUNT}/Messages.json", {"To", "From", "DateSent", "DateSent<", "DateSent>"}),
        (f"{ACCOUNT}/SMS/Messages.json", {"To", "From", "DateSent", "DateSent<", "DateSent>"}),
        (f"{ACCOUNT}/IncomingPhoneNumbers.json", {"FriendlyName", "PhoneNumber", "Beta", "Origin"}),
        (f"{ACCOUNT}/SMS/ShortCodes.json", {"FriendlyName", "ShortCode"}),
        (f"{ACCOUNT}/Applications.json", {"FriendlyName"}),
    ],
)
def test_list_filters(path: str, filters: set[str]) -> None:
    names = {name for name, param in _params(path, "get").items() if param["in"] == "query"}
    assert names == filters | {"PageSize", "Page", "PageToken"}


@pytest.mark.parametrize(("path", "method"), [(p, m) for p, m in OPERATIONS if m == "post"])
def test_request_bodies_are_form_encoded_with_pascal_case_names(path: str, method: str) -> None:
    body = _op(path, method)["requestBody"]
    assert set(body["content"]) == {FORM}
    schema = _form_schema(path, method)
    assert all(name[0].isupper() and "_" not in name for name in schema["properties"])
    assert body["required"] is bool(schema.get("required"))


def test_create_message_body() -> None:
    schema = _form_schema(f"{ACCOUNT}/Messages.json")
    assert schema["required"] == ["To"]
    props = schema["properties"]
    assert {"To", "From", "MessagingServiceSid", "Body", "StatusCallback", "ApplicationSid"} <= set(props)
    official_extras = {
        "MaxPrice", "ProvideFeedback", "Attempt", "ForceDelivery", "ContentRetention", "AddressRetention",
        "SmartEncoded", "PersistentAction", "TrafficType", "ShortenUrls", "ScheduleType", "SendAt",
        "SendAsMms", "ContentVariables", "RiskCheck", "FallbackFrom", "MediaUrl", "ContentSid",
    }  # fmt: skip
    assert official_extras <= set(props)
    assert props["ValidityPeriod"] == {"type": "integer", "minimum": 1, "maximum": 36000}
    assert props["MessagingServiceSid"]["pattern"] == "^MG[0-9a-fA-F]{32}$"
    assert props["ApplicationSid"]["pattern"] == "^AP[0-9a-fA-F]{32}$"
    assert props["MediaUrl"] == {"type": "array", "items": {"type": "string", "format": "uri"}}


def test_update_message_body_only_cancels() -> None:
    props = _form_schema(f"{ACCOUNT}/Messages/{{Sid}}.json")["properties"]
    assert set(props) == {"Body", "Status"}
    assert SPEC["components"]["schemas"]["message_enum_update_status"]["enum"] == ["canceled"]


def test_legacy_create_requires_from_to_and_body() -> None:
    schema = _form_schema(f"{ACCOUNT}/SMS/Messages.json")
    assert set(schema["required"]) == {"From", "To", "Body"}
    assert set(schema["properties"]) == {"From", "To", "Body", "StatusCallback", "ApplicationSid"}


def test_account_bodies() -> None:
    assert set(_form_schema(f"{API}/Accounts.json")["properties"]) == {"FriendlyName"}
    update = _form_schema(f"{API}/Accounts/{{Sid}}.json")["properties"]
    assert set(update) == {"FriendlyName", "Status"}
    assert SPEC["components"]["schemas"]["account_enum_status"]["enum"] == ["active", "suspended", "closed"]


def test_phone_number_short_code_and_application_bodies() -> None:
    routing = {"SmsUrl", "SmsMethod", "SmsFallbackUrl", "SmsFallbackMethod"}
    number = {"FriendlyName", *routing, "SmsApplicationSid", "StatusCallback", "StatusCallbackMethod"}
    create = _form_schema(f"{ACCOUNT}/IncomingPhoneNumbers.json")
    assert set(create["properties"]) == number | {"PhoneNumber", "AreaCode"}
    assert create["required"] == ["PhoneNumber"]
    assert set(_form_schema(f"{ACCOUNT}/IncomingPhoneNumbers/{{Sid}}.json")["properties"]) == number
    assert create["properties"]["SmsMethod"]["enum"] == ["GET", "POST"]
    assert set(_form_schema(f"{ACCOUNT}/SMS/ShortCodes/{{Sid}}.json")["properties"]) == {
        "FriendlyName",
        *routing,
    }
    application = {
        "FriendlyName", *routing, "SmsStatusCallback", "MessageStatusCallback", "StatusCallback",
        "StatusCallbackMethod", "VoiceUrl", "VoiceMethod",
    }  # fmt: skip
    assert set(_form_schema(f"{ACCOUNT}/Applications.json")["properties"]) == application
    assert set(_form_schema(f"{ACCOUNT}/Applications/{{Sid}}.json")["properties"]) == application


# --- response schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        (
            "Message",
            OWNED
            | {
                "body",
                "date_sent",
                "direction",
                "error_code",
                "error_message",
                "from",
                "messaging_service_sid",
            }
            | {"num_media", "num_segments", "price", "price_unit", "status", "subresource_uris", "to"},
        ),
        ("SmsMessage", OWNED | {"date_sent", "to", "from", "body", "status", "direction", "price"}),
        (
            "IncomingPhoneNumber",
            OWNED
            | SMS_ROUTING
            | {"friendly_name", "phone_number", "sms_application_sid", "status_callback"}
            | {
                "status_callback_method",
                "capabilities",
                "status",
                "origin",
                "beta",
                "voice_url",
                "voice_method",
            },
        ),
        ("ShortCode", OWNED | SMS_ROUTING | {"friendly_name", "short_code"}),
        (
            "Application",
            OWNED
            | SMS_ROUTING
            | {"friendly_name", "sms_status_callback", "message_status_callback", "status_callback"}
            | {"status_callback_method", "voice_url", "voice_method", "voice_fallback_url"}
            | {"voice_fallback_method", "voice_caller_id_lookup", "public_application_connect_enabled"},
        ),
        (
            "Account",
            {"auth_token", "date_created", "date_updated", "friendly_name", "owner_account_sid", "sid"}
            | {"status", "subresource_uris", "type", "uri"},
        ),
    ],
)
def test_record_fields_are_twilio_names_and_all_required(name: str, fields: set[str]) -> None:
    schema = SPEC["components"]["schemas"][name]
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) == fields


def test_record_enums_follow_the_official_spec() -> None:
    schemas = SPEC["components"]["schemas"]
    assert schemas["message_enum_direction"]["enum"] == [
        "inbound",
        "outbound-api",
        "outbound-call",
        "outbound-reply",
    ]
    statuses = set(schemas["message_enum_status"]["enum"])
    assert len(statuses) == 13
    assert {"accepted", "scheduled", "partially_delivered", "canceled"} <= statuses
    assert set(schemas["sms_message_enum_status"]["enum"]) == {
        "queued", "sending", "sent", "failed", "received", "delivered", "undelivered", "canceled",
    }  # fmt: skip
    assert schemas["account_enum_type"]["enum"] == ["Trial", "Full"]
    assert schemas["Message"]["properties"]["error_code"] == {"type": "integer", "nullable": True}
    assert schemas["Message"]["properties"]["num_segments"]["type"] == "string"


@pytest.mark.parametrize("name", RECORDS)
def test_twilio_shaped_records_validate(name: str) -> None:
    validator = _component(name)
    record = RECORDS[name]
    assert validator.is_valid(record)
    nulls = {key: None for key, value in record.items() if key not in {"status", "direction", "type"}}
    assert validator.is_valid(nulls | {key: value for key, value in record.items() if key not in nulls})
    assert not validator.is_valid({key: value for key, value in record.items() if key != "date_created"})
    assert not validator.is_valid(record | {"date_created": "2015-07-30T20:00:00Z"})


def test_phone_numbers_show_unset_urls_and_sids_as_empty_strings_like_twilio() -> None:
    validator = _component("IncomingPhoneNumber")
    assert validator.is_valid(PHONE_NUMBER | {"sms_url": "", "sms_application_sid": "", "voice_url": ""})
    assert not validator.is_valid(PHONE_NUMBER | {"sms_url": "not a url"})
    assert not validator.is_valid(PHONE_NUMBER | {"sms_application_sid": "AP123"})
    assert not validator.is_valid(PHONE_NUMBER | {"sms_method": "PUT"})


@pytest.mark.parametrize("name", ["ShortCode", "Application"])
def test_other_records_show_unset_urls_as_null(name: str) -> None:
    validator = _component(name)
    assert validator.is_valid(RECORDS[name] | {"sms_url": None})
    assert not validator.is_valid(RECORDS[name] | {"sms_url": ""})


def test_request_limits_match_the_server() -> None:
    create = _form_schema(f"{ACCOUNT}/Messages.json")["properties"]
    assert create["Body"]["maxLength"] == 1600
    assert _form_schema(f"{ACCOUNT}/SMS/Messages.json")["properties"]["Body"]["maxLength"] == 160
    assert _form_schema(f"{ACCOUNT}/Messages/{{Sid}}.json")["properties"]["Body"]["maxLength"] == 0
    for path in (
        f"{API}/Accounts.json",
        f"{ACCOUNT}/IncomingPhoneNumbers.json",
        f"{ACCOUNT}/Applications.json",
    ):
        assert _form_schema(path)["properties"]["FriendlyName"]["maxLength"] == 64
    callback = _validator(create["StatusCallback"])
    assert callback.is_valid("https://example.com/status?x=1")
    assert callback.is_valid("")
    assert not callback.is_valid("ftp://example.com/status")
    assert not callback.is_valid("http://")
    assert not callback.is_valid("https://example.com/" + "a" * 4000)


@pytest.mark.parametrize(("path", "key"), LIST_KEYS.items())
def test_list_envelopes(path: str, key: str) -> None:
    schema = _list_schema(path)
    legacy = {"num_pages", "total", "last_page_uri"} if key == "sms_messages" else set()
    assert set(schema["properties"]) == ENVELOPE | {key} | legacy
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["properties"]["next_page_uri"]["nullable"] is True
    assert schema["properties"]["previous_page_uri"]["nullable"] is True
    record = RECORDS[schema["properties"][key]["items"]["$ref"].rsplit("/", 1)[-1]]
    first = f"{path.replace('{AccountSid}', AC)}?PageSize=1&Page=0"
    page = {
        key: [record],
        "first_page_uri": first,
        "next_page_uri": f"{first[: -len('Page=0')]}Page=1&PageToken=PA{record['sid']}",
        "previous_page_uri": None,
        "uri": first,
        "page": 0,
        "page_size": 1,
        "start": 0,
        "end": 0,
    }
    if legacy:
        page |= {"num_pages": 3, "total": 3, "last_page_uri": f"{first[: -len('Page=0')]}Page=2"}
    validator = _validator(schema)
    assert validator.is_valid(page)
    assert validator.is_valid(page | {key: [], "next_page_uri": None})
    assert not validator.is_valid({k: v for k, v in page.items() if k != "start"})
