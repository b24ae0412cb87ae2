"""Inbound SMS end to end: a simulated handset writes, the number's SMS URL (a real loopback app) is
requested with signed parameters, and its TwiML answer (built with twilio's MessagingResponse too) is
acted on: replies, redirects, actions, fallback, bad TwiML, GET, opt-out keywords."""

from __future__ import annotations

import time

import httpx
import pytest
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from kittiwake.config import InboundSettings
from support import CallbackReceiver, ReceivedRequest, RunningGateway

OURS = "+14158141829"
OTHER = "+14158141830"
HANDSET = "+14159352345"


def configure(client: httpx.Client, gw: RunningGateway, number: str = OURS, **settings: str) -> dict[str, str]:
    response = client.post(gw.account_path("/IncomingPhoneNumbers.json"), data={"PhoneNumber": number, **settings})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def inbound(client: httpx.Client, body: str, to: str = OURS, from_: str = HANDSET) -> dict[str, str]:
    response = client.post("/sim/inbound", data={"From": from_, "To": to, "Body": body})
    assert response.status_code == 201, response.text
    message: dict[str, str] = response.json()
    return message


def signed(request: ReceivedRequest, token: str) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if request.method == "GET":
        return bool(RequestValidator(token).validate(request.url, {}, signature))
    return bool(RequestValidator(token).validate(request.url, request.params, signature))


def replies(client: httpx.Client, gw: RunningGateway, count: int, timeout: float = 10) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [
            m
            for m in client.get(gw.account_path("/Messages.json")).json()["messages"]
            if m["direction"] == "outbound-reply"
        ]
        if len(found) >= count or time.monotonic() > deadline:
            return list(reversed(found))
        time.sleep(0.05)


def message(client: httpx.Client, gw: RunningGateway, sid: str) -> dict[str, object]:
    body: dict[str, object] = client.get(gw.account_path(f"/Messages/{sid}.json")).json()
    return body


def wait_error(client: httpx.Client, gw: RunningGateway, sid: str, timeout: float = 10) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = message(client, gw, sid)["error_code"]
        if code is not None:
            return code
        time.sleep(0.05)
    return None


@pytest.fixture
def client(gateway: RunningGateway) -> httpx.Client:
    with gateway.client() as c:
        yield c


def test_webhook_parameters_signature_and_a_message_reply(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    twiml = MessagingResponse()
    twiml.message("Thanks, got it")
    configure(client, gateway, SmsUrl=receiver.answer("/sms", str(twiml)))
    received = inbound(client, "Hello there")
    assert received["direction"] == "inbound" and received["status"] == "received"
    assert received["from"] == HANDSET and received["to"] == OURS
    request = receiver.wait_for(1, MessageSid=received["sid"])[0]
    assert signed(request, gateway.auth_token)
    p = request.params
    assert p["SmsSid"] == p["SmsMessageSid"] == received["sid"] and p["AccountSid"] == gateway.account_sid
    assert (p["From"], p["To"], p["Body"], p["NumMedia"], p["NumSegments"]) == (HANDSET, OURS, "Hello there", "0", "1")
    assert p["SmsStatus"] == "received" and p["ApiVersion"] == "2010-04-01"
    assert p["FromCountry"] == "US" and p["ToCountry"] == "US" and p["FromCity"] == "" and p["ToZip"] == ""
    [reply] = replies(client, gateway, 1)
    assert (reply["from"], reply["to"], reply["body"]) == (OURS, HANDSET, "Thanks, got it")
    listed = client.get(gateway.account_path("/SMS/Messages.json")).json()["sms_messages"]
    assert received["sid"] in {m["sid"] for m in listed}, "inbound messages show in the legacy list too"


def test_legacy_sms_verb_with_attributes_and_action_continues(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    configure(client, gateway, OTHER)
    receiver.answer("/next", "<Response><Sms>second</Sms></Response>")
    receiver.answer(
        "/sms",
        f'<Response><Sms from="{OTHER}" to="4155550123" action="/next" method="POST">first</Sms>'
        "<Sms>unreachable</Sms></Response>",
    )
    configure(client, gateway, SmsUrl=receiver.url("/sms"))
    inbound(client, "hi")
    sent = replies(client, gateway, 2)
    assert [(m["from"], m["to"], m["body"]) for m in sent] == [
        (OTHER, "+14155550123", "first"),  # a 'to' without '+' takes the country of 'from'
        (OURS, HANDSET, "second"),
    ]
    [action] = receiver.at("/next")
    assert action.params["SmsStatus"] == "sending" and action.params["SmsSid"] == sent[0]["sid"]
    assert signed(action, gateway.auth_token)
    time.sleep(0.3)
    assert "unreachable" not in {m["body"] for m in replies(client, gateway, 3, timeout=0)}


def test_redirect_relative_and_get_method(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    twiml = MessagingResponse()
    twiml.redirect("/two?x=1", method="GET")
    twiml.message("never")
    receiver.answer("/one", str(twiml))
    receiver.answer("/two", "<Response><Message><Body>from two</Body></Message></Response>")
    configure(client, gateway, SmsUrl=receiver.url("/one"), SmsMethod="GET")
    received = inbound(client, "go")
    [reply] = replies(client, gateway, 1)
    assert reply["body"] == "from two"
    first = receiver.at("/one")[0]
    assert first.method == "GET" and first.params["MessageSid"] == received["sid"] and signed(first, gateway.auth_token)
    second = receiver.at("/two")[0]
    assert second.method == "GET" and second.params["x"] == "1" and signed(second, gateway.auth_token)


def test_text_plain_answer_is_one_reply(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    configure(client, gateway, SmsUrl=receiver.answer("/sms", "plain words", content_type="text/plain"))
    inbound(client, "hi")
    assert [m["body"] for m in replies(client, gateway, 1)] == ["plain words"]


def test_empty_response_sends_nothing_and_no_url_stores_only(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    configure(client, gateway, SmsUrl=receiver.answer("/sms", "<Response/>"))
    configure(client, gateway, OTHER)
    first = inbound(client, "one")
    second = inbound(client, "two", to=OTHER)
    receiver.wait_for(1, MessageSid=first["sid"])
    time.sleep(0.3)
    assert replies(client, gateway, 1, timeout=0) == []
    assert message(client, gateway, second["sid"])["status"] == "received"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("status", "content_type", "body", "code"),
    [
        (500, "text/xml", "<Response/>", 11200),
        (200, "text/xml", "this is not xml <", 12100),
        (200, "text/xml", "<Response><Say>hello</Say></Response>", 14110),
        (200, "text/xml", '<Response><Message to="nope">x</Message></Response>', 14101),
        (200, "text/xml", '<Response><Message from="+14155550100">x</Message></Response>', 14102),
        (200, "text/xml", '<Response><Message colour="red">x</Message></Response>', 12200),
    ],
)
def test_failures_go_to_the_fallback_with_error_code_and_url(
    client: httpx.Client,
    gateway: RunningGateway,
    receiver: CallbackReceiver,
    status: int,
    content_type: str,
    body: str,
    code: int,
) -> None:
    primary = receiver.answer("/sms", body, status=status, content_type=content_type)
    fallback = receiver.answer("/fallback", "<Response><Message>sorry</Message></Response>")
    configure(client, gateway, SmsUrl=primary, SmsFallbackUrl=fallback)
    received = inbound(client, "hi")
    [request] = receiver.wait_for(1, MessageSid=received["sid"], ErrorCode=str(code))
    assert request.params["ErrorUrl"] == primary and signed(request, gateway.auth_token)
    assert [m["body"] for m in replies(client, gateway, 1)] == ["sorry"]
    assert message(client, gateway, received["sid"])["error_code"] is None


def test_failure_without_fallback_is_recorded_on_the_inbound_message(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    configure(client, gateway, SmsUrl="http://127.0.0.1:9/nothing-listens-here")
    received = inbound(client, "hi")
    assert wait_error(client, gateway, received["sid"]) == 11200
    configure(client, gateway, OTHER, SmsUrl=receiver.answer("/bad", "<Response><Dial/></Response>"))
    bad = inbound(client, "hi", to=OTHER)
    assert wait_error(client, gateway, bad["sid"]) == 14110


@pytest.mark.parametrize("gateway", [{"inbound": InboundSettings(webhook_timeout=0.3)}], indirect=True)
def test_timeout_goes_to_the_fallback(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    slow = receiver.answer("/slow", "<Response><Message>late</Message></Response>", delay=2.0)
    configure(
        client,
        gateway,
        SmsUrl=slow,
        SmsFallbackUrl=receiver.answer("/fb", "<Response><Message>fb</Message></Response>"),
    )
    inbound(client, "hi")
    assert [m["body"] for m in replies(client, gateway, 1)] == ["fb"]


def test_application_routing_wins_over_the_number(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    app = client.post(
        gateway.account_path("/Applications.json"),
        data={"SmsUrl": receiver.answer("/app", "<Response><Message>from app</Message></Response>")},
    ).json()
    configure(client, gateway, SmsUrl=receiver.url("/number"), SmsApplicationSid=app["sid"])
    inbound(client, "hi")
    assert [m["body"] for m in replies(client, gateway, 1)] == ["from app"]
    assert receiver.at("/number") == []


def test_opt_out_keywords(client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver) -> None:
    configure(client, gateway, SmsUrl=receiver.url("/sms"))
    send = {"From": OURS, "To": HANDSET, "Body": "promo"}
    assert client.post(gateway.account_path("/Messages.json"), data=send).status_code == 201
    stop = inbound(client, "  stop ")
    receiver.wait_for(1, MessageSid=stop["sid"])  # the app still hears of it
    refused = client.post(gateway.account_path("/Messages.json"), data=send)
    assert refused.status_code == 400 and refused.json()["code"] == 21610
    configure(client, gateway, OTHER)
    other = {"From": OTHER, "To": HANDSET, "Body": "other number"}
    assert client.post(gateway.account_path("/Messages.json"), data=other).status_code == 201, "per number"
    inbound(client, "Unstop")
    assert client.post(gateway.account_path("/Messages.json"), data=send).status_code == 201
    inbound(client, "HELP")
    help_replies = [m for m in replies(client, gateway, 1) if m["to"] == HANDSET]
    assert help_replies and "STOP" in help_replies[0]["body"]


def test_sim_inbound_checks_ownership_and_input(client: httpx.Client, gateway: RunningGateway) -> None:
    configure(client, gateway)
    other = client.post("/2010-04-01/Accounts.json", data={"FriendlyName": "sub"}).json()
    as_other = httpx.post(
        f"{gateway.base_url}/sim/inbound",
        data={"From": HANDSET, "To": OURS, "Body": "x"},
        auth=(other["sid"], other["auth_token"]),
    )
    assert as_other.status_code == 400
    assert client.post("/sim/inbound", data={"From": "garbage", "To": OURS, "Body": "x"}).status_code == 400
    assert client.post("/sim/inbound", data={"From": HANDSET, "Body": "x"}).status_code == 400
    assert httpx.post(f"{gateway.base_url}/sim/inbound", data={"From": HANDSET, "To": OURS}).status_code == 401


@pytest.mark.parametrize("gateway", [{"inbound": InboundSettings(loop_limit=3, loop_window=30)}], indirect=True)
def test_reply_loop_protection_fails_replies_with_14107(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    configure(client, gateway, SmsUrl=receiver.answer("/sms", "<Response><Message>echo</Message></Response>"))
    for i in range(5):
        inbound(client, f"ping {i}")
    sent = replies(client, gateway, 5)
    assert len(sent) == 5
    assert [m["status"] != "failed" for m in sent].count(True) == 3
    assert {m["error_code"] for m in sent if m["status"] == "failed"} == {14107}


def test_twiml_reply_to_an_opted_out_handset_is_refused_with_21610(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    configure(client, gateway, SmsUrl=receiver.answer("/sms", "<Response><Message>bye!</Message></Response>"))
    inbound(client, "STOP")
    [reply] = replies(client, gateway, 1)
    assert reply["status"] == "failed" and reply["error_code"] == 21610
    time.sleep(0.3)
    assert httpx.get(f"{gateway.base_url}/sim/messages", auth=gateway.auth).json()["messages"] == []


def test_twiml_answer_in_several_chunks_is_read_whole(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    # The app streams its answer in two pieces, 50 ms apart.
    twiml = "<Response><Message>whole</Message></Response>"
    configure(client, gateway, SmsUrl=receiver.answer("/sms", twiml, delay=-0.05))
    inbound(client, "hi")
    assert [m["body"] for m in replies(client, gateway, 1)] == ["whole"]
