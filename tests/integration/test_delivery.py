"""The delivery engine end to end in one process: pacing measured through the simulated carrier's record,
status callbacks received by a real loopback app and validated with twilio's RequestValidator."""

from __future__ import annotations

import itertools
import time
from datetime import datetime

import httpx
import pytest
from twilio.request_validator import RequestValidator

from kittiwake.config import PacingSettings
from support import CallbackReceiver, RunningGateway

A = "+14158141829"
B = "+14158141830"
TO = "+14159352345"


def provision(client: httpx.Client, gw: RunningGateway, *numbers: str) -> None:
    for number in numbers:
        response = client.post(gw.account_path("/IncomingPhoneNumbers.json"), data={"PhoneNumber": number})
        assert response.status_code == 201, response.text


def send(client: httpx.Client, gw: RunningGateway, **params: str) -> dict[str, str]:
    data = {"From": A, "To": TO, "Body": "hello"} | params
    legacy = data.pop("legacy", None)
    path = "/SMS/Messages.json" if legacy else "/Messages.json"
    response = client.post(gw.account_path(path), data=data)
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def sim_records(client: httpx.Client, **filters: str) -> list[dict[str, object]]:
    response = client.get("/sim/messages", params=filters)
    assert response.status_code == 200
    records: list[dict[str, object]] = response.json()["messages"]
    return records


def wait_for_status(client: httpx.Client, gw: RunningGateway, sid: str, statuses: set[str], timeout: float = 15):
    deadline = time.monotonic() + timeout
    while True:
        message = client.get(gw.account_path(f"/Messages/{sid}.json")).json()
        if message["status"] in statuses or time.monotonic() > deadline:
            return message
        time.sleep(0.05)


def instant(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["submitted_at"]).replace("Z", "+00:00")).timestamp()


@pytest.fixture
def client(gateway: RunningGateway) -> httpx.Client:
    with gateway.client() as c:
        provision(c, gateway, A, B)
        yield c


def test_each_long_code_sends_one_segment_per_second_in_order_without_idling(
    client: httpx.Client, gateway: RunningGateway
) -> None:
    bodies_a = ["a0", "a1 " + "x" * 160, "a2", "a3"]  # a1 has two segments: it uses two seconds
    sids_a = [send(client, gateway, From=A, Body=b)["sid"] for b in bodies_a]
    accepted_b = time.time()
    sids_b = [send(client, gateway, From=B, Body=f"b{i}")["sid"] for i in range(3)]
    wait_for_status(client, gateway, sids_a[-1], {"sent", "delivered"})
    wait_for_status(client, gateway, sids_b[-1], {"sent", "delivered"})
    for sender, sids in ((A, sids_a), (B, sids_b)):
        records = sim_records(client, From=sender)
        assert [r["sid"] for r in records] == sids, "per sender, messages leave in the order they were accepted"
        times = [instant(r) for r in records]
        for previous, current, record in zip(times, times[1:], records, strict=False):
            allowed = previous + int(str(record["segments"]))  # 1 s per segment of the previous message
            # Never two within the interval (1 ms of slack for the millisecond timestamps) ...
            assert current >= allowed - 0.002, (sender, times)
            # ... and never idle while work is due (generous slack for a loaded CI machine).
            assert current <= allowed + 0.5, (sender, times)
    # B's first message does not wait behind A's backlog.
    assert instant(sim_records(client, From=B)[0]) - accepted_b < 0.5


@pytest.mark.parametrize("gateway", [{"pacing": PacingSettings(per_sender=((A, 4.0),))}], indirect=True)
def test_operator_rate_per_sender(client: httpx.Client, gateway: RunningGateway) -> None:
    sids = [send(client, gateway, Body=f"m{i}")["sid"] for i in range(6)]
    wait_for_status(client, gateway, sids[-1], {"sent", "delivered"})
    times = [instant(r) for r in sim_records(client, From=A)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.25 - 0.002 <= gap <= 0.25 + 0.3 for gap in gaps), gaps


def validate(receiver_request: object, token: str) -> bool:
    validator = RequestValidator(token)
    request = receiver_request
    return bool(
        validator.validate(request.url, request.params, request.headers.get("X-Twilio-Signature", ""))  # type: ignore[attr-defined]
    )


def test_modern_status_callbacks_sent_and_delivered_signed(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    message = send(client, gateway, StatusCallback=receiver.url("/status?tag=1"))
    got = receiver.wait_for(2, MessageSid=message["sid"])
    assert [r.params["MessageStatus"] for r in got] in (["sent", "delivered"], ["delivered", "sent"])
    for request in got:
        assert validate(request, gateway.auth_token)
        assert (
            request.params["SmsSid"] == message["sid"]
            and request.params["SmsStatus"] == request.params["MessageStatus"]
        )
        assert request.params["AccountSid"] == gateway.account_sid
        assert (
            request.params["From"] == A and request.params["To"] == TO and request.params["ApiVersion"] == "2010-04-01"
        )
        assert request.headers["I-Twilio-Idempotency-Token"]
        assert "ErrorCode" not in request.params
    fetched = wait_for_status(client, gateway, message["sid"], {"delivered"})
    assert fetched["status"] == "delivered" and fetched["date_sent"] is not None and fetched["error_code"] is None
    assert fetched["price"] == "-0.00790" and fetched["price_unit"] == "USD"


def test_legacy_callback_only_on_sent(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    message = send(client, gateway, legacy="1", StatusCallback=receiver.url())
    got = receiver.wait_for(1, SmsSid=message["sid"])
    assert [r.params["SmsStatus"] for r in got] == ["sent"]
    wait_for_status(client, gateway, message["sid"], {"delivered"})
    time.sleep(0.3)
    assert len(receiver.wait_for(1, SmsSid=message["sid"], timeout=0)) == 1, "no callback after sent on the legacy API"


def test_callback_url_precedence(client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver) -> None:
    app = client.post(
        gateway.account_path("/Applications.json"),
        data={"SmsStatusCallback": receiver.url("/app-sms"), "MessageStatusCallback": receiver.url("/app-msg")},
    ).json()
    # Legacy: the Application's SmsStatusCallback takes precedence over StatusCallback.
    legacy = send(client, gateway, legacy="1", ApplicationSid=app["sid"], StatusCallback=receiver.url("/param"))
    # Modern: StatusCallback wins; without it, the Application's MessageStatusCallback.
    modern = send(client, gateway, ApplicationSid=app["sid"], StatusCallback=receiver.url("/param"))
    modern_app = send(client, gateway, From=B, ApplicationSid=app["sid"])
    assert "/app-sms" in receiver.wait_for(1, SmsSid=legacy["sid"])[0].url
    assert "/param" in receiver.wait_for(1, MessageSid=modern["sid"])[0].url
    assert "/app-msg" in receiver.wait_for(1, MessageSid=modern_app["sid"])[0].url


def test_carrier_rejection_and_undelivered(
    client: httpx.Client, gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    rejected = send(client, gateway, To="+15005550030", StatusCallback=receiver.url())
    undelivered = send(client, gateway, From=B, To="+15005550031", StatusCallback=receiver.url())
    failed = receiver.wait_for(1, MessageSid=rejected["sid"], MessageStatus="failed")
    assert failed and failed[0].params["ErrorCode"] == "30008" and validate(failed[0], gateway.auth_token)
    message = wait_for_status(client, gateway, rejected["sid"], {"failed"})
    assert message["status"] == "failed" and message["error_code"] == 30008
    lost = receiver.wait_for(1, MessageSid=undelivered["sid"], MessageStatus="undelivered")
    assert lost and lost[0].params["ErrorCode"] == "30003"
    message = wait_for_status(client, gateway, undelivered["sid"], {"undelivered"})
    assert message["error_code"] == 30003 and message["error_message"]
    outcomes = {r["sid"]: r["outcome"] for r in sim_records(client)}
    assert outcomes == {rejected["sid"]: "failed", undelivered["sid"]: "undelivered"}


def test_message_past_its_validity_period_fails_with_30001(client: httpx.Client, gateway: RunningGateway) -> None:
    sids = [send(client, gateway, Body=f"m{i}")["sid"] for i in range(3)]
    late = send(client, gateway, Body="late", ValidityPeriod="1")
    message = wait_for_status(client, gateway, late["sid"], {"failed", "sent", "delivered"})
    assert message["status"] == "failed" and message["error_code"] == 30001
    wait_for_status(client, gateway, sids[-1], {"sent", "delivered"})
    assert late["sid"] not in {r["sid"] for r in sim_records(client)}


@pytest.mark.parametrize("gateway", [{"pacing": PacingSettings(max_backlog_seconds=3)}], indirect=True)
def test_backlog_over_the_cap_is_refused_with_21611(client: httpx.Client, gateway: RunningGateway) -> None:
    codes = []
    for i in range(8):
        response = client.post(gateway.account_path("/Messages.json"), data={"From": A, "To": TO, "Body": f"m{i}"})
        codes.append(response.status_code if response.status_code == 201 else response.json()["code"])
    assert 21611 in codes and codes.count(201) <= 5, codes
    # Another sender's queue is its own.
    assert (
        client.post(gateway.account_path("/Messages.json"), data={"From": B, "To": TO, "Body": "x"}).status_code == 201
    )


def test_sim_record_is_per_account_and_can_be_cleared(client: httpx.Client, gateway: RunningGateway) -> None:
    sid = send(client, gateway)["sid"]
    wait_for_status(client, gateway, sid, {"sent", "delivered"})
    record = sim_records(client)[0]
    assert record["sid"] == sid and record["from"] == A and record["to"] == TO and record["body"] == "hello"
    assert record["segments"] == 1 and record["outcome"] == "delivered"
    assert str(record["submitted_at"]).endswith("Z") and len(str(record["submitted_at"])) == 24
    other = client.post("/2010-04-01/Accounts.json", data={"FriendlyName": "sub"}).json()
    as_other = httpx.get(f"{gateway.base_url}/sim/messages", auth=(other["sid"], other["auth_token"]))
    assert as_other.status_code == 200 and as_other.json()["messages"] == []
    assert httpx.get(f"{gateway.base_url}/sim/messages").status_code == 401
    assert client.delete("/sim/messages").status_code == 204
    assert sim_records(client) == []


def test_metrics_count_what_happened(client: httpx.Client, gateway: RunningGateway) -> None:
    sid = send(client, gateway)["sid"]
    wait_for_status(client, gateway, sid, {"delivered"})
    text = httpx.get(f"{gateway.base_url}/metrics").text
    assert "# TYPE kittiwake_submitted_total counter" in text
    submitted = [line for line in text.splitlines() if line.startswith("kittiwake_submitted_total ")]
    assert submitted and float(submitted[0].split()[1]) >= 1
    assert 'kittiwake_pacing_lateness_seconds{quantile="0.99"}' in text
    assert gateway.account_sid not in text and gateway.auth_token not in text
