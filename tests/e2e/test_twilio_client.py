"""End to end: ``kittiwake serve`` in a subprocess, driven by the official twilio client and raw HTTP."""

from __future__ import annotations

import json
import signal
import xml.etree.ElementTree as ET

import httpx
import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from support import ServeProcess, run_cli, start_serve

SENDER = "+14158141829"


def twilio_client(sid: str, token: str, base_url: str) -> Client:
    client = Client(sid, token)
    client.api.base_url = base_url
    return client


@pytest.fixture
def client(serve_process: ServeProcess) -> Client:
    gw = serve_process.gateway
    run_cli("numbers", "add", "--account", gw.account_sid, SENDER, data_dir=gw.data_dir)
    return twilio_client(gw.account_sid, gw.auth_token, gw.base_url)


def test_serve_prints_credentials_and_answers_healthz(serve_process: ServeProcess) -> None:
    gw = serve_process.gateway
    assert gw.account_sid.startswith("AC") and len(gw.auth_token) == 32
    assert httpx.get(f"{gw.base_url}/healthz").status_code == 200


def test_create_fetch_and_list_every_page(client: Client) -> None:
    created = [client.messages.create(from_=SENDER, to="+14159352345", body=f"hello {i}") for i in range(120)]
    first = created[0]
    assert first.status == "queued" and first.num_segments == "1" and first.direction == "outbound-api"
    assert first.date_created is not None and first.date_created.tzinfo is not None
    fetched = client.messages(first.sid).fetch()
    assert fetched.body == "hello 0" and fetched.to == "+14159352345"
    listed = client.messages.list(page_size=50)
    assert [m.sid for m in listed] == [m.sid for m in reversed(created)]
    streamed = list(client.messages.stream(page_size=7, limit=30))
    assert len(streamed) == 30 and streamed[0].sid == created[-1].sid
    assert [m.sid for m in client.messages.list(to="+14159352345", limit=3)] == [m.sid for m in created[:-4:-1]]


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "+1asd"}, 21211),
        ({"from_": "+14155550100"}, 21606),
        ({"from_": "SHOP24"}, 21212),
        ({"to": "+15005550004"}, 21610),
        ({"body": "x" * 1601}, 21617),
    ],
)
def test_errors_arrive_as_twilio_rest_exception(client: Client, kwargs: dict[str, str], code: int) -> None:
    params = {"from_": SENDER, "to": "+14159352345", "body": "hi"} | kwargs
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(**params)
    assert caught.value.code == code
    assert caught.value.status == 400


def test_missing_message_and_bad_credentials(serve_process: ServeProcess, client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        client.messages("SM" + "0" * 32).fetch()
    assert caught.value.code == 20404 and caught.value.status == 404
    gw = serve_process.gateway
    wrong = twilio_client(gw.account_sid, "0" * 32, gw.base_url)
    with pytest.raises(TwilioRestException) as caught:
        wrong.messages.create(from_=SENDER, to="+14159352345", body="hi")
    assert caught.value.code == 20003 and caught.value.status == 401


def test_accounts_never_see_each_other(serve_process: ServeProcess, client: Client) -> None:
    gw = serve_process.gateway
    mine = client.messages.create(from_=SENDER, to="+14159352345", body="private")
    other = json.loads(run_cli("accounts", "create", "--name", "other", "--json", data_dir=gw.data_dir).stdout)
    intruder = twilio_client(other["sid"], other["auth_token"], gw.base_url)
    assert intruder.messages.list() == []
    # Reaching into the first account's path with the second account's credentials.
    intruder_on_mine = Client(other["sid"], other["auth_token"], account_sid=gw.account_sid)
    intruder_on_mine.api.base_url = gw.base_url
    with pytest.raises(TwilioRestException) as caught:
        intruder_on_mine.messages(mine.sid).fetch()
    assert caught.value.code in {20003, 20404}
    with pytest.raises(TwilioException):  # a list page error is a plain TwilioException in twilio 9
        intruder_on_mine.messages.list()
    # Nor can it send from a number it does not own.
    with pytest.raises(TwilioRestException) as caught:
        intruder.messages.create(from_=SENDER, to="+14159352345", body="spoof")
    assert caught.value.code == 21606


def test_subaccounts_and_suspension(serve_process: ServeProcess, client: Client) -> None:
    gw = serve_process.gateway
    sub = client.api.accounts.create(friendly_name="team")
    assert sub.owner_account_sid == gw.account_sid and sub.status == "active"
    sub_client = twilio_client(sub.sid, sub.auth_token, gw.base_url)
    assert sub_client.api.accounts(sub.sid).fetch().friendly_name == "team"
    client.api.accounts(sub.sid).update(status="suspended")
    with pytest.raises(TwilioRestException) as caught:
        sub_client.messages.create(from_=SENDER, to="+14159352345", body="hi")
    assert caught.value.code in {20003, 20403}
    assert {a.sid for a in client.api.accounts.list()} == {gw.account_sid, sub.sid}


def test_numbers_applications_and_short_codes(serve_process: ServeProcess, client: Client) -> None:
    gw = serve_process.gateway
    app = client.applications.create(friendly_name="bot", sms_url="http://127.0.0.1:9/sms")
    number = client.incoming_phone_numbers.create(phone_number="+14155550123", sms_application_sid=app.sid)
    assert number.sms_application_sid == app.sid and number.capabilities["sms"] is True
    updated = client.incoming_phone_numbers(number.sid).update(sms_url="https://example.com/in", sms_method="GET")
    assert updated.sms_url == "https://example.com/in" and updated.sms_method == "GET"
    short = json.loads(
        run_cli(
            "numbers", "add", "--account", gw.account_sid, "--short-code", "55555", "--json", data_dir=gw.data_dir
        ).stdout
    )
    assert short["sid"].startswith("SC")
    codes = client.short_codes.list()
    assert [c.short_code for c in codes] == ["55555"]
    client.short_codes(short["sid"]).update(sms_url="https://example.com/sc")
    assert client.short_codes(short["sid"]).fetch().sms_url == "https://example.com/sc"
    sent = client.messages.create(from_="55555", to="+14159352345", body="from a short code")
    assert sent.from_ == "55555"
    client.incoming_phone_numbers(number.sid).delete()
    assert client.incoming_phone_numbers(number.sid) is not None
    with pytest.raises(TwilioRestException):
        client.incoming_phone_numbers(number.sid).fetch()
    client.applications(app.sid).delete()
    assert client.applications.list() == []


def test_legacy_resource_raw_http_xml_and_json(serve_process: ServeProcess, client: Client) -> None:
    gw = serve_process.gateway
    base = f"{gw.base_url}/2010-04-01/Accounts/{gw.account_sid}/SMS/Messages"
    form = {"From": SENDER, "To": "415-935-2345", "Body": "Jenny please?! I love you <3"}
    created = httpx.post(base, data=form, auth=gw.auth)
    assert created.status_code == 201
    sms = ET.fromstring(created.content).find("SMSMessage")
    assert sms is not None and sms.findtext("To") == "+14159352345"
    as_json = httpx.post(f"{base}.json", data=form, auth=gw.auth).json()
    assert as_json["status"] == "queued" and as_json["uri"].endswith(".json")
    listing = httpx.get(f"{base}.json", auth=gw.auth).json()
    assert listing["total"] == 2 and len(listing["sms_messages"]) == 2
    too_long = httpx.post(f"{base}.json", data=form | {"Body": "x" * 161}, auth=gw.auth)
    assert too_long.status_code == 400 and too_long.json()["code"] == 21605


def test_sigterm_stops_cleanly_and_data_survives_restart(serve_process: ServeProcess, client: Client) -> None:
    gw = serve_process.gateway
    sid = client.messages.create(from_=SENDER, to="+14159352345", body="persist me").sid
    serve_process.process.send_signal(signal.SIGTERM)
    assert serve_process.process.wait(20) == 0
    again = start_serve(gw.data_dir)
    try:
        output = "".join(again.output)
        assert "Created the first account" not in output
        restarted = twilio_client(gw.account_sid, gw.auth_token, again.gateway.base_url)
        assert restarted.messages(sid).fetch().body == "persist me"
    finally:
        again.process.terminate()
        again.process.wait(20)
        if again.process.stdout is not None:
            again.process.stdout.close()
