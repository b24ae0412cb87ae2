"""Crash safety: SIGKILL a real ``kittiwake serve`` in the middle of a backlog and start it again.

Every accepted message is still delivered; a message is submitted twice only if its submission was in
flight at the kill (counted); pacing state and the callback outbox survive.
"""

from __future__ import annotations

import collections
import itertools
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from support import CallbackReceiver, run_cli, start_serve

SENDERS = ["+14158141829", "+14158141830", "+14158141831"]
PER_SENDER = 10
RATE = 4.0  # segments per second per long code, set in the config so the test stays short


def _instant(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["submitted_at"]).replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_stop_mid_backlog_loses_nothing(tmp_path: Path, receiver: CallbackReceiver, stop_signal: int) -> None:
    data_dir = tmp_path / "data"
    config = tmp_path / "kittiwake.toml"
    config.write_text(f"[pacing]\nlong_code = {RATE}\n\n[simulator]\nreceipt_delay = 0.5\n")
    first = start_serve(data_dir, "--config", str(config))
    gw = first.gateway
    for number in SENDERS:
        run_cli("numbers", "add", "--account", gw.account_sid, number, data_dir=data_dir)
    accepted: list[str] = []
    with httpx.Client(base_url=first.gateway.base_url, auth=gw.auth, timeout=10) as client:
        for i in range(PER_SENDER):
            for sender in SENDERS:
                response = client.post(
                    gw.account_path("/Messages.json"),
                    data={"From": sender, "To": "+14159352345", "Body": f"m{i}", "StatusCallback": receiver.url()},
                )
                assert response.status_code == 201
                accepted.append(response.json()["sid"])
        time.sleep(1.0)
        before_kill = len(client.get("/sim/messages").json()["messages"])
    assert 0 < before_kill < len(accepted), "the kill must land in the middle of the backlog"
    first.process.send_signal(stop_signal)
    exit_status = first.process.wait(20)
    if stop_signal == signal.SIGTERM:
        assert exit_status == 0, "a graceful stop exits cleanly"
    if first.process.stdout is not None:
        first.process.stdout.close()

    second = start_serve(data_dir, "--config", str(config))
    try:
        with httpx.Client(base_url=second.gateway.base_url, auth=gw.auth, timeout=10) as client:
            deadline = time.monotonic() + 60
            statuses: dict[str, str] = {}
            while time.monotonic() < deadline:
                listing = client.get(gw.account_path("/Messages.json?PageSize=1000")).json()["messages"]
                statuses = {m["sid"]: m["status"] for m in listing}
                if all(statuses.get(sid) == "delivered" for sid in accepted):
                    break
                time.sleep(0.2)
            assert all(statuses.get(sid) == "delivered" for sid in accepted), collections.Counter(statuses.values())
            records = client.get("/sim/messages").json()["messages"]
        counts = collections.Counter(r["sid"] for r in records)
        assert set(counts) == set(accepted), "every accepted message reached the carrier"
        duplicates = sum(n - 1 for n in counts.values())
        # At most one submission per sender can be in flight at a kill (one claim per sender at 4/s);
        # a graceful stop finishes or parks its in-flight work, so it never duplicates.
        assert duplicates <= (len(SENDERS) if stop_signal == signal.SIGKILL else 0), counts
        for sender in SENDERS:
            mine = [r for r in records if r["from"] == sender]
            assert [r["sid"] for r in mine if counts[str(r["sid"])] == 1] == [
                sid for sid in accepted if sid in {r["sid"] for r in mine} and counts[sid] == 1
            ], "order per sender survives the restart"
            times = [_instant(r) for r in mine]
            too_close = sum(1 for a, b in itertools.pairwise(times) if b - a < 1 / RATE - 0.002)
            assert too_close <= sum(1 for r in mine if counts[str(r["sid"])] > 1), (sender, times)
        # The outbox survived too: every message's delivered callback arrives (at least once).
        for sid in accepted:
            assert receiver.wait_for(1, MessageSid=sid, MessageStatus="delivered", timeout=20), sid
    finally:
        second.process.terminate()
        second.process.wait(20)
        if second.process.stdout is not None:
            second.process.stdout.close()
