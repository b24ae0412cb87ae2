"""Python driver for the node-smpp SMSC in ``smsc.js`` (an independent SMPP peer for integration tests).

Install once (CI too): ``npm ci --prefix tests/peers``. Tests skip when :func:`node_available` is False.

    from peers.smsc import Smsc, node_available, SKIP_REASON

    with Smsc(config={"resp_id_format": "hex", "receipt_id_format": "decimal"}) as smsc:
        ...connect an ESME to 127.0.0.1:smsc.port, bind as system_id "kittiwake" / password "secret"...
        [ev] = smsc.wait_for("submit_sm", destination_addr="4915112345678")
        smsc.send({"cmd": "mo", "source_addr": "4917000001", "destination_addr": "4900", "text": "hi"})

Control protocol (one JSON object per line).

Commands (stdin):
  {"cmd":"config", <key>: <value>, ...}   any of the keys below; answered by {"event":"config_ok"}
      system_id, password                  credentials (default "kittiwake" / "secret")
      receipts              "none" | "delivered" | "undelivered" | "expired" | "rejected", or a map
                            {destination_addr: state, "*": default_state}          (default "delivered")
      receipt_delay_ms      delay between submit_sm_resp and the receipt (default 50)
      respect_registered_delivery  only send receipts that registered_delivery asks for (default true)
      resp_delay_ms         delay before each submit_sm_resp (default 0)
      resp_id_format        "hex" | "decimal": message_id in submit_sm_resp (default "hex")
      receipt_id_format     id in the receipt text; null = resp_id_format
      receipt_tlv_id_format id in the receipted_message_id TLV; null = resp_id_format
      receipt_tlvs          send receipted_message_id (0x001E) + message_state (0x0427) TLVs (default true)
      receipt_date_seconds  dates as YYMMDDhhmmss instead of YYMMDDhhmm (default false)
      first_message_id      numeric id of the next accepted message (default 0x1a2b3c = 1715004)
      throttle_next N       answer the next N submit_sm with ESME_RTHROTTLED (0x58)
      queue_full_next N     answer the next N submit_sm with ESME_RMSGQFUL (0x14)
      fail_next {"count":N,"status":S}   answer the next N submit_sm with status S (default 0x45)
      hold_responses bool   accept submit_sm but keep the responses until {"cmd":"release"}
      drop_after N          swallow the next N submit_sm, then close the TCP connection abruptly
  {"cmd":"release"}        answer all held submit_sm (receipts follow as usual)
  {"cmd":"drop"}           close every connection abruptly
  {"cmd":"mo","source_addr":..,"destination_addr":..,"text":..,"data_coding":0|8,
   "parts":N, "ref":R, "duplicate_part":P}
                           mobile-originated deliver_sm (esm_class 0); with parts > 1 the text is split in N
                           equal pieces, each with esm_class 0x40 and UDH 05 00 03 R N i (06 08 04 .. when
                           R > 255); part number P (1-based) is sent twice
  {"cmd":"enquire_link"}   send enquire_link to every bound session
  {"cmd":"unbind"}         send unbind to every bound session (closes after unbind_resp)
  {"cmd":"stop"}           exit cleanly (closing stdin does the same)

Events (stdout); most carry "session" (connection number) and "system_id":
  listening {port}                 connected {session}                  closed {}
  bound {mode: transceiver|transmitter|receiver, password, interface_version}
  bind_failed {mode, system_id, command_status}  (unknown system_id 0x0D, wrong password 0x0E, twice 0x05)
  submit_sm {seq, message_id (when accepted), source_addr, destination_addr, data_coding, esm_class,
             registered_delivery, short_message_hex, text, udh_hex, tlvs: {sar_*, message_payload_hex, "0x1234"},
             disposition: answered|held|rejected|dropped, command_status (null when dropped)}
  submit_sm_resp {seq, command_status, message_id, sent}
  deliver_sm_sent / deliver_sm_resp {seq, command_status (resp only), kind: receipt|mo, ...}
      receipts add message_id (as in submit_sm_resp), receipt_id, stat, text; MO parts add part, parts, ref
  deliver_sm_queued {...}          no receiving session bound; sent on the next receiver/transceiver bind
  enquire_link {seq}   enquire_link_resp {seq}   unbound {initiator: esme|smsc}   generic_nack {seq, command_status}
  unsupported {command, command_id}   error {message}   config_ok   stopped
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

PEERS_DIR = Path(__file__).resolve().parent
SMSC_JS = PEERS_DIR / "smsc.js"
SKIP_REASON = "node or node-smpp missing: install Node 20 and run `npm ci --prefix tests/peers`"

__all__ = ["SKIP_REASON", "Smsc", "node_available"]


def node_available() -> bool:
    """True when the node binary is on PATH and tests/peers/node_modules/smpp is installed."""
    return shutil.which("node") is not None and (PEERS_DIR / "node_modules" / "smpp").is_dir()


class Smsc:
    """A running ``smsc.js`` subprocess. Use as a context manager, or call :meth:`start` / :meth:`stop`."""

    def __init__(self, port: int = 0, *, config: dict[str, Any] | None = None, start_timeout: float = 20.0) -> None:
        self.requested_port = port
        self.config = dict(config or {})
        self.start_timeout = start_timeout
        self.port: int = 0
        self.events: list[dict[str, Any]] = []
        self.stderr_lines: list[str] = []
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._threads: list[threading.Thread] = []

    # -------------------------------------------------------------- lifecycle

    def start(self) -> Smsc:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError(SKIP_REASON)
        args = [node, str(SMSC_JS), str(self.requested_port)]
        if self.config:
            args += ["--config", json.dumps(self.config)]
        self._proc = subprocess.Popen(
            args,
            cwd=PEERS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, name="smsc-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="smsc-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            [listening] = self.wait_for("listening", timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.port = int(listening["port"])
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the SMSC to exit, kill it if it does not, and release pipes and threads. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            with contextlib.suppress(BrokenPipeError, OSError, ValueError):
                self._write(proc, {"cmd": "stop"})
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    stream.close()

    def __enter__(self) -> Smsc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- control channel

    def send(self, cmd: dict[str, Any]) -> None:
        """Send one command, e.g. ``{"cmd": "config", "throttle_next": 2}``."""
        if self._proc is None:
            raise RuntimeError("SMSC is not running")
        self._write(self._proc, cmd)

    def configure(self, **settings: Any) -> None:
        """``config`` command that waits for the SMSC's acknowledgement (so later traffic sees it)."""
        mark = self.mark()
        self.send({"cmd": "config", **settings})
        self.wait_for("config_ok", since=mark)

    def mark(self) -> int:
        """Index of the next event: pass as ``since=`` to :meth:`wait_for` to ignore earlier events."""
        with self._cond:
            return len(self.events)

    def wait_for(
        self, event_name: str, count: int = 1, timeout: float = 10.0, *, since: int = 0, **match: Any
    ) -> list[dict[str, Any]]:
        """First ``count`` events named ``event_name`` (from index ``since``) whose fields equal ``match``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [
                    ev
                    for ev in self.events[since:]
                    if ev.get("event") == event_name and all(ev.get(k) == v for k, v in match.items())
                ]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                exited = self._proc is None or self._proc.poll() is not None
                if remaining <= 0 or (exited and not any(t.is_alive() for t in self._threads[:1])):
                    tail = "\n".join(json.dumps(ev) for ev in self.events[-20:])
                    raise TimeoutError(
                        f"{count} x {event_name!r} {match or ''} not seen in {timeout}s (got {len(found)}); "
                        f"last events:\n{tail}\nstderr:\n{''.join(self.stderr_lines[-20:])}"
                    )
                self._cond.wait(min(remaining, 0.2))

    # -------------------------------------------------------------- internals

    def _write(self, proc: subprocess.Popen[str], cmd: dict[str, Any]) -> None:
        with self._write_lock:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(cmd) + "\n")
            proc.stdin.flush()

    def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.rstrip("\n")}
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for line in proc.stderr:
            self.stderr_lines.append(line)
