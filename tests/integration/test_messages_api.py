"""The Messages and legacy SMS/Messages resources over real HTTP against a gateway on 127.0.0.1:0."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

import httpx
import pytest

from support import RunningGateway

SENDER = "+14158141829"


def provision(client: httpx.Client, gw: RunningGateway, number: str = SENDER) -> dict[str, object]:
    response = client.post(gw.account_path("/IncomingPhoneNumbers.json"), data={"PhoneNumber": number})
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.fixture
def client(gateway: RunningGateway) -> httpx.Client:
    with gateway.client() as c:
        provision(c, gateway)
        yield c


def create(client: httpx.Client, gw: RunningGateway, legacy: bool = False, **params: str) -> httpx.Response:
    path = "/SMS/Messages.json" if legacy else "/Messages.json"
    data = {"From": SENDER, "To": "+14159352345", "Body": "hello"} | params
    return client.post(gw.account_path(path), data={k: v for k, v in data.items() if v is not None})


def test_create_modern_message_returns_twilio_shape(client: httpx.Client, gateway: RunningGateway) -> None:
    response = create(client, gateway, Body="Jenny please?! I love you <3")
    assert response.status_code == 201
    message = response.json()
    assert message["sid"].startswith("SM") and len(message["sid"]) == 34
    assert message["status"] == "queued"
    assert message["direction"] == "outbound-api"
    assert message["from"] == SENDER and message["to"] == "+14159352345"
    assert message["num_segments"] == "1" and message["num_media"] == "0"
    assert message["date_created"].endswith(" +0000")
    assert message["date_sent"] is None and message["error_code"] is None
    assert message["uri"] == gateway.account_path(f"/Messages/{message['sid']}.json")
    assert message["api_version"] == "2010-04-01"


def test_legacy_create_and_fetch_in_xml_and_json(client: httpx.Client, gateway: RunningGateway) -> None:
    response = client.post(
        gateway.account_path("/SMS/Messages"),
        data={"From": SENDER, "To": "(415) 935-2345", "Body": "Jenny please?! I love you <3"},
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "TwilioResponse"
    sms = root.find("SMSMessage")
    assert sms is not None
    assert [child.tag for child in sms] == [
        "Sid", "DateCreated", "DateUpdated", "DateSent", "AccountSid", "To", "From", "Body", "Status",
        "Direction", "ApiVersion", "Price", "Uri",
    ]  # fmt: skip
    assert sms.findtext("To") == "+14159352345"
    assert sms.findtext("Body") == "Jenny please?! I love you <3"
    sid = sms.findtext("Sid")
    assert sms.findtext("Uri") == gateway.account_path(f"/SMS/Messages/{sid}")
    fetched = client.get(gateway.account_path(f"/SMS/Messages/{sid}.json")).json()
    assert fetched["sid"] == sid and fetched["status"] in {"queued", "sending", "sent", "delivered"}
    assert set(fetched) == {
        "sid", "date_created", "date_updated", "date_sent", "account_sid", "to", "from", "body", "status",
        "direction", "api_version", "price", "uri",
    }  # fmt: skip
    listed = client.get(gateway.account_path("/SMS/Messages.json")).json()
    assert [m["sid"] for m in listed["sms_messages"]] == [sid]
    assert listed["total"] == 1 and listed["num_pages"] == 1


@pytest.mark.parametrize(
    ("params", "legacy", "code"),
    [
        ({"To": None}, False, 21604),
        ({"From": None}, False, 21603),
        ({"Body": None}, False, 21602),
        ({"Body": ""}, False, 21602),
        ({"Body": "x" * 161}, True, 21605),
        ({"Body": "x" * 1601}, False, 21617),
        ({"From": "+14155550100"}, False, 21606),
        ({"From": "SHOP24"}, False, 21212),
        ({"From": "hello world!"}, False, 21212),
        ({"To": "12345"}, False, 21211),
        ({"To": "+1415555121A"}, False, 21211),
        ({"To": "whatsapp:+14155550100"}, False, 21211),
        ({"To": "+15005550001"}, False, 21211),
        ({"To": "+15005550004"}, False, 21610),
        ({"To": "+15005550009"}, False, 21614),
        ({"ValidityPeriod": "0"}, False, 21624),
        ({"ValidityPeriod": "36001"}, False, 21624),
        ({"StatusCallback": "not a url"}, False, 21609),
        ({"MessagingServiceSid": "MG" + "0" * 32, "From": None}, False, 21701),
    ],
)
def test_create_validation_errors(
    client: httpx.Client, gateway: RunningGateway, params: dict[str, str | None], legacy: bool, code: int
) -> None:
    response = create(client, gateway, legacy=legacy, **params)  # type: ignore[arg-type]
    assert response.status_code == 400, response.text
    error = response.json()
    assert set(error) == {"code", "message", "more_info", "status"}
    assert error["code"] == code and error["status"] == 400
    assert error["more_info"] == f"https://www.twilio.com/docs/errors/{code}"


def test_invalid_to_error_names_the_value(client: httpx.Client, gateway: RunningGateway) -> None:
    error = create(client, gateway, To="+1asd").json()
    assert error["code"] == 21211
    assert "+1asd" in error["message"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("(415) 555-1212", "+14155551212"), ("415-555-1212", "+14155551212"), ("+447400123456", "+447400123456")],
)
def test_to_without_plus_takes_the_from_country(
    client: httpx.Client, gateway: RunningGateway, raw: str, expected: str
) -> None:
    assert create(client, gateway, To=raw).json()["to"] == expected


def test_gb_sender_understands_gb_local_numbers(client: httpx.Client, gateway: RunningGateway) -> None:
    provision(client, gateway, "+447911123456")
    assert create(client, gateway, From="+447911123456", To="07400123456").json()["to"] == "+447400123456"


def test_segments_counted_for_gsm_and_ucs2(client: httpx.Client, gateway: RunningGateway) -> None:
    assert create(client, gateway, Body="a" * 161).json()["num_segments"] == "2"
    assert create(client, gateway, Body="€" * 81).json()["num_segments"] == "2"
    assert create(client, gateway, Body="é" * 70).json()["num_segments"] == "1"
    assert create(client, gateway, Body="á" * 71).json()["num_segments"] == "2"


def test_unknown_parameters_are_accepted_and_ignored(client: httpx.Client, gateway: RunningGateway) -> None:
    response = create(client, gateway, MessageIntent="marketing", SmartEncoded="true", Nonsense="1")
    assert response.status_code == 201


def test_error_in_xml_is_a_rest_exception(client: httpx.Client, gateway: RunningGateway) -> None:
    response = client.post(gateway.account_path("/SMS/Messages.xml"), data={"From": SENDER, "Body": "x"})
    assert response.status_code == 400
    exception = ET.fromstring(response.content).find("RestException")
    assert exception is not None
    assert exception.findtext("Code") == "21604"
    assert exception.findtext("Status") == "400"
    assert exception.findtext("MoreInfo") == "https://www.twilio.com/docs/errors/21604"


def test_list_pages_with_tokens_and_filters(client: httpx.Client, gateway: RunningGateway) -> None:
    sids = [create(client, gateway, Body=f"m{i}", To="+1415935234" + str(i % 2)).json()["sid"] for i in range(7)]
    seen: list[str] = []
    url: str | None = gateway.account_path("/Messages.json?PageSize=3")
    pages = 0
    while url:
        page = client.get(url).json()
        assert page["page_size"] == 3 and page["page"] == pages
        assert page["start"] == pages * 3
        seen += [m["sid"] for m in page["messages"]]
        url = page["next_page_uri"]
        pages += 1
    assert seen == list(reversed(sids))
    assert pages == 3
    filtered = client.get(gateway.account_path("/Messages.json"), params={"To": "+14159352341"}).json()
    assert [m["sid"] for m in filtered["messages"]] == list(reversed(sids[1::2]))
    assert "To=%2B14159352341" in filtered["first_page_uri"]


def test_legacy_list_reports_total_and_last_page(client: httpx.Client, gateway: RunningGateway) -> None:
    for i in range(5):
        create(client, gateway, legacy=True, Body=f"m{i}")
    page = client.get(gateway.account_path("/SMS/Messages.json?PageSize=2")).json()
    assert page["total"] == 5 and page["num_pages"] == 3
    last = client.get(page["last_page_uri"]).json()
    assert len(last["sms_messages"]) == 1 and last["next_page_uri"] is None
    xml_list = ET.fromstring(client.get(gateway.account_path("/SMS/Messages?PageSize=2")).content)
    element = xml_list.find("SMSMessages")
    assert element is not None
    assert element.get("numpages") == "3" and element.get("total") == "5" and element.get("pagesize") == "2"
    assert len(element.findall("SMSMessage")) == 2


def test_date_sent_filter_excludes_unsent(client: httpx.Client, gateway: RunningGateway) -> None:
    # One long code sends one message per second: the last of three is still unsent for a while.
    sids = [create(client, gateway, Body=f"m{i}").json()["sid"] for i in range(3)]
    response = client.get(gateway.account_path("/Messages.json"), params={"DateSent>": "2000-01-01"})
    assert response.status_code == 200
    listed = {m["sid"] for m in response.json()["messages"]}
    assert sids[-1] not in listed
    assert all(m["date_sent"] is not None for m in response.json()["messages"])
    today = client.get(gateway.account_path(f"/Messages/{sids[0]}.json")).json()
    if today["date_sent"] is not None:
        day = datetime.strptime(today["date_sent"], "%a, %d %b %Y %H:%M:%S %z").strftime("%Y-%m-%d")
        on_day = client.get(gateway.account_path("/Messages.json"), params={"DateSent": day}).json()["messages"]
        assert sids[0] in {m["sid"] for m in on_day}
    bad = client.get(gateway.account_path("/Messages.json"), params={"DateSent": "yesterday"})
    assert bad.status_code == 400


def test_page_size_bounds(client: httpx.Client, gateway: RunningGateway) -> None:
    assert client.get(gateway.account_path("/Messages.json?PageSize=0")).status_code == 400
    assert client.get(gateway.account_path("/Messages.json?PageSize=abc")).status_code == 400
    assert client.get(gateway.account_path("/Messages.json?PageSize=5000")).json()["page_size"] == 1000
    assert client.get(gateway.account_path("/Messages.json?PageToken=zz")).status_code == 400


def test_fetch_unknown_message_is_20404(client: httpx.Client, gateway: RunningGateway) -> None:
    response = client.get(gateway.account_path("/Messages/SM" + "0" * 32 + ".json"))
    assert response.status_code == 404
    assert response.json()["code"] == 20404


def test_queued_message_can_be_neither_redacted_nor_deleted(client: httpx.Client, gateway: RunningGateway) -> None:
    # A long code sends one segment per second, so the third of three messages is still queued.
    sid = [create(client, gateway, Body=f"m{i}").json()["sid"] for i in range(3)][-1]
    assert client.get(gateway.account_path(f"/Messages/{sid}.json")).json()["status"] == "queued"
    assert client.post(gateway.account_path(f"/Messages/{sid}.json"), data={"Body": ""}).status_code == 400
    assert client.delete(gateway.account_path(f"/Messages/{sid}.json")).status_code == 400
    assert client.post(gateway.account_path(f"/Messages/{sid}.json"), data={"Status": "canceled"}).status_code == 400
    assert client.get(gateway.account_path(f"/Messages/{sid}.json")).json()["body"] == "m2"


def test_oversized_body_is_refused_with_413(client: httpx.Client, gateway: RunningGateway) -> None:
    response = create(client, gateway, Body="x" * 100_000)
    assert response.status_code == 413
    assert response.json()["status"] == 413
