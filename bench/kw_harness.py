"""Shared plumbing for the delivery-engine benchmarks (bench/pacing.py, bench/delivery.py, bench/queue_depth.py).

Not a benchmark itself. It starts ``kittiwake serve --port 0`` as a subprocess and parses its banner, stops it
by its own PID (SIGTERM, then SIGKILL), provisions senders through the REST API, writes config files, and
formats results as markdown. Every helper cleans up what it started.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson

from kittiwake import provisioning
from kittiwake.clock import SystemClock
from kittiwake.domain import Direction, MessageStatus
from kittiwake.models import Message
from kittiwake.store import rows
from kittiwake.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
KITTIWAKE = str(VENV_BIN / "kittiwake")
API = "/2010-04-01/Accounts"
INSERT_MESSAGE = (
    f"INSERT INTO messages ({', '.join(rows.MESSAGE_COLUMNS[:-1])}) "
    f"VALUES ({', '.join('?' * (len(rows.MESSAGE_COLUMNS) - 1))})"
)
CHUNK = 100_000


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the results)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks stop subprocesses and remove temp dirs (e.g. timeout)."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def command_line() -> str:
    """The exact command that produced this output."""
    return " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv])


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("KITTIWAKE_DATA_DIR", "KITTIWAKE_CONFIG", "TWILIO_REGION", "TWILIO_EDGE"):
        env.pop(name, None)
    return env


@dataclass
class Server:
    """A running ``kittiwake serve`` subprocess."""

    process: subprocess.Popen[str]
    base_url: str
    account_sid: str
    auth_token: str
    data_dir: Path
    started_in: float
    output: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def headers(self) -> dict[str, str]:
        """HTTP Basic auth as the account (aiohttp's ``auth=`` argument is deprecated)."""
        return {"Authorization": aiohttp.BasicAuth(self.account_sid, self.auth_token).encode()}

    def url(self, rest: str) -> str:
        return f"{self.base_url}{API}/{self.account_sid}{rest}"


def read_banner(
    process: subprocess.Popen[str],
    lines: list[str],
    deadline: float,
    credentials: tuple[str, str] | None = None,
) -> tuple[str | None, str | None, str | None]:
    """Read what ``serve`` prints until "Listening on" (or ``deadline``, monotonic): the first account's SID
    and token (or ``credentials`` for a prepared data directory) and the URL; None for what never came."""
    assert process.stdout is not None
    sid, token = credentials if credentials else (None, None)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := re.search(r"Account SID: (AC[0-9a-f]{32})", line):
            sid = match.group(1)
        if match := re.search(r"Auth token:\s+([0-9a-f]{32})", line):
            token = match.group(1)
        if match := re.search(r"Listening on (http://\S+)", line):
            return sid, token, match.group(1)
    return sid, token, None


def start_server(
    data_dir: Path,
    config: Path | None = None,
    credentials: tuple[str, str] | None = None,
    timeout: float = 120.0,
) -> Server:
    """Start ``kittiwake serve --port 0`` on ``data_dir``; return once it prints where it listens.

    A fresh data directory prints the first account's credentials; for a prepared one pass ``credentials``.
    ``started_in`` is the wall time from spawning the process to the "Listening on" line.
    """
    args = [KITTIWAKE, "serve", "--port", "0", "--data-dir", str(data_dir), "--log-level", "warning"]
    if config is not None:
        args += ["--config", str(config)]
    began = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    lines: list[str] = []
    sid, token, base_url = read_banner(process, lines, began + timeout, credentials)
    started_in = time.monotonic() - began
    if base_url is None or sid is None or token is None:
        _terminate(process)
        raise RuntimeError(f"kittiwake serve did not start:\n{''.join(lines)}")
    server = Server(process, base_url, sid, token, data_dir, started_in, lines)
    # Keep draining its output so a chatty server never blocks on a full pipe.
    threading.Thread(target=_drain, args=(process, lines), daemon=True).start()
    return server


def _drain(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


def _terminate(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def stop_server(server: Server) -> None:
    """SIGTERM the server by its PID (SIGKILL after 30 s) and report anything it logged."""
    _terminate(server.process)
    output = list(server.output)
    noisy = [i for i, line in enumerate(output) if "Traceback" in line or "ERROR" in line or "WARNING" in line]
    if noisy:
        excerpt = "".join(output[noisy[0] : noisy[0] + 60])
        log(f"server {server.pid} logged {len(noisy)} warning/error line(s); from the first:\n{excerpt}")


@contextmanager
def running_server(
    data_dir: Path, config: Path | None = None, credentials: tuple[str, str] | None = None
) -> Iterator[Server]:
    server = start_server(data_dir, config, credentials)
    try:
        yield server
    finally:
        stop_server(server)


def write_config(
    path: Path,
    *,
    long_code: float | None = None,
    short_code: float | None = None,
    max_backlog_seconds: float | None = None,
    receipt_delay: float | None = None,
    extra: str = "",
) -> Path:
    """A kittiwake TOML config with only the given settings; ``extra`` is appended verbatim (more tables)."""
    pacing = {"long_code": long_code, "short_code": short_code, "max_backlog_seconds": max_backlog_seconds}
    lines = ["[pacing]"] + [f"{k} = {float(v)!r}" for k, v in pacing.items() if v is not None]
    if receipt_delay is not None:
        lines += ["[simulator]", f"receipt_delay = {float(receipt_delay)!r}"]
    if extra:
        lines.append(extra.strip())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def long_codes(count: int, start: int = 0) -> list[str]:
    """``count`` distinct valid US long codes: +1 415 2xx xxxx (valid for libphonenumber)."""
    if start + count > 10_000_000:
        raise ValueError("at most 10 million numbers in +14152xxxxxx")
    return [f"+14152{n:06d}" for n in range(start, start + count)]


def recipients(count: int) -> list[str]:
    return [f"+14153{n:06d}" for n in range(count)]


async def provision(server: Server, numbers: Sequence[str], concurrency: int = 16) -> None:
    """Provision long codes through ``POST .../IncomingPhoneNumbers.json`` (the CLI costs ~0.5 s each)."""
    queue = list(numbers)
    failures: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            number = queue.pop()
            async with session.post(
                server.url("/IncomingPhoneNumbers.json"), data={"PhoneNumber": number}, headers=server.headers
            ) as response:
                if response.status != 201:
                    failures.append(f"{number}: {response.status} {await response.text()}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    if failures:
        raise RuntimeError(f"{len(failures)} numbers failed to provision, e.g. {failures[0]}")


def add_short_code(server: Server, code: str, sms_url: str | None = None) -> None:
    """``kittiwake numbers add --short-code`` (the API cannot add short codes), optionally with an SMS URL."""
    args = [KITTIWAKE, "numbers", "add", "--account", server.account_sid, code, "--short-code", "--data-dir",
            str(server.data_dir)]  # fmt: skip
    if sms_url is not None:
        args += ["--sms-url", sms_url]
    subprocess.run(args, check=True, capture_output=True, text=True, env=clean_env(), timeout=60)


async def post_forms(
    server: Server, url: str, forms: Iterable[dict[str, str]], concurrency: int, what: str = "requests"
) -> tuple[dict[str, float], int, float]:
    """POST every form to ``url`` from ``concurrency`` keep-alive connections; return sid -> time of its 201
    (epoch, client clock), how many were refused, and the seconds from the first request to the last answer."""
    source = iter(forms)
    accepted: dict[str, float] = {}
    refused = 0
    errors: list[str] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal refused
        for form in source:
            async with session.post(url, data=form, headers=server.headers) as response:
                text = await response.read()
                at = time.time()
                if response.status == 201:
                    accepted[str(orjson.loads(text)["sid"])] = at
                else:
                    refused += 1
                    if len(errors) < 3:
                        errors.append(f"{response.status} {text[:200]!r}")

    began = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    if errors:
        log(f"{refused} {what} refused, e.g. {errors}")
    return accepted, refused, time.monotonic() - began


async def sim_messages(
    session: aiohttp.ClientSession, server: Server, from_: str | None = None
) -> list[dict[str, object]]:
    params = {"From": from_} if from_ else {}
    async with session.get(f"{server.base_url}/sim/messages", params=params, headers=server.headers) as response:
        response.raise_for_status()
        data = await response.json()
    messages: list[dict[str, object]] = data["messages"]
    return messages


def iso_to_epoch(value: str) -> float:
    """``2026-11-30T04:05:06.789Z`` -> epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (VmRSS of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table; the first column left-aligned, the rest right-aligned."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def source_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes (others edit it concurrently)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "source state unknown"
    return f"commit {head}" + (f" + {len(dirty)} uncommitted change(s) in src/" if dirty else "")


def machine_note() -> str:
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs, load average {load:.2f} at the end, Python {sys.version.split()[0]}, {source_state()}"
    )


class Database:
    """A data directory built without HTTP: an account, numbers, and queued messages as raw INSERTs.

    Rows are ``rows.message_row`` tuples (status ``queued``, one segment, 10-hour validity), and each sender's
    ``senders.queued_segments`` grows in the same transaction, as ``enqueue_message`` does. Start the server
    on it with ``start_server(data_dir, credentials=db.credentials)`` (a prepared directory prints none).
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / "kittiwake.sqlite3"
        self.account_sid = ""
        self.auth_token = ""
        self.made = 0

    async def create(self, numbers: list[str]) -> None:
        """Migrations, one account, and ``numbers`` provisioned to it (as long codes or toll-free)."""
        store = SqliteStore(self.path)
        await store.open()
        try:
            clock = SystemClock()
            account = await provisioning.create_account(store, clock, "kittiwake bench")
            self.account_sid, self.auth_token = account.sid, account.auth_token
            for number in numbers:
                await provisioning.provision_number(store, clock, account.sid, number)
        finally:
            await store.close()

    def template(self, sender: str) -> Message:
        now = time.time_ns() // 1000
        validity = 36_000
        return Message(
            sid="", account_sid=self.account_sid, from_=sender, to="+14153000000", body="Kittiwake bench",
            status=MessageStatus.QUEUED, direction=Direction.OUTBOUND_API, num_segments=1,
            date_created=now, date_updated=now, validity_period=validity, expires_at=now + validity * 1_000_000,
        )  # fmt: skip

    @property
    def credentials(self) -> tuple[str, str]:
        return self.account_sid, self.auth_token

    def add(self, sender: str, count: int) -> None:
        """Insert ``count`` queued one-segment messages for ``sender`` and raise its backlog counter to match."""
        base = list(rows.message_row(self.template(sender)))
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = OFF")
            done = 0
            while done < count:
                n = min(CHUNK, count - done)
                batch = []
                for i in range(self.made, self.made + n):
                    base[0] = f"SM{i:032x}"
                    batch.append(tuple(base))
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(INSERT_MESSAGE, batch)
                conn.execute(
                    "INSERT INTO senders (phone_number, queued_segments) VALUES (?, ?) ON CONFLICT (phone_number) "
                    "DO UPDATE SET queued_segments = queued_segments + excluded.queued_segments",
                    (sender, n),
                )
                conn.execute("COMMIT")
                self.made += n
                done += n
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()

    def queued(self, sender: str) -> int:
        conn = sqlite3.connect(self.path)
        try:
            found = conn.execute(
                "SELECT count(*) FROM messages WHERE from_number = ? AND status IN ('queued', 'sending')", (sender,)
            ).fetchone()
            return int(found[0])
        finally:
            conn.close()
