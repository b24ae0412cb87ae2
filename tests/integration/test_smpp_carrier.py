"""The SMPP carrier against an independent SMSC (node-smpp, tests/peers/smsc.js): binds, submits, receipts
in both id bases and date formats, throttling, a dropped connection, MO single and concatenated, long
GSM-7 and UCS-2 messages."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kittiwake.config import CarrierSettings, PacingSettings
from peers.smsc import SKIP_REASON, Smsc, node_available
from support import CallbackReceiver, GatewayThread, RunningGateway

pytestmark = pytest.mark.skipif(not node_available(), reason=SKIP_REASON)

SENDER = "+14158141829"
TO = "+4915112345678"


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    with Smsc() as server:
        yield server


@pytest.fixture
def smpp_gateway(tmp_path: Path, smsc: Smsc) -> Iterator[RunningGateway]:
    carrier = CarrierSettings(
        name="smsc", type="smpp", host="127.0.0.1", port=smsc.port, system_id="kittiwake", password="secret",
        window=5, reconnect_min=0.2, reconnect_max=1.0, response_timeout=3.0, enquire_link_interval=5.0,
    )  # fmt: skip
    # A fast long code, so these tests measure the carrier rather than the seed's 1 segment/s rule.
    thread = GatewayThread(tmp_path / "data", carriers=(carrier,), pacing=PacingSettings(long_code=50.0))
    thread.start()
    first = thread.gateway.first_account
    assert first is not None
    gw = RunningGateway(f"http://127.0.0.1:{thread.gateway.port}", first.sid, first.auth_token, tmp_path / "data")
    with gw.client() as c:
        assert c.post(gw.account_path("/IncomingPhoneNumbers.json"), data={"PhoneNumber": SENDER}).status_code == 201
    smsc.wait_for("bound", timeout=15)
    try:
        yield gw
    finally:
        thread.stop()


def send(gw: RunningGateway, body: str = "Hello @ world", **extra: str) -> str:
    with gw.client() as c:
        response = c.post(gw.account_path("/Messages.json"), data={"From": SENDER, "To": TO, "Body": body, **extra})
        assert response.status_code == 201, response.text
        sid: str = response.json()["sid"]
        return sid


def status_of(gw: RunningGateway, sid: str, wanted: set[str], timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    with gw.client() as c:
        while True:
            message: dict[str, object] = c.get(gw.account_path(f"/Messages/{sid}.json")).json()
            if message["status"] in wanted or time.monotonic() > deadline:
                return message
            time.sleep(0.05)


@pytest.mark.parametrize(
    "config",
    [
        {"resp_id_format": "hex", "receipt_id_format": "decimal", "receipt_date_seconds": True},
        {"resp_id_format": "decimal", "receipt_id_format": "hex", "receipt_tlvs": False},
        {"resp_id_format": "hex", "receipt_id_format": "hex", "receipt_tlvs": False, "receipt_date_seconds": False},
        {"resp_id_format": "decimal", "receipt_tlv_id_format": "hex", "receipt_id_format": "decimal"},
    ],
    ids=["hex-resp-decimal-receipt", "decimal-resp-hex-text", "hex-text-no-seconds", "hex-tlv"],
)
def test_submit_and_receipt_match_in_any_id_format(
    smsc: Smsc, smpp_gateway: RunningGateway, receiver: CallbackReceiver, config: dict[str, object]
) -> None:
    smsc.configure(**config)
    sid = send(smpp_gateway, StatusCallback=receiver.url())
    [submit] = smsc.wait_for("submit_sm", destination_addr=TO.lstrip("+"))
    assert submit["text"] == "Hello @ world" and submit["data_coding"] == 0
    assert submit["source_addr"] == SENDER.lstrip("+") and submit["registered_delivery"] == 1
    message = status_of(smpp_gateway, sid, {"delivered", "undelivered", "failed"})
    assert message["status"] == "delivered", message
    got = receiver.wait_for(2, MessageSid=sid)
    assert sorted(r.params["MessageStatus"] for r in got) == ["delivered", "sent"]


def test_undelivered_receipt_maps_to_twilio_error(smsc: Smsc, smpp_gateway: RunningGateway) -> None:
    smsc.configure(receipts="undelivered")
    sid = send(smpp_gateway)
    message = status_of(smpp_gateway, sid, {"undelivered", "delivered"})
    assert message["status"] == "undelivered" and message["error_code"] == 30003


def test_long_gsm_and_ucs2_messages_go_in_udh_parts_and_deliver_when_all_parts_do(
    smsc: Smsc, smpp_gateway: RunningGateway
) -> None:
    gsm = "a" * 150 + "€" * 10  # 170 septets: two parts, the escape pairs not split
    emoji = "Grüße 😀 " * 12  # UCS-2, 108 units: two parts, no surrogate pair split
    sids = [send(smpp_gateway, gsm), send(smpp_gateway, emoji)]
    parts = smsc.wait_for("submit_sm", count=4, timeout=15)
    by_coding = {0: [p for p in parts if p["data_coding"] == 0], 8: [p for p in parts if p["data_coding"] == 8]}
    assert "".join(str(p["text"]) for p in by_coding[0]) == gsm
    assert "".join(str(p["text"]) for p in by_coding[8]) == emoji
    assert all(p["esm_class"] & 0x40 and str(p["udh_hex"]).startswith("050003") for p in parts)
    for sid in sids:
        assert status_of(smpp_gateway, sid, {"delivered"})["status"] == "delivered"


def test_throttling_slows_down_and_keeps_order(smsc: Smsc, smpp_gateway: RunningGateway) -> None:
    smsc.configure(throttle_next=3, queue_full_next=1)
    sids = [send(smpp_gateway, f"m{i}") for i in range(5)]
    for sid in sids:
        assert status_of(smpp_gateway, sid, {"delivered"})["status"] == "delivered"
    accepted = [e["text"] for e in smsc.wait_for("submit_sm", count=9) if e["disposition"] == "answered"]
    assert accepted == [f"m{i}" for i in range(5)], "a sender's order survives throttling"


def test_permanent_error_fails_the_message(smsc: Smsc, smpp_gateway: RunningGateway) -> None:
    smsc.configure(fail_next={"count": 1, "status": 0x0B})
    sid = send(smpp_gateway)
    message = status_of(smpp_gateway, sid, {"failed", "delivered"})
    assert message["status"] == "failed" and message["error_code"] == 30005


def test_smsc_drops_mid_window_and_every_message_still_goes(smsc: Smsc, smpp_gateway: RunningGateway) -> None:
    smsc.configure(drop_after=2)
    sids = [send(smpp_gateway, f"d{i}") for i in range(4)]
    for sid in sids:
        assert status_of(smpp_gateway, sid, {"delivered"}, timeout=30)["status"] == "delivered"
    assert len(smsc.wait_for("bound", count=2, timeout=15)) >= 2, "the carrier bound again"
    metrics = httpx.get(f"{smpp_gateway.base_url}/metrics").text
    assert 'kittiwake_bind_up{carrier="smsc"} 1' in metrics
    redriven = [line for line in metrics.splitlines() if line.startswith("kittiwake_carrier_redriven_total")]
    assert redriven and float(redriven[0].split()[-1]) >= 2, "the swallowed submissions were re-driven"


def test_mo_single_and_concatenated_become_inbound_messages(
    smsc: Smsc, smpp_gateway: RunningGateway, receiver: CallbackReceiver
) -> None:
    with smpp_gateway.client() as c:
        numbers = c.get(smpp_gateway.account_path("/IncomingPhoneNumbers.json")).json()["incoming_phone_numbers"]
        c.post(
            smpp_gateway.account_path(f"/IncomingPhoneNumbers/{numbers[0]['sid']}.json"),
            data={"SmsUrl": receiver.url("/in")},
        )
    smsc.send({"cmd": "mo", "source_addr": "4915100000001", "destination_addr": SENDER.lstrip("+"), "text": "single"})
    long_text = "part one; part two; part three! " * 3
    smsc.send({
        "cmd": "mo", "source_addr": "4915100000002", "destination_addr": SENDER.lstrip("+"), "text": long_text,
        "data_coding": 8, "parts": 3, "ref": 42, "duplicate_part": 2,
    })  # fmt: skip
    single = receiver.wait_for(1, Body="single")
    assert single and single[0].params["From"] == "+4915100000001" and single[0].params["To"] == SENDER
    joined = receiver.wait_for(1, Body=long_text)
    assert joined and joined[0].params["From"] == "+4915100000002"
    with smpp_gateway.client() as c:
        inbound = [
            m
            for m in c.get(smpp_gateway.account_path("/Messages.json")).json()["messages"]
            if m["direction"] == "inbound"
        ]
    assert sorted(m["body"] for m in inbound) == sorted(["single", long_text]), "one message, duplicate part dropped"


def test_unknown_receipt_is_acknowledged_and_the_bind_stays(smsc: Smsc, smpp_gateway: RunningGateway) -> None:
    smsc.send({"cmd": "mo", "source_addr": "4915100000009", "destination_addr": "4900", "text": "to nobody"})
    [response] = smsc.wait_for("deliver_sm_resp", kind="mo")
    assert response["command_status"] == 0
    sid = send(smpp_gateway)
    assert status_of(smpp_gateway, sid, {"delivered"})["status"] == "delivered"
    assert len(smsc.wait_for("bound", count=1)) == 1


def test_receipts_that_overtake_the_sent_write_are_not_lost(smsc: Smsc, smpp_gateway: RunningGateway) -> None:
    # Receipts at once after each submit_sm_resp, from many senders at a time: they race the writes that
    # mark their messages sent (bench/smpp.py lost 15-23% of receipts this way before the fix).
    smsc.configure(receipt_delay_ms=0)
    senders = [f"+1415555{1000 + i}" for i in range(30)]
    with smpp_gateway.client() as c:
        for number in senders:
            c.post(smpp_gateway.account_path("/IncomingPhoneNumbers.json"), data={"PhoneNumber": number})
        sids = [
            c.post(smpp_gateway.account_path("/Messages.json"), data={"From": n, "To": TO, "Body": f"race {i}"}).json()[
                "sid"
            ]
            for i in range(4)
            for n in senders
        ]
    statuses = [status_of(smpp_gateway, sid, {"delivered"})["status"] for sid in sids]
    assert statuses.count("delivered") == len(sids), collections.Counter(statuses)
    assert status_of(smpp_gateway, sids[0], {"delivered"})["date_sent"] is not None, "the sent fields stay"
