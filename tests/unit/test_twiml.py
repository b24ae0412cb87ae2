"""TwiML for messaging: documents built by Twilio's own library parse back into the right verbs; every way a
document can be wrong (including the XML bombs) is a TwimlError with Twilio's code; URLs resolve like a browser's
but only to http(s)."""

from __future__ import annotations

import contextlib

import pytest
from defusedxml import DefusedXmlException
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.twiml.messaging_response import MessagingResponse

from kittiwake.twiml import (
    DOCUMENT_PARSE_FAILURE,
    INVALID_BODY,
    INVALID_METHOD,
    INVALID_STATUS_CALLBACK,
    INVALID_URL_FORMAT,
    INVALID_VERB_FOR_REPLY,
    INVALID_VERSION,
    ROOT_NOT_RESPONSE,
    SCHEMA_VALIDATION,
    MessageVerb,
    RedirectVerb,
    SmsVerb,
    TwimlError,
    classify_content_type,
    parse_twiml,
    plain_text_reply,
    resolve_url,
)

TO = "+15558675310"
FROM = "+15017122661"


def twilio_xml(response: MessagingResponse) -> str:
    return str(response)


def error_code(document: bytes | str, **kwargs: int) -> int:
    with pytest.raises(TwimlError) as caught:
        parse_twiml(document, **kwargs)
    return caught.value.code


# --- Documents built by twilio.twiml.messaging_response ------------------------------------------------------------


def test_message_with_every_attribute_from_the_twilio_library() -> None:
    response = MessagingResponse()
    response.message(
        "Hello & <you>", to=TO, from_=FROM, action="/a", method="get", status_callback="https://cb.example/s"
    )
    assert parse_twiml(twilio_xml(response)) == [
        MessageVerb(
            body="Hello & <you>",
            media=(),
            to=TO,
            from_=FROM,
            action="/a",
            method="GET",
            status_callback="https://cb.example/s",
        )
    ]


def test_body_and_media_from_the_twilio_library() -> None:
    response = MessagingResponse()
    message = response.message()
    message.body("Look")
    message.media("https://e.example/a.png")
    message.media("https://e.example/b.png")
    assert parse_twiml(twilio_xml(response).encode()) == [
        MessageVerb(body="Look", media=("https://e.example/a.png", "https://e.example/b.png"))
    ]


def test_plain_text_plus_media_the_common_twilio_idiom() -> None:
    response = MessagingResponse()
    response.message("Hi").media("https://e.example/a.png")
    assert parse_twiml(twilio_xml(response)) == [MessageVerb(body="Hi", media=("https://e.example/a.png",))]


def test_media_only_message_is_allowed() -> None:
    response = MessagingResponse()
    response.message().media("https://e.example/a.png")
    assert parse_twiml(twilio_xml(response)) == [MessageVerb(body="", media=("https://e.example/a.png",))]


def test_verbs_in_order_and_nothing_after_redirect() -> None:
    response = MessagingResponse()
    response.message("one")
    response.message("two", to=TO)
    response.redirect("/next", method="GET")
    response.message("never sent")
    assert parse_twiml(twilio_xml(response)) == [
        MessageVerb(body="one"),
        MessageVerb(body="two", to=TO),
        RedirectVerb(url="/next", method="GET"),
    ]


def test_redirect_defaults_to_post() -> None:
    response = MessagingResponse()
    response.redirect("https://app.example/twiml")
    assert parse_twiml(twilio_xml(response)) == [RedirectVerb(url="https://app.example/twiml", method="POST")]


def test_whatever_follows_redirect_is_not_even_checked() -> None:
    document = "<Response><Redirect>/x</Redirect><Say>voice verb</Say><Bogus attr='1'/>text</Response>"
    assert parse_twiml(document) == [RedirectVerb(url="/x")]


def test_empty_response_gives_no_verbs() -> None:
    assert parse_twiml(twilio_xml(MessagingResponse())) == []
    assert parse_twiml("<Response/>") == []
    assert parse_twiml(b"<?xml version='1.0'?>\n<Response>\n  <!-- nothing -->\n</Response>\n") == []


# --- Legacy <Sms> and 2008 TwiML -----------------------------------------------------------------------------------


def test_legacy_sms_with_every_attribute() -> None:
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Response version="2008-08-01">\n'
        f'  <Sms to="{TO}" from="{FROM}" action="/smsdone" method="GET" statusCallback="/status">\n'
        "    Thanks for your message\n"
        "  </Sms>\n"
        "</Response>"
    )
    assert parse_twiml(document) == [
        SmsVerb(
            body="Thanks for your message",
            to=TO,
            from_=FROM,
            action="/smsdone",
            method="GET",
            status_callback="/status",
        )
    ]


def test_legacy_sms_defaults() -> None:
    assert parse_twiml('<Response version="2010-04-01"><Sms>ok</Sms></Response>') == [
        SmsVerb(body="ok", to=None, from_=None, action=None, method="POST", status_callback=None)
    ]


def test_sms_and_message_mix_and_blank_attributes_count_as_absent() -> None:
    document = '<Response><Sms to="">a</Sms><Message action=" " method="">b</Message></Response>'
    assert parse_twiml(document) == [SmsVerb(body="a"), MessageVerb(body="b")]


def test_limits_are_inclusive() -> None:
    sms = "s" * 160
    message = "m" * 1600
    media = "".join(f"<Media>https://e.example/{i}</Media>" for i in range(10))
    verbs = parse_twiml(f"<Response><Sms>{sms}</Sms><Message><Body>{message}</Body>{media}</Message></Response>")
    assert verbs[0] == SmsVerb(body=sms)
    assert isinstance(verbs[1], MessageVerb) and verbs[1].body == message and len(verbs[1].media) == 10
    assert len(parse_twiml("<Response>" + "<Message>x</Message>" * 10 + "<Redirect>/r</Redirect></Response>")) == 11


def test_encoding_declaration_is_honoured() -> None:
    document = '<?xml version="1.0" encoding="ISO-8859-1"?><Response><Sms>café</Sms></Response>'
    assert parse_twiml(document.encode("iso-8859-1")) == [SmsVerb(body="café")]


# --- Errors and their codes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "code"),
    [
        pytest.param(b"not xml at all", DOCUMENT_PARSE_FAILURE, id="not-xml"),
        pytest.param(b"", DOCUMENT_PARSE_FAILURE, id="empty"),
        pytest.param("<Response><Message>hi</Response>", DOCUMENT_PARSE_FAILURE, id="unclosed"),
        pytest.param(" <?xml version='1.0'?><Response/>", DOCUMENT_PARSE_FAILURE, id="space-before-declaration"),
        pytest.param("<Response/><Response/>", DOCUMENT_PARSE_FAILURE, id="two-roots"),
        pytest.param(b'<?xml version="1.0" encoding="nope"?><Response/>', DOCUMENT_PARSE_FAILURE, id="encoding"),
        pytest.param("<Response>\udc80</Response>", DOCUMENT_PARSE_FAILURE, id="lone-surrogate"),
        pytest.param("<response/>", ROOT_NOT_RESPONSE, id="root-lowercase"),
        pytest.param("<html><body>hi</body></html>", ROOT_NOT_RESPONSE, id="root-html"),
        pytest.param('<Response xmlns="urn:x"/>', ROOT_NOT_RESPONSE, id="root-namespaced"),
        pytest.param('<Response version="2011-01-01"/>', INVALID_VERSION, id="version"),
        pytest.param('<Response lang="en"/>', SCHEMA_VALIDATION, id="response-attribute"),
        pytest.param("<Response>loose text</Response>", SCHEMA_VALIDATION, id="text-in-response"),
        pytest.param("<Response><Sms>a</Sms>stray<Sms>b</Sms></Response>", SCHEMA_VALIDATION, id="text-between"),
        pytest.param("<Response><Say>Hello</Say></Response>", INVALID_VERB_FOR_REPLY, id="voice-say"),
        pytest.param("<Response><Dial>+15005550006</Dial></Response>", INVALID_VERB_FOR_REPLY, id="voice-dial"),
        pytest.param("<Response><Mesage>hi</Mesage></Response>", SCHEMA_VALIDATION, id="misspelled"),
        pytest.param("<Response><message>hi</message></Response>", SCHEMA_VALIDATION, id="wrong-case"),
        pytest.param('<Response><Message To="+1">hi</Message></Response>', SCHEMA_VALIDATION, id="attr-case"),
        pytest.param('<Response><Sms status_callback="/s">hi</Sms></Response>', SCHEMA_VALIDATION, id="attr-unknown"),
        pytest.param('<Response><Redirect to="+1">/x</Redirect></Response>', SCHEMA_VALIDATION, id="attr-redirect"),
        pytest.param('<Response><Message><Body lang="en">hi</Body></Message></Response>', SCHEMA_VALIDATION, id="a"),
        pytest.param('<Response><Message method="PUT">hi</Message></Response>', INVALID_METHOD, id="method-put"),
        pytest.param('<Response><Sms method="get ">hi</Sms></Response>', None, id="method-spaced-ok"),
        pytest.param('<Response><Redirect method="DELETE">/x</Redirect></Response>', INVALID_METHOD, id="method-r"),
        pytest.param("<Response><Sms>hi<Body>x</Body></Sms></Response>", SCHEMA_VALIDATION, id="nested-in-sms"),
        pytest.param("<Response><Sms><Message>x</Message></Sms></Response>", SCHEMA_VALIDATION, id="verb-in-sms"),
        pytest.param("<Response><Redirect><Body>/x</Body></Redirect></Response>", SCHEMA_VALIDATION, id="in-redir"),
        pytest.param("<Response><Message><Say>x</Say></Message></Response>", SCHEMA_VALIDATION, id="in-message"),
        pytest.param("<Response><Message><Body><b>x</b></Body></Message></Response>", SCHEMA_VALIDATION, id="body"),
        pytest.param("<Response><Message><Body>a</Body><Body>b</Body></Message></Response>", SCHEMA_VALIDATION, id="2"),
        pytest.param("<Response><Message>a<Body>b</Body></Message></Response>", SCHEMA_VALIDATION, id="text+body"),
        pytest.param("<Response><Message><Media> </Media></Message></Response>", SCHEMA_VALIDATION, id="media-empty"),
        pytest.param("<Response><Redirect> </Redirect></Response>", INVALID_URL_FORMAT, id="redirect-empty"),
        pytest.param("<Response><Sms>   </Sms></Response>", INVALID_BODY, id="sms-empty"),
        pytest.param("<Response><Message/></Response>", INVALID_BODY, id="message-empty"),
        pytest.param(f"<Response><Sms>{'x' * 161}</Sms></Response>", INVALID_BODY, id="sms-161"),
        pytest.param(f"<Response><Message>{'x' * 1601}</Message></Response>", INVALID_BODY, id="message-1601"),
        pytest.param(
            f"<Response><Message><Body>{'é' * 1601}</Body></Message></Response>", INVALID_BODY, id="body-1601"
        ),
        pytest.param(
            "<Response><Message>" + "<Media>https://e.example/m</Media>" * 11 + "</Message></Response>",
            SCHEMA_VALIDATION,
            id="media-11",
        ),
        pytest.param("<Response>" + "<Message>x</Message>" * 11 + "</Response>", SCHEMA_VALIDATION, id="11-verbs"),
        pytest.param(
            "<Response>" + "<Sms>x</Sms><Message>y</Message>" * 6 + "</Response>", SCHEMA_VALIDATION, id="12-mixed"
        ),
    ],
)
def test_bad_documents_raise_twiml_error_with_twilio_code(document: str | bytes, code: int | None) -> None:
    if code is None:
        assert parse_twiml(document) == [SmsVerb(body="hi", method="GET")]
    else:
        assert error_code(document) == code


def test_error_carries_code_and_message() -> None:
    with pytest.raises(TwimlError) as caught:
        parse_twiml("<Response><Say>Hello</Say></Response>")
    assert caught.value.code == INVALID_VERB_FOR_REPLY
    assert "Say" in caught.value.message
    assert str(caught.value).startswith("14110 Invalid Verb for SMS Reply:")


def test_size_is_capped_before_parsing() -> None:
    small = "<Response><Message>x</Message></Response>"
    assert parse_twiml(small, max_bytes=len(small)) == [MessageVerb(body="x")]
    assert error_code(small, max_bytes=len(small) - 1) == DOCUMENT_PARSE_FAILURE
    # Not even looked at: over the cap, garbage and well-formed documents fail alike.
    assert error_code(b"\x00" * 65537) == DOCUMENT_PARSE_FAILURE
    assert error_code("<Response>" + " " * 65536 + "</Response>") == DOCUMENT_PARSE_FAILURE
    # The cap counts bytes: 20 two-byte characters are 40 bytes.
    accented = "<Response><Sms>" + "é" * 20 + "</Sms></Response>"
    assert error_code(accented, max_bytes=len(accented)) == DOCUMENT_PARSE_FAILURE
    assert parse_twiml(accented, max_bytes=len(accented.encode())) == [SmsVerb(body="é" * 20)]


# --- XML bombs: each must be refused by defusedxml, not expanded ---------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE Response [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + "]>\n<Response><Message>&lol9;</Message></Response>"
)
QUADRATIC_BLOWUP = (
    '<?xml version="1.0"?>\n<!DOCTYPE Response [<!ENTITY a "' + "a" * 20000 + '">]>\n'
    "<Response><Message>" + "&a;" * 10000 + "</Message></Response>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE Response [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
    "<Response><Message>&secret;</Message></Response>"
)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(QUADRATIC_BLOWUP, id="quadratic-blowup"),
        pytest.param(EXTERNAL_ENTITY, id="external-entity"),
    ],
)
def test_xml_bombs_are_refused_by_defusedxml(document: str) -> None:
    assert len(document.encode()) < 65536  # so the size cap is not what stops it
    with pytest.raises(TwimlError) as caught:
        parse_twiml(document)
    assert caught.value.code == DOCUMENT_PARSE_FAILURE
    assert isinstance(caught.value.__cause__, DefusedXmlException)
    assert "root:" not in caught.value.message  # nothing of /etc/passwd leaked into the error


def test_a_plain_doctype_without_entities_is_harmless() -> None:
    document = '<?xml version="1.0"?><!DOCTYPE Response><Response><Sms>ok</Sms></Response>'
    assert parse_twiml(document) == [SmsVerb(body="ok")]


# --- Fuzzing: nothing but TwimlError ever escapes ------------------------------------------------------------------

TOKENS = [
    "<Response>", "</Response>", "<Response/>", "<Message>", "</Message>", "<Sms>", "</Sms>", "<Body>", "</Body>",
    "<Media>", "</Media>", "<Redirect>", "</Redirect>", "<Say>", ' method="get"', ' to="+1"', ' version="x"', "&amp;",
    "&lol;", "<!DOCTYPE Response [<!ENTITY lol 'x'>]>", "<?xml version='1.0' encoding='latin-1'?>", "hi", " ", "\n",
    "<", ">", "/", '"', "é", "\x00", "<![CDATA[x]]>", "<!-- c -->",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_twiml_error(document: bytes) -> None:
    with contextlib.suppress(TwimlError):
        parse_twiml(document)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_random_twiml_like_text_raises_only_twiml_error(document: str) -> None:
    for form in (document, document.encode("utf-8", "surrogatepass")):
        try:
            verbs = parse_twiml(form)
        except TwimlError:
            continue
        assert all(isinstance(verb, MessageVerb | SmsVerb | RedirectVerb) for verb in verbs)


# --- URLs ----------------------------------------------------------------------------------------------------------

BASE = "https://app.example/sms/incoming?x=1"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("/next", "https://app.example/next", id="absolute-path"),
        pytest.param("next", "https://app.example/sms/next", id="relative-path"),
        pytest.param("../other", "https://app.example/other", id="dot-dot"),
        pytest.param("?step=2", "https://app.example/sms/incoming?step=2", id="query-only"),
        pytest.param("  /trimmed  ", "https://app.example/trimmed", id="whitespace-stripped"),
        pytest.param("http://elsewhere.example/t", "http://elsewhere.example/t", id="absolute-http"),
        pytest.param("HTTPS://Elsewhere.example/t", "https://Elsewhere.example/t", id="scheme-case"),
        pytest.param("//cdn.example/t.xml", "https://cdn.example/t.xml", id="protocol-relative"),
    ],
)
def test_resolve_url(target: str, expected: str) -> None:
    assert resolve_url(BASE, target) == expected


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("ftp://files.example/t", id="ftp"),
        pytest.param("mailto:a@example.com", id="mailto"),
        pytest.param("data:text/xml,<Response/>", id="data"),
        pytest.param("", id="empty"),
        pytest.param("http:///nohost", id="no-host"),
        pytest.param("http://[::1/x", id="bad-ipv6"),
        pytest.param("/a\r\nHost: evil", id="crlf"),
        pytest.param("/a b", id="space"),
    ],
)
def test_resolve_url_refuses_non_http(target: str) -> None:
    with pytest.raises(TwimlError) as caught:
        resolve_url(BASE, target)
    assert caught.value.code == INVALID_URL_FORMAT


def test_resolve_url_against_a_non_http_base_is_refused() -> None:
    with pytest.raises(TwimlError):
        resolve_url("ftp://files.example/dir/", "next")


def test_resolve_url_code_can_name_the_attribute() -> None:
    with pytest.raises(TwimlError) as caught:
        resolve_url(BASE, "javascript:void(0)", code=INVALID_STATUS_CALLBACK)
    assert caught.value.code == INVALID_STATUS_CALLBACK


# --- text/plain answers and Content-Type -----------------------------------------------------------------------------


def test_plain_text_reply_is_one_default_message() -> None:
    assert plain_text_reply("  Thanks!\n") == [
        MessageVerb(body="Thanks!", media=(), to=None, from_=None, action=None, method="POST", status_callback=None)
    ]
    assert plain_text_reply(" \n ") == []
    with pytest.raises(TwimlError) as caught:
        plain_text_reply("x" * 1601)
    assert caught.value.code == INVALID_BODY


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("text/xml", "twiml"),
        ("application/xml", "twiml"),
        ("text/html", "twiml"),
        ("text/xml; charset=utf-8", "twiml"),
        ("Application/XML;charset=UTF-8", "twiml"),
        (" TEXT/HTML ; charset=iso-8859-1", "twiml"),
        ("text/plain", "text"),
        ("text/plain; charset=utf-8", "text"),
        ("application/json", "unknown"),
        ("application/xhtml+xml", "unknown"),
        ("audio/mpeg", "unknown"),
        ("", "unknown"),
        ("xml", "unknown"),
    ],
)
def test_classify_content_type(content_type: str, kind: str) -> None:
    assert classify_content_type(content_type) == kind
