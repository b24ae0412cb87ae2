"""X-Twilio-Signature: Twilio's documented vector, and round trips through the official validator."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from kittiwake.webhooks.signing import signature, signing_string, url_with_query

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]
STATUS_PARAMS = [
    ("MessageSid", "SM" + "a" * 32),
    ("SmsSid", "SM" + "a" * 32),
    ("MessageStatus", "delivered"),
    ("SmsStatus", "delivered"),
    ("AccountSid", "AC" + "b" * 32),
    ("From", "+14158141829"),
    ("To", "+14159352345"),
    ("ApiVersion", "2010-04-01"),
]


def test_twilio_documented_vector() -> None:
    # twilio-api.md §6: Twilio's own example.
    assert signature("12345", VECTOR_URL, VECTOR_PARAMS) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_vector_with_default_port_in_url() -> None:
    url = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    assert signature("12345", url, VECTOR_PARAMS) == "EpDEmp1PyjDYp77YxYU3GILBWzE="


def test_parameter_order_does_not_matter() -> None:
    assert signature("12345", VECTOR_URL, list(reversed(VECTOR_PARAMS))) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_signing_string_sorts_names_by_code_point_then_values() -> None:
    params = [("b", "2"), ("B", "z"), ("a", "y"), ("a", "x")]
    assert signing_string("u", params) == "uBzaxayb2"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/status",
        "http://127.0.0.1:8080/hooks/status?tenant=7&x=%2B1",
        "https://hooks.example.com:8443/a/b.php?foo=1&bar=2",
        "http://localhost:3000/",
    ],
)
def test_official_validator_accepts_post_signatures(url: str) -> None:
    token = "0123456789abcdef0123456789abcdef"
    sig = signature(token, url, STATUS_PARAMS)
    assert RequestValidator(token).validate(url, dict(STATUS_PARAMS), sig)
    assert not RequestValidator("another-token").validate(url, dict(STATUS_PARAMS), sig)


def test_official_validator_accepts_unicode_values() -> None:
    token = "tok"
    params = [("Body", "Grüße 👋 — ça va?"), ("From", "+447700900123"), ("Émoji", "✓")]
    sig = signature(token, "https://example.com/sms?lang=de", params)
    assert RequestValidator(token).validate("https://example.com/sms?lang=de", dict(params), sig)


def test_official_validator_accepts_repeated_names() -> None:
    params = [("MediaUrl", "https://b"), ("MediaUrl", "https://a"), ("To", "+1")]
    sig = signature("tok", "https://example.com/", params)
    assert RequestValidator("tok").validate("https://example.com/", MultiDict(params), sig)


def test_get_url_keeps_existing_query_and_appends_params() -> None:
    url = url_with_query("https://example.com/cb.php?foo=1&bar=%2B2#frag", [("MessageSid", "SM1"), ("To", "+1 2")])
    assert url == "https://example.com/cb.php?foo=1&bar=%2B2&MessageSid=SM1&To=%2B1+2"


def test_get_url_without_existing_query() -> None:
    assert url_with_query("http://h:81/p", [("a", "é")]) == "http://h:81/p?a=%C3%A9"
    assert url_with_query("http://h/p?x=1", []) == "http://h/p?x=1"


def test_get_signature_validates_over_the_url_alone() -> None:
    token = "tok"
    url = url_with_query("https://example.com:8443/cb?foo=1", [*STATUS_PARAMS, ("Body", "héllo wörld")])
    sig = signature(token, url, ())
    assert RequestValidator(token).validate(url, {}, sig)
    # The receiver decodes the same parameters from the query string.
    assert ("Body", "héllo wörld") in parse_qsl(urlsplit(url).query)
