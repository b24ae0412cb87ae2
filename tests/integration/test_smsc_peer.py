"""Self-test of the node-smpp SMSC harness (tests/peers/smsc.js) with a tiny raw-socket ESME.

The ESME here is deliberately independent of Kittiwake's own SMPP codec: plain ``struct`` packing.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from peers.smsc import SKIP_REASON, Smsc, node_available

pytestmark = pytest.mark.skipif(not node_available(), reason=SKIP_REASON)

BIND_TRANSCEIVER = 0x00000009
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015
RESP = 0x80000000

ESME_RINVPASWD = 0x0E
ESME_RBINDFAIL = 0x0D
ESME_RTHROTTLED = 0x58
ESME_RMSGQFUL = 0x14
ESME_RSUBMITFAIL = 0x45


@dataclass
class Pdu:
    command_id: int
    status: int
    seq: int
    body: bytes


@dataclass
class DeliverSm:
    source_addr: str
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)


def cstr(value: str) -> bytes:
    return value.encode("ascii") + b"\0"


def read_cstr(body: bytes, offset: int) -> tuple[str, int]:
    end = body.index(b"\0", offset)
    return body[offset:end].decode("ascii"), end + 1


def parse_deliver_sm(body: bytes) -> DeliverSm:
    _service_type, off = read_cstr(body, 0)
    off += 2  # source ton/npi
    source, off = read_cstr(body, off)
    off += 2  # dest ton/npi
    dest, off = read_cstr(body, off)
    esm_class = body[off]
    off += 3  # esm_class, protocol_id, priority_flag
    _schedule, off = read_cstr(body, off)
    _validity, off = read_cstr(body, off)
    off += 2  # registered_delivery, replace_if_present_flag
    data_coding = body[off]
    off += 2  # data_coding, sm_default_msg_id
    length = body[off]
    short_message = body[off + 1 : off + 1 + length]
    off += 1 + length
    tlvs = {}
    while off + 4 <= len(body):
        tag, tlv_len = struct.unpack_from(">HH", body, off)
        tlvs[tag] = body[off + 4 : off + 4 + tlv_len]
        off += 4 + tlv_len
    return DeliverSm(source, dest, esm_class, data_coding, short_message, tlvs)


class RawEsme:
    """Blocking, minimal SMPP 3.4 ESME over a plain socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, command_id: int, body: bytes = b"", *, status: int = 0, seq: int | None = None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.sock.sendall(struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body)
        return seq

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed by SMSC")
            data += chunk
        return data

    def read(self) -> Pdu:
        length, command_id, status, seq = struct.unpack(">IIII", self._read_exact(16))
        return Pdu(command_id, status, seq, self._read_exact(length - 16))

    def expect(self, command_id: int) -> Pdu:
        pdu = self.read()
        assert pdu.command_id == command_id, f"expected {command_id:#x}, got {pdu.command_id:#x}"
        return pdu

    def bind_transceiver(self, system_id: str = "kittiwake", password: str = "secret") -> int:
        body = cstr(system_id) + cstr(password) + cstr("") + bytes([0x34, 0, 0]) + cstr("")
        self.send(BIND_TRANSCEIVER, body)
        return self.expect(BIND_TRANSCEIVER | RESP).status

    def submit_sm(
        self,
        destination: str,
        short_message: bytes,
        *,
        source: str = "Kittiwake",
        data_coding: int = 0,
        esm_class: int = 0,
        registered_delivery: int = 1,
        tlvs: bytes = b"",
    ) -> int:
        body = (
            cstr("")
            + bytes([5, 0])
            + cstr(source)
            + bytes([1, 1])
            + cstr(destination)
            + bytes([esm_class, 0, 0])
            + cstr("")
            + cstr("")
            + bytes([registered_delivery, 0, data_coding, 0, len(short_message)])
            + short_message
            + tlvs
        )
        return self.send(SUBMIT_SM, body)

    def submit_resp(self) -> tuple[int, str]:
        pdu = self.expect(SUBMIT_SM | RESP)
        message_id = read_cstr(pdu.body, 0)[0] if pdu.body else ""
        return pdu.status, message_id

    def deliver(self) -> DeliverSm:
        """Next deliver_sm, acknowledged with deliver_sm_resp."""
        pdu = self.expect(DELIVER_SM)
        self.send(DELIVER_SM | RESP, cstr(""), seq=pdu.seq)
        return parse_deliver_sm(pdu.body)


@pytest.fixture
def smsc() -> Iterator[Smsc]:
    with Smsc(config={"receipt_delay_ms": 10}) as running:
        yield running


@pytest.fixture
def esme(smsc: Smsc) -> Iterator[RawEsme]:
    client = RawEsme(smsc.port)
    try:
        assert client.bind_transceiver() == 0
        yield client
    finally:
        client.close()


def test_bind_credentials(smsc: Smsc) -> None:
    for system_id, password, expected in [
        ("kittiwake", "wrong", ESME_RINVPASWD),
        ("nobody", "secret", ESME_RBINDFAIL),
        ("kittiwake", "secret", 0),
    ]:
        client = RawEsme(smsc.port)
        try:
            assert client.bind_transceiver(system_id, password) == expected
        finally:
            client.close()
    [failed] = smsc.wait_for("bind_failed", system_id="nobody")
    assert failed["command_status"] == ESME_RBINDFAIL
    [bound] = smsc.wait_for("bound")
    assert bound["mode"] == "transceiver"
    assert bound["system_id"] == "kittiwake"


def test_submit_resp_hex_and_decimal_receipt_with_seconds(smsc: Smsc, esme: RawEsme) -> None:
    smsc.configure(resp_id_format="hex", receipt_id_format="decimal", receipt_date_seconds=True)
    # GSM 03.38 unpacked: '@' is 0x00, '€' is ESC 0x65
    seq = esme.submit_sm("4915112345678", b"Hello \x00 \x1b\x65 world")
    status, message_id = esme.submit_resp()
    assert status == 0
    assert re.fullmatch(r"[0-9a-f]+", message_id)
    assert re.search(r"[a-f]", message_id)  # default first id 0x1a2b3c

    [event] = smsc.wait_for("submit_sm", seq=seq)
    assert event["message_id"] == message_id
    assert event["text"] == "Hello @ € world"
    assert event["destination_addr"] == "4915112345678"
    assert event["source_addr"] == "Kittiwake"
    assert event["data_coding"] == 0
    assert event["short_message_hex"] == b"Hello \x00 \x1b\x65 world".hex()
    assert event["udh_hex"] is None

    receipt = esme.deliver()
    assert receipt.esm_class == 0x04
    assert receipt.source_addr == "4915112345678"
    text = receipt.short_message.decode("ascii")
    decimal_id = str(int(message_id, 16))
    assert re.fullmatch(
        rf"id:{decimal_id} sub:001 dlvrd:001 submit date:\d{{12}} done date:\d{{12}} "
        r"stat:DELIVRD err:000 text:Hello @ \? world",
        text,
    ), text
    assert receipt.tlvs[0x001E] == message_id.encode() + b"\0"  # receipted_message_id, same format as resp
    assert receipt.tlvs[0x0427] == bytes([2])  # message_state DELIVERED
    [resp] = smsc.wait_for("deliver_sm_resp", kind="receipt")
    assert resp["command_status"] == 0
    assert resp["message_id"] == message_id


def test_decimal_ids_minute_dates_and_per_destination_receipts(smsc: Smsc, esme: RawEsme) -> None:
    smsc.configure(resp_id_format="decimal", receipts={"491": "undelivered", "*": "delivered"}, receipt_tlvs=False)
    esme.submit_sm("491", b"a")
    _, failed_id = esme.submit_resp()
    assert failed_id.isdigit()
    receipt = esme.deliver()
    assert re.fullmatch(
        rf"id:{failed_id} sub:001 dlvrd:000 submit date:\d{{10}} done date:\d{{10}} stat:UNDELIV err:001 text:a",
        receipt.short_message.decode(),
    )
    assert receipt.tlvs == {}


def test_ucs2_udh_and_sar(smsc: Smsc, esme: RawEsme) -> None:
    udh = bytes([5, 0, 3, 0x42, 2, 1])
    seq = esme.submit_sm("4915100000001", udh + "Grüße ☃".encode("utf-16-be"), data_coding=8, esm_class=0x40)
    assert esme.submit_resp()[0] == 0
    [event] = smsc.wait_for("submit_sm", seq=seq)
    assert event["text"] == "Grüße ☃"
    assert event["udh_hex"] == udh.hex()
    assert event["esm_class"] == 0x40

    sar = struct.pack(">HHH", 0x020C, 2, 7) + struct.pack(">HHB", 0x020E, 1, 3) + struct.pack(">HHB", 0x020F, 1, 2)
    seq = esme.submit_sm("4915100000001", b"part two", tlvs=sar, registered_delivery=0)
    assert esme.submit_resp()[0] == 0
    [event] = smsc.wait_for("submit_sm", seq=seq)
    assert event["tlvs"] == {"sar_msg_ref_num": 7, "sar_total_segments": 3, "sar_segment_seqnum": 2}
    assert event["text"] == "part two"


@pytest.mark.parametrize(
    ("setting", "status"),
    [
        ({"throttle_next": 1}, ESME_RTHROTTLED),
        ({"queue_full_next": 1}, ESME_RMSGQFUL),
        ({"fail_next": {"count": 1}}, ESME_RSUBMITFAIL),
        ({"fail_next": {"count": 1, "status": 0x0B}}, 0x0B),
    ],
)
def test_error_replies(smsc: Smsc, esme: RawEsme, setting: dict[str, object], status: int) -> None:
    smsc.configure(**setting)
    seq = esme.submit_sm("4915100000002", b"x", registered_delivery=0)
    assert esme.submit_resp() == (status, "")
    [event] = smsc.wait_for("submit_sm", seq=seq)
    assert event["disposition"] == "rejected"
    assert event["command_status"] == status
    esme.submit_sm("4915100000002", b"y", registered_delivery=0)
    assert esme.submit_resp()[0] == 0  # only the next one


def test_hold_release_and_drop(smsc: Smsc, esme: RawEsme) -> None:
    smsc.configure(hold_responses=True)
    seq = esme.submit_sm("4915100000003", b"held", registered_delivery=0)
    [event] = smsc.wait_for("submit_sm", seq=seq)
    assert event["disposition"] == "held"
    esme.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        esme.read()
    esme.sock.settimeout(10)
    smsc.configure(hold_responses=False)
    smsc.send({"cmd": "release"})
    assert esme.submit_resp() == (0, event["message_id"])

    smsc.configure(drop_after=2)
    esme.submit_sm("4915100000003", b"lost 1")
    esme.submit_sm("4915100000003", b"lost 2")
    with pytest.raises(ConnectionError):
        esme.read()
    assert len(smsc.wait_for("submit_sm", count=2, disposition="dropped")) == 2
    smsc.wait_for("closed")


def test_mo_single_and_enquire_link_and_unbind(smsc: Smsc, esme: RawEsme) -> None:
    smsc.send({"cmd": "mo", "source_addr": "4917000001", "destination_addr": "4900", "text": "Hi @ you"})
    mo = esme.deliver()
    assert (mo.source_addr, mo.destination_addr, mo.esm_class, mo.data_coding) == ("4917000001", "4900", 0, 0)
    assert mo.short_message == b"Hi \x00 you"
    [resp] = smsc.wait_for("deliver_sm_resp", kind="mo")
    assert resp["command_status"] == 0

    smsc.send({"cmd": "mo", "text": "Привет", "data_coding": 8})
    assert esme.deliver().short_message.decode("utf-16-be") == "Привет"

    seq = esme.send(ENQUIRE_LINK)
    assert esme.expect(ENQUIRE_LINK | RESP).seq == seq
    smsc.wait_for("enquire_link", seq=seq)
    esme.send(UNBIND)
    assert esme.expect(UNBIND | RESP).status == 0
    smsc.wait_for("unbound", initiator="esme")


def test_mo_multipart_udh_with_duplicate(smsc: Smsc, esme: RawEsme) -> None:
    smsc.send({"cmd": "mo", "text": "abcdefghi", "parts": 3, "ref": 9, "duplicate_part": 2})
    parts = [esme.deliver() for _ in range(4)]
    assert all(p.esm_class & 0x40 for p in parts)
    udhs = [p.short_message[:6] for p in parts]
    assert udhs == [bytes([5, 0, 3, 9, 3, n]) for n in (1, 2, 2, 3)]
    assert [p.short_message[6:] for p in parts] == [b"abc", b"def", b"def", b"ghi"]

    smsc.send({"cmd": "mo", "text": "Grüße!", "parts": 2, "ref": 0x1234, "data_coding": 8})
    first, second = esme.deliver(), esme.deliver()
    assert first.short_message[:7] == bytes([6, 8, 4, 0x12, 0x34, 2, 1])
    assert (first.short_message[7:] + second.short_message[7:]).decode("utf-16-be") == "Grüße!"
    assert len(smsc.wait_for("deliver_sm_resp", count=6, kind="mo")) == 6
