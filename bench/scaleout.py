"""Scale-out on PostgreSQL against the SQLite default: creates/s, delivered/s, pacing with two dispatchers, profile.

Run from the repository root (needs PostgreSQL 15 server binaries; wrk if installed, else an aiohttp generator):

    .venv/bin/python bench/scaleout.py                      # everything, ~4 minutes
    .venv/bin/python bench/scaleout.py --runs 1 --seconds 3 # a quick look
    .venv/bin/python bench/scaleout.py --parts creates      # only part 1 (or pacing, profile; comma-separated)
    .venv/bin/python bench/scaleout.py --pg-fsync off       # PostgreSQL as scripts/pg-throwaway runs it (not durable)

The bench starts its own PostgreSQL cluster in a temporary directory, the same way ``scripts/pg-throwaway`` does
(initdb -A trust, pg_ctl on a loopback port, as the ``postgres`` user when run as root) but **with fsync on**
(PostgreSQL's default): every 201 then means a flushed WAL record, as SQLite's default ``synchronous=FULL``
does, so the comparison is between durable configurations. ``--pg-fsync off`` adds ``-c fsync=off`` as the
throwaway script does. Each gateway run gets a fresh database (``CREATE DATABASE``) in that cluster.

1. **Creates and deliveries.** Variants: ``sqlite`` (``kittiwake serve --data-dir DIR``), and ``pg-N`` for N = 1, 2, 4
   (``kittiwake serve --database-url URL --workers N``: with N > 1 the parent runs the dispatcher and webhooks and
   N children serve the API on one port; with N = 1 one process runs everything). Config ``[pacing] long_code =
   1000.0`` and ``[simulator] receipt_delay = 0.01``; 200 long codes provisioned through the API. After a 1 s
   warm-up (drained before measuring), 50 connections POST ``/2010-04-01/Accounts/{SID}/Messages.json`` (HTTP
   Basic, From round-robin over the 200 senders) for ``--seconds``. accepted/s = 201s / load duration; delivered/s
   = rows added / time from the start of the load until every message is ``delivered`` (polled every 50 ms in
   the database: read-only SQLite connection or a psycopg connection). Variants are interleaved within each run
   (the order rotates) and the median of ``--runs`` is reported, with ratios against SQLite. For the PostgreSQL
   variants, ``pg_stat_database`` (xact_commit, tup_inserted/updated/deleted) and ``pg_stat_wal`` (wal_sync,
   wal_bytes) are sampled at the start and end of the load: PostgreSQL's write rate during the creates. (Backends
   publish their counters at most once a second, so each end lags by up to ~1 s; in steady state that cancels.)
2. **Pacing with two dispatchers.** ``serve --role api --database-url URL`` plus two ``serve --role
   dispatcher,webhooks --database-url URL``; default pacing (1 segment/s per long code); 100 long codes with 5
   messages each (each sender's created in order, senders concurrently). From ``GET /sim/messages`` on the API
   process: violations (a submission earlier than the sender's previous + 1 s x its segments, 2 ms slack: must be
   0), duplicates, and lateness = submit - max(acceptance, previous submit + interval) (acceptance is the
   message's ``date_created`` in microseconds, read from the database). The dispatchers have no HTTP port, so the
   split of the senders between them is read from ``senders.lease_owner`` (``host-PID-random``), sampled every
   100 ms during the run.
3. **Where the time goes.** One extra ``pg-2`` run with ``py-spy record`` on one API worker during the load: top
   functions by self time, and the database's view of the same run (commits/s, rows/s, creates per commit).

Results go to stdout as markdown, with the command and the commit measured; progress to stderr. Everything
started (gateways and their API workers, the cluster, temporary directories) is stopped and removed, also on
SIGINT/SIGTERM. Exit status 1 when a check fails (lost messages, pacing violations, duplicates).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import psycopg

import kw_harness as kw
from api_creates import SAMPLE_RATE, LoadResult, parse_collapsed, percentiles, py_spy, summarise

SENDERS = 200
CONNECTIONS = 50
RECIPIENT = "+14159352345"
BODY = "Kittiwake scale-out bench"
WARMUP_SECONDS = 1.0
POLL_SECONDS = 0.05
DRAIN_TIMEOUT = 180.0
PACING_SENDERS = 100
PACING_PER_SENDER = 5
PACING_INTERVAL = 1.0
SLACK = 0.002
PG_STAT_KEYS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "deadlocks")
WAL_KEYS = ("wal_records", "wal_bytes", "wal_write", "wal_sync")


# -- a PostgreSQL cluster of our own -----------------------------------------------------------------------


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: as scripts/pg-throwaway, run them as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install -y postgresql)")
    return found[-1].parent


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PgCluster:
    """initdb + pg_ctl in a temporary directory (as scripts/pg-throwaway, but fsync is a choice)."""

    def __init__(self, fsync: bool) -> None:
        self.fsync = fsync
        self.bin = _pg_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="kittiwake-scaleout-pg-"))
        self.port = _free_port()
        self.started = False
        self.options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c shared_preload_libraries=pg_stat_statements -c log_lock_waits=on"
        )
        if not fsync:
            self.options += " -c fsync=off"

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        run = subprocess.run
        run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres"]),
            check=True, capture_output=True, text=True)  # fmt: skip
        run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                          "-o", self.options, "start"]), check=True, capture_output=True, text=True)  # fmt: skip
        self.started = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def describe(self) -> str:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN "
                    "('fsync', 'synchronous_commit', 'wal_sync_method', 'server_version', 'shared_buffers')"
                ).fetchall()
            )
        return (
            f"PostgreSQL {settings['server_version']} (own cluster, fsync={settings['fsync']}, synchronous_commit="
            f"{settings['synchronous_commit']}, wal_sync_method={settings['wal_sync_method']}, shared_buffers="
            f"{int(settings['shared_buffers']) * 8 // 1024} MB)"
        )

    def postmaster_pid(self) -> int:
        return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])

    def log_offset(self) -> int:
        return (self.dir / "log").stat().st_size

    def log_since(self, offset: int) -> str:
        with (self.dir / "log").open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")

    def stop(self) -> None:
        if self.started:
            subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w",
                                         "stop"]), capture_output=True, text=True, timeout=60)  # fmt: skip
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_counters(url: str) -> dict[str, float]:
    """This database's pg_stat_database counters and the cluster's pg_stat_wal, with the time they were read."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            f"SELECT {', '.join(PG_STAT_KEYS)} FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        wal = conn.execute(f"SELECT {', '.join(WAL_KEYS)} FROM pg_stat_wal").fetchone()
    assert row is not None and wal is not None
    values: dict[str, float] = {k: float(v) for k, v in zip(PG_STAT_KEYS + WAL_KEYS, (*row, *wal), strict=True)}
    values["at"] = time.monotonic()
    return values


@dataclass(frozen=True)
class DbRate:
    """PostgreSQL's write rate over one window."""

    seconds: float
    commits: float
    inserted: float
    updated: float
    deleted: float
    wal_syncs: float
    wal_bytes: float
    deadlocks: float
    rollbacks: float

    @staticmethod
    def between(before: dict[str, float], after: dict[str, float]) -> DbRate:
        d = {k: after[k] - before[k] for k in before}
        return DbRate(d["at"], d["xact_commit"], d["tup_inserted"], d["tup_updated"], d["tup_deleted"],
                      d["wal_sync"], d["wal_bytes"], d["deadlocks"], d["xact_rollback"])  # fmt: skip

    @property
    def rows(self) -> float:
        return self.inserted + self.updated + self.deleted


# -- CPU accounting ----------------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_pid(pids: Iterable[int]) -> dict[int, float]:
    """utime + stime of each live process, in seconds."""
    found: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def machine_busy() -> float:
    """CPU seconds the whole machine spent not idle (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


class CpuMeter:
    """CPU used by the gateway's processes, PostgreSQL's, and the whole machine (wrk included) over a window."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.began = time.monotonic()
        self.machine = machine_busy()
        self.before = {name: cpu_by_pid(pids()) for name, pids in groups.items()}

    def cores(self) -> dict[str, float]:
        """Average cores busy per group since the meter was made."""
        elapsed = time.monotonic() - self.began
        used: dict[str, float] = {}
        for name, pids in self.groups.items():
            after, before = cpu_by_pid(pids()), self.before[name]
            used[name] = sum(t - before.get(pid, 0.0) for pid, t in after.items()) / elapsed
        used["machine"] = (machine_busy() - self.machine) / elapsed
        return used


# -- processes ---------------------------------------------------------------------------------------------


class Proc:
    """A subprocess whose merged output is collected by a thread (so it never blocks on a full pipe)."""

    def __init__(self, args: list[str], name: str) -> None:
        self.name = name
        self.args = args
        self.lines: list[str] = []
        self.descendants: set[int] = set()
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=kw.clean_env()
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def expect(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first output line matching ``pattern``, waiting for it (raises if the process exits first)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                if match := re.search(pattern, self.lines[seen]):
                    return match
                seen += 1
            if self.process.poll() is not None and seen >= len(self.lines):
                break
            time.sleep(0.01)
        raise RuntimeError(f"{self.name} never printed /{pattern}/:\n{''.join(self.lines)[-3000:]}")

    def remember_children(self) -> list[int]:
        """Record this process's descendants (API workers), to kill any the parent fails to stop."""
        found = descendants(self.pid)
        self.descendants.update(found)
        return found

    def stop(self) -> None:
        self.remember_children()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                kw.log(f"{self.name} ({self.pid}) ignored SIGTERM for 30 s: SIGKILL")
                self.process.kill()
                self.process.wait(10)
        for pid in self.descendants:
            try:
                os.kill(pid, signal.SIGKILL)
                kw.log(f"{self.name}: killed left-over child {pid}")
            except (ProcessLookupError, PermissionError):
                pass
        noisy = [i for i, line in enumerate(self.lines) if "Traceback" in line or "ERROR" in line]
        if noisy:
            kw.log(f"{self.name} ({self.pid}) logged errors; from the first:\n{''.join(self.lines[noisy[0] :][:40])}")


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                kids = [int(p) for p in children.read_text().split()]
            except OSError:
                continue
            found += kids
            pending += kids
    return found


@dataclass
class Gateway:
    """A running gateway: the process(es), the account, how to count its messages."""

    proc: Proc
    server: kw.Server
    counts: Callable[[], Counter[str]]
    url: str | None  # PostgreSQL database URL, None for SQLite
    extra: list[Proc] = field(default_factory=list)


def sqlite_counts(path: Path) -> Callable[[], Counter[str]]:
    def counts() -> Counter[str]:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            return Counter(dict(conn.execute("SELECT status, COUNT(*) FROM messages GROUP BY status").fetchall()))

    return counts


def pg_counts(url: str) -> Callable[[], Counter[str]]:
    def counts() -> Counter[str]:
        with psycopg.connect(url, autocommit=True) as conn:
            found = conn.execute("SELECT status, COUNT(*) FROM messages GROUP BY status").fetchall()
            return Counter({str(status): int(n) for status, n in found})

    return counts


def start_gateway(args: list[str], name: str, data_dir: Path) -> tuple[Proc, kw.Server]:
    began = time.monotonic()
    proc = Proc([kw.KITTIWAKE, "serve", "--port", "0", "--data-dir", str(data_dir), "--log-level", "warning", *args],
                name)  # fmt: skip
    try:
        sid = proc.expect(r"Account SID: (AC[0-9a-f]{32})").group(1)
        token = proc.expect(r"Auth token:\s+([0-9a-f]{32})").group(1)
        base_url = proc.expect(r"Listening on (http://\S+)").group(1)
    except BaseException:
        proc.stop()
        raise
    proc.remember_children()
    server = kw.Server(proc.process, base_url, sid, token, data_dir, time.monotonic() - began, proc.lines)
    return proc, server


# -- load ----------------------------------------------------------------------------------------------------


def create_bodies(senders: Sequence[str]) -> list[str]:
    return [urlencode({"From": s, "To": RECIPIENT, "Body": BODY}) for s in senders]


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Authorization"] = {auth}
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local bodies = {{ {bodies} }}
local n = #bodies
local i = 0
local threads = {{}}
function setup(thread) thread:set("offset", #threads * 7); table.insert(threads, thread) end
function init(args) expected = 0; completed = 0; i = offset or 0 end
function request()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % n) + 1])
end
function response(status, headers, body)
  completed = completed + 1
  if status == 201 then expected = expected + 1 end
end
function done(summary, latency, requests)
  local e, c = 0, 0
  for _, t in ipairs(threads) do e = e + t:get("expected"); c = c + t:get("completed") end
  local errs = summary.errors
  io.write(string.format("KW_RESULT %d %d %d %d %d %d\\n", c, e,
    errs.connect + errs.read + errs.write + errs.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class LoadSpec:
    url: str
    authorization: str
    bodies: list[str]
    connections: int
    seconds: float


class LoadGenerator:
    """wrk when installed (or asked for), else an aiohttp generator in a separate process (``--worker``)."""

    def __init__(self, choice: str, wrk_threads: int) -> None:
        if choice == "auto":
            choice = "wrk" if shutil.which("wrk") else "python"
        if choice == "wrk" and not shutil.which("wrk"):
            raise SystemExit("wrk is not installed (apt-get install -y wrk): use --loadgen python")
        self.name = choice
        self.wrk_threads = wrk_threads

    def describe(self) -> str:
        if self.name == "wrk":
            version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
            return f"{version}, {self.wrk_threads} thread(s), {CONNECTIONS} connections"
        return f"aiohttp generator in its own process, {CONNECTIONS} connections"

    def run(self, spec: LoadSpec) -> LoadResult:
        if self.name == "wrk":
            return self._wrk(spec)
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(asdict(spec))]
        out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=spec.seconds + 60).stdout
        return LoadResult(**json.loads(out))

    def _wrk(self, spec: LoadSpec) -> LoadResult:
        script = WRK_SCRIPT.format(auth=json.dumps(spec.authorization), bodies=", ".join(map(json.dumps, spec.bodies)))
        with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="kittiwake-scaleout-") as file:
            file.write(script)
            file.flush()
            threads = max(1, min(self.wrk_threads, spec.connections))
            command = ["wrk", f"-t{threads}", f"-c{spec.connections}", f"-d{spec.seconds:g}s", "--timeout", "10s",
                       "-s", file.name, spec.url]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=spec.seconds + 60)
        match = re.search(r"^KW_RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out.stdout, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"unexpected wrk output:\n{out.stdout}\n{out.stderr}")
        completed, expected, errors, duration_us, p50_us, p99_us = map(int, match.groups())
        return LoadResult(completed, expected, errors, duration_us / 1e6, p50_us / 1000, p99_us / 1000)


async def python_load(spec: LoadSpec) -> LoadResult:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    counter = 0
    headers = {"Authorization": spec.authorization, "Content-Type": "application/x-www-form-urlencoded"}
    connector = aiohttp.TCPConnector(limit=spec.connections)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:
        start = time.perf_counter()
        deadline = start + spec.seconds

        async def client() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                body = spec.bodies[counter % len(spec.bodies)].encode()
                sent = time.perf_counter()
                try:
                    async with session.post(spec.url, data=body) as response:
                        await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                statuses[response.status] += 1

        await asyncio.gather(*(client() for _ in range(spec.connections)))
        elapsed = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return LoadResult(sum(statuses.values()), statuses[201], errors, elapsed, p50 * 1000, p99 * 1000)


def worker_main(spec_json: str) -> None:
    spec = LoadSpec(**json.loads(spec_json))
    print(json.dumps(asdict(asyncio.run(python_load(spec)))))


# -- part 1: creates and deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    workers: int  # 0: SQLite


VARIANTS = (Variant("sqlite", 0), Variant("pg-1", 1), Variant("pg-2", 2), Variant("pg-4", 4))


@dataclass(frozen=True)
class CreateRun:
    variant: str
    load: LoadResult
    rows: int
    load_seconds: float
    delivered_seconds: float  # from the start of the load to the last message delivered
    lag_seconds: float  # from the end of the load to the last message delivered
    statuses: dict[str, int]
    db: DbRate | None
    api_pids: list[int]
    cpu: dict[str, float]  # average cores busy during the load: kittiwake, postgres, machine
    pg_log: str  # deadlocks and lock waits PostgreSQL logged during the load
    statements: list[tuple[int, float, str]]  # pg_stat_statements during the load: calls, total ms, query

    @property
    def accepted_per_second(self) -> float:
        return self.load.per_second

    @property
    def delivered_per_second(self) -> float:
        return self.rows / self.delivered_seconds if self.delivered_seconds else 0.0

    @property
    def complete(self) -> bool:
        return self.statuses.get("delivered", 0) == sum(self.statuses.values())

    @property
    def durable(self) -> bool:
        """Every 201 is a row; wrk abandons at most one request per connection at the cutoff (committed anyway)."""
        return 0 <= self.rows - self.load.expected <= CONNECTIONS


class Context:
    def __init__(self, args: argparse.Namespace, tmp: Path, cluster: PgCluster, loadgen: LoadGenerator) -> None:
        self.args = args
        self.tmp = tmp
        self.cluster = cluster
        self.loadgen = loadgen
        self.config = kw.write_config(tmp / "scaleout.toml", long_code=1000.0, receipt_delay=0.01)
        self.senders = kw.long_codes(SENDERS)
        self.serial = 0

    def fresh(self, label: str) -> tuple[Path, str]:
        self.serial += 1
        name = f"kw_{label.replace('-', '_')}_{self.serial}"
        data_dir = self.tmp / name
        data_dir.mkdir()
        return data_dir, name


@contextmanager
def variant_gateway(ctx: Context, variant: Variant) -> Iterator[Gateway]:
    data_dir, name = ctx.fresh(variant.name)
    url = None
    args = ["--config", str(ctx.config)]
    if variant.workers:
        url = ctx.cluster.create_database(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        args += ["--database-url", url, "--workers", str(variant.workers)]
    try:
        proc, server = start_gateway(args, variant.name, data_dir)
        try:
            counts = pg_counts(url) if url else sqlite_counts(data_dir / "kittiwake.sqlite3")
            yield Gateway(proc, server, counts, url)
        finally:
            proc.stop()
    finally:
        if url:
            ctx.cluster.drop_database(name)


def wait_delivered(counts: Callable[[], Counter[str]], timeout: float = DRAIN_TIMEOUT) -> tuple[float, Counter[str]]:
    """Poll until every message is in a final status; the monotonic instant it was seen, and the statuses."""
    deadline = time.monotonic() + timeout
    while True:
        found = counts()
        now = time.monotonic()
        pending = sum(n for status, n in found.items() if status in ("queued", "sending", "sent", "accepted"))
        if pending == 0 or now > deadline:
            return now, found
        time.sleep(POLL_SECONDS)


def load_spec(ctx: Context, server: kw.Server, seconds: float) -> LoadSpec:
    auth = "Basic " + base64.b64encode(f"{server.account_sid}:{server.auth_token}".encode()).decode()
    return LoadSpec(server.url("/Messages.json"), auth, create_bodies(ctx.senders), CONNECTIONS, seconds)


def prepare(ctx: Context, gateway: Gateway) -> None:
    """Provision the senders, warm up, and wait for the warm-up's messages to be delivered."""
    asyncio.run(kw.provision(gateway.server, ctx.senders))
    ctx.loadgen.run(load_spec(ctx, gateway.server, WARMUP_SECONDS))
    wait_delivered(gateway.counts)


def create_run(ctx: Context, variant: Variant, profile_seconds: float | None = None) -> tuple[CreateRun, str | None]:
    with variant_gateway(ctx, variant) as gateway:
        prepare(ctx, gateway)
        api_pids = gateway.proc.remember_children() or [gateway.proc.pid]
        before_rows = sum(gateway.counts().values())
        before_db = pg_counters(gateway.url) if gateway.url else None
        spy: subprocess.Popen[str] | None = None
        raw = ctx.tmp / f"profile-{ctx.serial}.txt"
        if profile_seconds is not None:
            command = [py_spy(), "record", "--pid", str(api_pids[0]), "--duration", f"{profile_seconds + 1:g}",
                       "--rate", str(SAMPLE_RATE), "--threads", "--format", "raw", "--output", str(raw)]  # fmt: skip
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)  # let py-spy attach before the load starts
        postmaster = ctx.cluster.postmaster_pid()
        meter = CpuMeter({
            "kittiwake": lambda: [gateway.proc.pid, *descendants(gateway.proc.pid)],
            "postgres": lambda: [postmaster, *descendants(postmaster)],
        })  # fmt: skip
        log_offset = ctx.cluster.log_offset()
        if gateway.url:
            with psycopg.connect(gateway.url, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
        began = time.monotonic()
        load = ctx.loadgen.run(load_spec(ctx, gateway.server, profile_seconds or ctx.args.seconds))
        ended = time.monotonic()
        cpu = meter.cores()
        after_db = pg_counters(gateway.url) if gateway.url else None
        pg_log = summarise_pg_log(ctx.cluster.log_since(log_offset))
        statements = top_statements(gateway.url) if gateway.url else []
        done, statuses = wait_delivered(gateway.counts)
        profile = None
        if spy is not None:
            _, err = spy.communicate(timeout=60)
            if not raw.exists():
                raise RuntimeError(f"py-spy wrote no profile: {err}")
            profile = raw.read_text()
    rows = sum(statuses.values()) - before_rows
    db = DbRate.between(before_db, after_db) if before_db and after_db else None
    run = CreateRun(variant.name, load, rows, ended - began, done - began, done - ended, dict(statuses), db, api_pids,
                    cpu, pg_log, statements)  # fmt: skip
    return run, profile


def top_statements(url: str, limit: int = 15) -> list[tuple[int, float, str]]:
    """pg_stat_statements of this database since the reset: calls, total execution ms, the query (shortened)."""
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query NOT LIKE '%%pg_stat_statements%%' ORDER BY calls DESC LIMIT %s",
            (limit,),
        ).fetchall()
    return [(int(calls), float(ms), str(query)[:110]) for calls, ms, query in found]


def summarise_pg_log(text: str) -> str:
    """How many deadlocks and lock waits (log_lock_waits: waits over deadlock_timeout, 1 s) PostgreSQL logged."""
    deadlocks = text.count("deadlock detected")
    waits = len(re.findall(r"still waiting for \w+Lock", text))
    return f"{deadlocks} deadlock(s), {waits} lock wait(s) over 1 s" if deadlocks or waits else ""


def cpu_text(cpu: dict[str, float]) -> str:
    return " / ".join(f"{cpu.get(k, 0.0):.2f}" for k in ("kittiwake", "postgres", "machine"))


def log_run(number: int, run: CreateRun) -> None:
    db = ""
    if run.db is not None:
        db = (f" | pg: {run.db.commits / run.db.seconds:,.0f} commits/s, {run.db.rows / run.db.seconds:,.0f} rows/s, "
              f"{run.db.wal_syncs / run.db.seconds:,.0f} WAL syncs/s")  # fmt: skip
    kw.log(
        f"run {number} {run.variant:<6}: accepted {run.accepted_per_second:7,.0f}/s (p50 {run.load.p50_ms:.1f} ms, "
        f"p99 {run.load.p99_ms:.1f} ms, non-201 {run.load.unexpected}, errors {run.load.errors}) | rows {run.rows} "
        f"delivered {run.delivered_per_second:7,.0f}/s, lag after load {run.lag_seconds:.1f} s | "
        f"statuses {run.statuses}{db} | cores kittiwake/postgres/machine {cpu_text(run.cpu)} {run.pg_log}"
    )


def creates_part(ctx: Context) -> tuple[str, bool]:
    runs: dict[str, list[CreateRun]] = {v.name: [] for v in VARIANTS}
    for number in range(1, ctx.args.runs + 1):
        shift = (number - 1) % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            run, _ = create_run(ctx, variant)
            runs[variant.name].append(run)
            log_run(number, run)
    base_accepted = kw.median(r.accepted_per_second for r in runs["sqlite"])
    base_delivered = kw.median(r.delivered_per_second for r in runs["sqlite"])
    header = ["variant", "command", "accepted/s", "vs SQLite", "delivered/s", "vs SQLite", "create p50 / p99 ms",
              "lag after load s", "cores: kittiwake / postgres / machine", "runs: accepted/s",
              "rows = 201s + cutoff, all delivered"]  # fmt: skip
    table_rows = []
    ok = True
    for variant in VARIANTS:
        found = runs[variant.name]
        accepted = kw.median(r.accepted_per_second for r in found)
        delivered = kw.median(r.delivered_per_second for r in found)
        checks = all(r.durable and r.complete for r in found)
        ok = ok and checks
        command = f"serve --database-url URL --workers {variant.workers}" if variant.workers else "serve --data-dir DIR"
        table_rows.append([
            variant.name, f"`{command}`", f"{accepted:,.0f}", f"{accepted / base_accepted:.2f}x",
            f"{delivered:,.0f}", f"{delivered / base_delivered:.2f}x",
            f"{kw.median(r.load.p50_ms for r in found):.1f} / {kw.median(r.load.p99_ms for r in found):.1f}",
            f"{kw.median(r.lag_seconds for r in found):.1f}",
            cpu_text({k: kw.median(r.cpu.get(k, 0.0) for r in found) for k in ("kittiwake", "postgres", "machine")}),
            " ".join(f"{r.accepted_per_second:,.0f}" for r in found),
            "yes" if checks else "**NO** " + "; ".join(str(r.statuses) for r in found),
        ])  # fmt: skip
    db_header = ["variant", "accepted/s", "commits/s", "creates per commit", "rows written/s (ins+upd+del)",
                 "inserted/s", "updated/s", "rows per create", "WAL syncs/s", "WAL MB/s", "deadlocks (runs)",
                 "PostgreSQL log (runs)"]  # fmt: skip
    db_rows = []
    for variant in VARIANTS[1:]:
        found = [r for r in runs[variant.name] if r.db is not None]
        if not found:
            continue

        def rate(get: Callable[[DbRate], float], found: list[CreateRun] = found) -> float:
            return kw.median(get(r.db) / r.db.seconds for r in found if r.db is not None)

        accepted = kw.median(r.accepted_per_second for r in found)
        commits = rate(lambda d: d.commits)
        rows = rate(lambda d: d.rows)
        db_rows.append([
            variant.name, f"{accepted:,.0f}", f"{commits:,.0f}", f"{accepted / commits:.1f}" if commits else "-",
            f"{rows:,.0f}", f"{rate(lambda d: d.inserted):,.0f}", f"{rate(lambda d: d.updated):,.0f}",
            f"{rows / accepted:.1f}" if accepted else "-", f"{rate(lambda d: d.wal_syncs):,.0f}",
            f"{rate(lambda d: d.wal_bytes) / 1e6:.1f}", " ".join(f"{r.db.deadlocks:.0f}" for r in found if r.db),
            "; ".join(r.pg_log or "-" for r in found),
        ])  # fmt: skip
    text = "\n".join([
        f"### 1. Creates and deliveries (median of {ctx.args.runs} run(s) of {ctx.args.seconds:g} s, "
        f"{SENDERS} senders, long_code = 1000/s, receipt_delay = 0.01 s)",
        "",
        kw.table(header, table_rows),
        "",
        "delivered/s = rows / (start of load .. last message delivered); the dispatcher works during the load too.",
        "pg-1 is one process with every role; pg-N (N > 1) is a supervisor running the dispatcher and webhooks plus "
        "N API processes on one SO_REUSEPORT port. cores = average CPU cores busy during the load (utime+stime from "
        "/proc) of the gateway's processes, of PostgreSQL's, and of the whole machine (wrk included); "
        f"the machine has {os.cpu_count()}.",
        "",
        "PostgreSQL's write rate during the load (pg_stat_database of the run's database, pg_stat_wal; medians; "
        "includes the dispatcher's concurrent writes: status updates, sim_messages):",
        "",
        kw.table(db_header, db_rows),
    ])  # fmt: skip
    return text, ok


# -- part 2: pacing with two dispatchers -------------------------------------------------------------------------


def lease_sampler(url: str, stop: threading.Event, owners: dict[str, set[str]], counts: list[Counter[str]]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute("SELECT phone_number, lease_owner FROM senders WHERE lease_owner IS NOT NULL")
            snapshot: Counter[str] = Counter()
            for sender, owner in rows.fetchall():
                owners.setdefault(sender, set()).add(owner)
                snapshot[owner] += 1
            counts.append(snapshot)
            stop.wait(0.1)


async def paced_creates(server: kw.Server, senders: Sequence[str]) -> list[str]:
    """PACING_PER_SENDER creates per sender, in order per sender, all senders at once; the failures."""
    failures: list[str] = []

    async def one_sender(session: aiohttp.ClientSession, sender: str) -> None:
        for n in range(PACING_PER_SENDER):
            data = {"From": sender, "To": RECIPIENT, "Body": f"pacing {n}"}
            async with session.post(server.url("/Messages.json"), data=data, headers=server.headers) as response:
                if response.status != 201:
                    failures.append(f"{sender} #{n}: {response.status} {await response.text()}")

    connector = aiohttp.TCPConnector(limit=len(senders))
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one_sender(session, s) for s in senders))
    return failures


async def fetch_sim(server: kw.Server) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        return [dict(m) for m in await kw.sim_messages(session, server)]


def pacing_part(ctx: Context) -> tuple[str, bool]:
    data_dir, name = ctx.fresh("pacing")
    url = ctx.cluster.create_database(name)
    senders = kw.long_codes(PACING_SENDERS, start=5000)
    procs: list[Proc] = []
    stop = threading.Event()
    owners: dict[str, set[str]] = {}
    snapshots: list[Counter[str]] = []
    sampler = threading.Thread(target=lease_sampler, args=(url, stop, owners, snapshots), daemon=True)
    try:
        api, server = start_gateway(["--role", "api", "--database-url", url], "api", data_dir)
        procs.append(api)
        asyncio.run(kw.provision(server, senders))
        for n in (1, 2):
            dispatcher = Proc([kw.KITTIWAKE, "serve", "--role", "dispatcher,webhooks", "--database-url", url,
                               "--data-dir", str(data_dir), "--log-level", "warning", "--no-bootstrap"],
                              f"dispatcher-{n}")  # fmt: skip
            procs.append(dispatcher)
            dispatcher.expect("roles:")
        time.sleep(0.5)  # "roles:" is printed once the store is open, just before the dispatcher starts
        sampler.start()
        began = time.monotonic()
        failures = asyncio.run(paced_creates(server, senders))
        created = time.monotonic() - began
        done, statuses = wait_delivered(pg_counts(url), timeout=60)
        finished = done - began
        stop.set()
        sampler.join(10)
        sim = asyncio.run(fetch_sim(server))
        with psycopg.connect(url, autocommit=True) as conn:
            accepted = dict(conn.execute("SELECT sid, date_created FROM messages").fetchall())
        pids = {p.pid: p.name for p in procs[1:]}
    finally:
        stop.set()
        for proc in reversed(procs):
            proc.stop()
        ctx.cluster.drop_database(name)

    lost_leases = ", ".join(f"{p.name}: {sum('lost the lease' in line for line in p.lines)}" for p in procs[1:])
    by_sid: dict[str, list[float]] = {}
    for record in sim:
        by_sid.setdefault(str(record["sid"]), []).append(kw.iso_to_epoch(str(record["submitted_at"])))
    dup_gaps = ", ".join([f"{max(t) - min(t):.3f} s" for t in by_sid.values() if len(t) > 1][:5])
    errors_logged = ", ".join(f"{p.name}: {sum('Traceback' in line for line in p.lines)}" for p in procs)
    first_errors = [line.strip() for p in procs for line in p.lines if line.startswith("kittiwake.errors")]
    per_sender: dict[str, list[dict[str, Any]]] = {}
    for record in sim:
        per_sender.setdefault(str(record["from"]), []).append(record)
    violations: list[str] = []
    lateness: list[float] = []
    first_lateness: list[float] = []
    out_of_order = 0
    for sender, records in per_sender.items():
        ordered = sorted(records, key=lambda r: kw.iso_to_epoch(str(r["submitted_at"])))
        if [r["sid"] for r in ordered] != sorted((r["sid"] for r in ordered), key=lambda s: accepted.get(s, 0)):
            out_of_order += 1
        previous: tuple[float, int] | None = None
        for record in ordered:
            submitted = kw.iso_to_epoch(str(record["submitted_at"]))
            acceptance = accepted[record["sid"]] / 1e6
            earliest = acceptance
            if previous is not None:
                allowed = previous[0] + PACING_INTERVAL * previous[1]
                if submitted < allowed - SLACK:
                    violations.append(f"{sender}: {record['sid']} at {submitted:.3f}, allowed from {allowed:.3f}")
                earliest = max(acceptance, allowed)
            late = max(0.0, submitted - earliest)
            lateness.append(late)
            if previous is None:
                first_lateness.append(late)
            previous = (submitted, int(record["segments"]))
    sids = Counter(str(r["sid"]) for r in sim)
    duplicates = sum(n - 1 for n in sids.values() if n > 1)
    expected = PACING_SENDERS * PACING_PER_SENDER
    id_order_is_time_order = [r["submitted_at"] for r in sim] == sorted(r["submitted_at"] for r in sim)

    def who(owner: str) -> str:
        match = re.search(r"-(\d+)-[0-9a-f]+$", owner)
        return pids.get(int(match.group(1)), owner) if match else owner

    held: Counter[str] = Counter()
    for sender in senders:
        for owner in owners.get(sender, set()):
            held[who(owner)] += 1
    shared = sum(1 for s in senders if len(owners.get(s, set())) > 1)
    peak: Counter[str] = Counter()
    for snapshot in snapshots:
        for owner, n in snapshot.items():
            peak[who(owner)] = max(peak[who(owner)], n)
    split = ", ".join(f"{name}: {held[name]} senders (at most {peak[name]} at once)" for name in sorted(held))
    ok = not violations and not duplicates and len(sids) == expected and not failures
    ok = ok and statuses.get("delivered", 0) == expected
    rows = [
        ["messages created (201) / in /sim/messages (distinct) / delivered",
         f"{expected - len(failures)} / {len(sids)} / {statuses.get('delivered', 0)}"],
        ["creates took / last delivery after first create", f"{created:.2f} s / {finished:.2f} s"],
        ["violations (submission < previous + 1 s x segments - 2 ms)", str(len(violations))],
        ["duplicate submissions", str(duplicates)],
        ["senders whose submissions are not in acceptance order", str(out_of_order)],
        ["lateness p50 / p99 / max, all submissions",
         f"{kw.percentile(lateness, 50) * 1000:.1f} / {kw.percentile(lateness, 99) * 1000:.1f} / "
         f"{max(lateness, default=float('nan')) * 1000:.1f} ms"],
        ["lateness p50 / p99 / max, first message of each sender (includes taking the lease)",
         f"{kw.percentile(first_lateness, 50) * 1000:.1f} / {kw.percentile(first_lateness, 99) * 1000:.1f} / "
         f"{max(first_lateness, default=float('nan')) * 1000:.1f} ms"],
        ["senders per dispatcher (senders.lease_owner sampled every 100 ms)", split or "not observed"],
        ["senders held by both dispatchers during the run (handed over)", str(shared)],
        ["/sim/messages order (by id) is submission order", "yes" if id_order_is_time_order else "no"],
        ["errors logged (Traceback lines) per process", errors_logged],
        ["'lost the lease' warnings per dispatcher", lost_leases],
        ["duplicates: gap between the two submissions of one message (first 5)", dup_gaps or "-"],
    ]  # fmt: skip
    text = "\n".join([
        f"### 2. Pacing with two dispatchers ({PACING_SENDERS} long codes x {PACING_PER_SENDER} messages, "
        "1 segment/s)",
        "",
        "`serve --role api --database-url URL` + 2 x `serve --role dispatcher,webhooks --database-url URL` "
        "(default pacing, receipt_delay 0.2 s)",
        "",
        kw.table(["measure", "value"], rows),
        *([""] + [f"- violation: {v}" for v in violations[:10]] if violations else []),
        *([""] + [f"- create failed: {f}" for f in failures[:5]] if failures else []),
        *([""] + [f"- logged: `{e}`" for e in sorted(set(first_errors))[:5]] if first_errors else []),
    ])  # fmt: skip
    return text, ok


# -- part 3: where the time goes ---------------------------------------------------------------------------------


def self_by_function(stacks: Sequence[tuple[list[str], int]], top: int = 15) -> str:
    total = sum(n for _, n in stacks) or 1
    own: Counter[str] = Counter()
    for frames, n in stacks:
        short = re.sub(r"\((?:[^()]*/)?(site-packages|src|lib/python3\.\d+)/", "(", frames[-1])
        own[re.sub(r":\d+\)$", ")", short)] += n
    lines = [f"By self time, per function (top {top}):", "", "| % | samples | function |", "|---:|---:|---|"]
    lines += [f"| {n / total:.1%} | {n} | `{name}` |" for name, n in own.most_common(top)]
    return "\n".join(lines)


def profile_part(ctx: Context) -> str:
    seconds = ctx.args.seconds
    run, raw = create_run(ctx, Variant("pg-2", 2), profile_seconds=seconds)
    log_run(0, run)
    assert raw is not None
    stacks = parse_collapsed(raw)
    db = run.db
    db_line = "no database figures"
    if db is not None:
        db_line = (
            f"PostgreSQL during this run: {db.commits / db.seconds:,.0f} commits/s, {db.rows / db.seconds:,.0f} "
            f"rows written/s ({db.inserted / db.seconds:,.0f} inserted, {db.updated / db.seconds:,.0f} updated), "
            f"{db.wal_syncs / db.seconds:,.0f} WAL syncs/s, {db.wal_bytes / db.seconds / 1e6:.1f} MB WAL/s; "
            f"{run.accepted_per_second / (db.commits / db.seconds):.1f} creates per commit."
        )
    accepted = max(run.load.expected, 1)
    statements = [
        f"| {calls:,} | {calls / accepted:.2f} | {ms:,.0f} | `{query}` |" for calls, ms, query in run.statements
    ]
    return "\n".join([
        "### 3. Where the time goes (PostgreSQL API path)",
        "",
        f"`py-spy record --pid API_WORKER --rate {SAMPLE_RATE} --threads --format raw` on API worker "
        f"{run.api_pids[0]} of `serve --database-url URL --workers 2` during one {seconds:g} s create run at "
        f"{CONNECTIONS} connections: {run.accepted_per_second:,.0f} creates/s (p50 {run.load.p50_ms:.1f} ms, "
        f"p99 {run.load.p99_ms:.1f} ms; the sampler pauses the worker, so this is below part 1's figure).",
        "",
        db_line,
        "",
        f"Statements PostgreSQL ran during the load (pg_stat_statements, top by calls; {run.load.expected:,} 201s, "
        "API and dispatcher together):",
        "",
        "| calls | per 201 | total ms | statement |",
        "|---:|---:|---:|---|",
        *statements,
        "",
        f"CPU during the load (cores): kittiwake / postgres / machine {cpu_text(run.cpu)}.",
        "",
        self_by_function(stacks),
        "",
        summarise(stacks),
    ])  # fmt: skip


# -- main ---------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of part 1 (median reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one create load")
    parser.add_argument("--parts", default="creates,pacing,profile", help="comma-separated: creates, pacing, profile")
    parser.add_argument("--pg-fsync", choices=["on", "off"], default="on", help="PostgreSQL fsync (default on)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (2 CPUs: leave the rest to servers)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    kw.exit_on_sigterm()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"creates", "pacing", "profile"}
    if unknown:
        raise SystemExit(f"unknown part(s): {', '.join(sorted(unknown))}")
    if "profile" in parts:
        py_spy()  # fail early when it is missing
    loadgen = LoadGenerator(args.loadgen, args.wrk_threads)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="kittiwake-scaleout-"))
    cluster = PgCluster(fsync=args.pg_fsync == "on")
    sections: list[str] = []
    ok = True
    try:
        cluster.start()
        ctx = Context(args, tmp, cluster, loadgen)
        header = (
            f"`{kw.command_line()}`\n\n{kw.source_state()}; {cluster.describe()}; SQLite synchronous=FULL (default); "
            f"load: {loadgen.describe()}; load average before {load_before:.2f}."
        )
        if "creates" in parts:
            text, passed = creates_part(ctx)
            sections.append(text)
            ok = ok and passed
        if "pacing" in parts:
            text, passed = pacing_part(ctx)
            sections.append(text)
            ok = ok and passed
        if "profile" in parts:
            sections.append(profile_part(ctx))
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n\n".join([header, *sections, f"{kw.machine_note()}; took {time.monotonic() - began:.0f} s."]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
