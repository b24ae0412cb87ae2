"""Durable message creates per second through the real gateway, against a /healthz baseline.

Run from the repository root:

    .venv/bin/python bench/api_creates.py [--runs N --seconds S] [--connections 1,10,50]
    .venv/bin/python bench/api_creates.py --profile [--seconds S]   # py-spy profile of the create path

For each concurrency level the bench starts ``kittiwake serve --port 0`` on a fresh temporary data
directory, provisions the short code 55555 with ``kittiwake numbers add``, warms up, then alternates
runs of ``POST /2010-04-01/Accounts/{SID}/Messages.json`` (HTTP Basic auth, form body) and
``GET /healthz`` on keep-alive connections. Only 201 answers count as accepted creates. After every
create run it counts the rows in ``<data-dir>/kittiwake.sqlite3`` (table ``messages``): every 201 must
be a committed row. wrk abandons up to one request per connection when its time is up; the server
still commits those, so a run passes when ``0 <= rows - 201s <= connections``.

The load generator is ``wrk`` (``apt-get install -y wrk``) with a generated Lua script; without wrk,
a Python generator using aiohttp runs in a separate process (this file with ``--worker``). Server and
load generator share the machine, so compare the creates/healthz ratio rather than absolute figures.

The result is printed on stdout as a markdown table (median of the runs), with the command that made
it; progress goes to stderr. The exit status is 1 when a durability check fails.

``--profile`` instead runs one create run at 10 connections with ``py-spy record`` attached to the
server (``.venv/bin/pip install py-spy``) and prints the top functions by self and cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlencode

import kw_harness as kw

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
# A short code (100 segments/s): a long code's queue is capped at 10 hours of backlog (36,000 segments,
# Twilio error 21611), which a 5 s run at 3,000 creates/s fills by its third run.
SENDER = "55555"
RECIPIENT = "+14159352345"
BODY = "Kittiwake benchmark: hello from the load generator"
WARMUP_SECONDS = 1.0


# -- the gateway under test --------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running ``kittiwake serve`` and what the load needs to reach it."""

    process: subprocess.Popen[str]
    base_url: str
    account_sid: str
    auth_token: str
    data_dir: Path

    @property
    def database(self) -> Path:
        return self.data_dir / "kittiwake.sqlite3"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    @property
    def authorization(self) -> str:
        token = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return f"Basic {token}"


def _kittiwake(*args: str) -> list[str]:
    return [str(VENV_BIN / "kittiwake"), *args]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("KITTIWAKE_DATA_DIR", "TWILIO_REGION", "TWILIO_EDGE"):
        env.pop(name, None)
    return env


def _read_banner(process: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str, str]:
    """The SID, token and URL that ``serve`` prints before it accepts requests."""
    lines: list[str] = []
    sid, token, url = kw.read_banner(process, lines, time.monotonic() + timeout)
    if not sid or not token or not url:
        raise RuntimeError("kittiwake serve did not start:\n" + "".join(lines))
    return sid, token, url


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading the server's output so a full pipe never blocks it."""
    assert process.stdout is not None
    for line in process.stdout:
        if "Traceback" in line or "ERROR" in line:
            print(f"server: {line.rstrip()}", file=sys.stderr)


def stop_process(process: subprocess.Popen[str], grace: float = 15) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_server() -> Iterator[Server]:
    """A fresh gateway on a fresh data directory, with the sender provisioned; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="kittiwake-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        process = subprocess.Popen(
            _kittiwake("serve", "--port", "0", "--data-dir", str(data_dir)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_child_env(),
        )
        try:
            sid, token, url = _read_banner(process)
            threading.Thread(target=_drain, args=(process,), daemon=True).start()
            server = Server(process, url, sid, token, data_dir)
            provision_sender(server)
            yield server
        finally:
            stop_process(process)


def provision_sender(server: Server) -> None:
    args = _kittiwake(
        "numbers", "add", "--account", server.account_sid, "--short-code", SENDER, "--data-dir", str(server.data_dir)
    )
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=60, env=_child_env())


def count_messages(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    return int(count)


def settled_count(database: Path, interval: float = 0.2) -> int:
    """The row count once requests abandoned by the load generator have been committed."""
    previous = count_messages(database)
    while True:
        time.sleep(interval)
        current = count_messages(database)
        if current == previous:
            return current
        previous = current


# -- load generation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One kind of request to send over and over."""

    name: str
    method: str
    url: str
    headers: dict[str, str]
    body: str
    expect: int


def create_target(server: Server) -> Target:
    headers = {"Authorization": server.authorization, "Content-Type": "application/x-www-form-urlencoded"}
    body = urlencode({"From": SENDER, "To": RECIPIENT, "Body": BODY})
    return Target("creates", "POST", server.messages_url, headers, body, 201)


def healthz_target(server: Server) -> Target:
    return Target("healthz", "GET", f"{server.base_url}/healthz", {}, "", 200)


@dataclass(frozen=True)
class LoadResult:
    """What one timed run of the load generator saw."""

    completed: int  # responses received
    expected: int  # responses with the target's expected status (201 for creates)
    errors: int  # socket errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.expected / self.seconds if self.seconds else 0.0

    @property
    def unexpected(self) -> int:
        return self.completed - self.expected


WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) expected = 0; completed = 0 end
function response(status, headers, body)
  completed = completed + 1
  if status == {expect} then expected = expected + 1 end
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


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII text


def wrk_script(target: Target) -> str:
    headers = "\n".join(f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers.items())
    return WRK_SCRIPT.format(
        method=_lua_string(target.method), body=_lua_string(target.body), headers=headers, expect=target.expect
    )


def wrk_command(target: Target, script: Path, connections: int, seconds: float, threads: int) -> list[str]:
    threads = max(1, min(threads, connections))
    return [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency",
        "-s", str(script), target.url,
    ]  # fmt: skip


def run_wrk(target: Target, connections: int, seconds: float, threads: int) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="kittiwake-bench-") as script:
        script.write(wrk_script(target))
        script.flush()
        command = wrk_command(target, Path(script.name), connections, seconds, threads)
        out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    match = re.search(r"^KW_RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    completed, expected, errors, duration_us, p50_us, p99_us = map(int, match.groups())
    return LoadResult(completed, expected, errors, duration_us / 1e6, p50_us / 1000, p99_us / 1000)


def run_python_load(target: Target, connections: int, seconds: float) -> LoadResult:
    """The aiohttp generator in a separate process (so it does not share this one's GIL)."""
    spec = json.dumps({"target": asdict(target), "connections": connections, "seconds": seconds})
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", spec]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    return LoadResult(**json.loads(out))


async def _python_load(target: Target, connections: int, seconds: float) -> LoadResult:
    import aiohttp  # only the fallback generator needs it

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    data = target.body.encode() or None
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, headers=target.headers, timeout=timeout) as session:
        start = time.perf_counter()
        deadline = start + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    async with session.request(target.method, target.url, data=data) as response:
                        await response.read()
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                statuses[response.status] += 1

        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    completed = sum(statuses.values())
    return LoadResult(completed, statuses[target.expect], errors, elapsed, p50 * 1000, p99 * 1000)


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    if not samples:
        return 0.0, 0.0
    ordered = sorted(samples)
    return ordered[int(0.50 * (len(ordered) - 1))], ordered[int(0.99 * (len(ordered) - 1))]


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    target = Target(**spec["target"])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_python_load(target, spec["connections"], spec["seconds"]))
    print(json.dumps(asdict(result)))


class LoadGenerator:
    """wrk when it is installed (or asked for), else the aiohttp fallback."""

    def __init__(self, choice: str, wrk_threads: int) -> None:
        if choice == "auto":
            choice = "wrk" if shutil.which("wrk") else "python"
        if choice == "wrk" and not shutil.which("wrk"):
            raise SystemExit("wrk is not installed (apt-get install -y wrk), use --loadgen python")
        self.name = choice
        self.wrk_threads = wrk_threads

    def run(self, target: Target, connections: int, seconds: float) -> LoadResult:
        if self.name == "wrk":
            return run_wrk(target, connections, seconds, self.wrk_threads)
        return run_python_load(target, connections, seconds)

    def describe(self) -> str:
        if self.name == "wrk":
            version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
            return f"{version}, {self.wrk_threads} thread(s)"
        return "aiohttp (python fallback)"


# -- one concurrency level -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateRun:
    load: LoadResult
    rows: int  # rows the run added to the messages table

    @property
    def in_flight(self) -> int:
        """Rows committed beyond the 201s counted: requests abandoned when the run's time was up."""
        return self.rows - self.load.expected

    def durable(self, connections: int) -> bool:
        return 0 <= self.in_flight <= connections


@dataclass(frozen=True)
class Level:
    connections: int
    creates: list[CreateRun]
    healthz: list[LoadResult]


def timed_create_run(server: Server, loadgen: LoadGenerator, connections: int, seconds: float) -> CreateRun:
    before = settled_count(server.database)
    load = loadgen.run(create_target(server), connections, seconds)
    return CreateRun(load, settled_count(server.database) - before)


def measure_level(loadgen: LoadGenerator, connections: int, runs: int, seconds: float) -> Level:
    creates: list[CreateRun] = []
    healthz: list[LoadResult] = []
    with running_server() as server:
        loadgen.run(create_target(server), connections, WARMUP_SECONDS)
        loadgen.run(healthz_target(server), connections, WARMUP_SECONDS)
        for number in range(1, runs + 1):
            run = timed_create_run(server, loadgen, connections, seconds)
            creates.append(run)
            healthz.append(loadgen.run(healthz_target(server), connections, seconds))
            log_run(connections, number, run, healthz[-1])
    return Level(connections, creates, healthz)


def log_run(connections: int, number: int, run: CreateRun, healthz: LoadResult) -> None:
    load = run.load
    verdict = "ok" if run.durable(connections) else "FAILED"
    print(
        f"c={connections:<3} run {number}: creates {load.per_second:8.0f}/s p50 {load.p50_ms:6.2f} ms "
        f"p99 {load.p99_ms:6.2f} ms non-201 {load.unexpected} errors {load.errors} | rows {run.rows} = "
        f"201s {load.expected} + {run.in_flight} in flight at cutoff: durability {verdict} | "
        f"healthz {healthz.per_second:8.0f}/s p50 {healthz.p50_ms:6.2f} ms",
        file=sys.stderr,
    )


# -- reporting ------------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def table_row(level: Level) -> str:
    loads = [run.load for run in level.creates]
    creates = _median([r.per_second for r in loads])
    health = _median([r.per_second for r in level.healthz])
    ratio = creates / health if health else 0.0
    rows = sum(run.rows for run in level.creates)
    accepted = sum(r.expected for r in loads)
    bad = sum(r.unexpected + r.errors for r in loads)
    durable = "yes" if all(run.durable(level.connections) for run in level.creates) else "**NO**"
    return (
        f"| {level.connections} | {creates:,.0f} | {_median([r.p50_ms for r in loads]):.2f} | "
        f"{_median([r.p99_ms for r in loads]):.2f} | {bad} | {rows:,} / {accepted:,} ({durable}) | "
        f"{health:,.0f} | {_median([r.p50_ms for r in level.healthz]):.2f} | "
        f"{_median([r.p99_ms for r in level.healthz]):.2f} | {ratio:.0%} |"
    )


def load_average() -> str:
    """The 1-minute load average: other work on the machine skews absolute figures, not the ratio."""
    return f"{os.getloadavg()[0]:.2f}"


LOAD_BEFORE = load_average()


def git_revision() -> str:
    result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "uncommitted"


NOTES = {
    "wrk": "rows may exceed 201s by at most one per connection: requests wrk abandoned at the cutoff were committed.",
    "python": "the python generator waits for its last requests, so rows equal 201s.",
}


def report(levels: Sequence[Level], loadgen: LoadGenerator, runs: int, seconds: float) -> str:
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/api_creates.py", *sys.argv[1:]])
    lines = [
        f"`{command}` — median of {runs} run(s) of {seconds:g} s per level; revision {git_revision()}; "
        f"{os.cpu_count()} CPUs shared by server and load generator; Python {platform.python_version()}; "
        f"load: {loadgen.describe()}; SQLite synchronous=FULL (default); load average before: {LOAD_BEFORE}.",
        "",
        "| connections | creates/s (201) | p50 ms | p99 ms | non-201 + errors | rows / 201s (durable) "
        "| healthz req/s | healthz p50 ms | healthz p99 ms | creates / healthz |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        *(table_row(level) for level in levels),
        "",
        NOTES[loadgen.name],
    ]
    return "\n".join(lines)


# -- profile --------------------------------------------------------------------------------------------


def py_spy() -> str:
    found = shutil.which("py-spy", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


SAMPLE_RATE = 250


def spy_command(pid: int, seconds: float, output: Path) -> list[str]:
    return [py_spy(), "record", "--pid", str(pid), "--duration", f"{seconds:g}", "--rate", str(SAMPLE_RATE),
            "--threads", "--format", "raw", "--output", str(output)]  # fmt: skip


def profile(loadgen: LoadGenerator, seconds: float, connections: int = 10) -> str:
    """Sample the server with py-spy during one create run; a markdown summary of where time goes."""
    with running_server() as server, tempfile.TemporaryDirectory(prefix="kittiwake-prof-") as tmp:
        loadgen.run(create_target(server), connections, WARMUP_SECONDS)
        raw = Path(tmp) / "profile.txt"
        spy = spy_command(server.process.pid, seconds + 1, raw)
        with subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as sampler:
            time.sleep(0.5)  # let py-spy attach before the load starts
            load = loadgen.run(create_target(server), connections, seconds)
            _, err = sampler.communicate(timeout=seconds + 60)
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err}")
        stacks = parse_collapsed(raw.read_text())
    shown = " ".join(["py-spy", *spy_command(0, seconds + 1, Path("profile.txt"))[1:]])
    shown = shown.replace("--pid 0", "--pid SERVER")
    header = (
        f"`{shown}` sampled the server during one {seconds:g} s run of creates at {connections} connections "
        f"({load.per_second:,.0f} creates/s, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms; "
        f"the sampler costs some throughput). Load: {loadgen.describe()}; load average before: {load_average()}."
    )
    return header + "\n\n" + summarise(stacks)


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw (collapsed) format: ``frame;frame;...;leaf COUNT`` per line."""
    stacks: list[tuple[list[str], int]] = []
    for line in text.splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    """``name (path/to/module.py:12)`` without the site-packages or source prefix of the path."""
    return re.sub(r"\((?:[^()]*/)?(site-packages|src|lib/python3\.\d+)/", "(", frame)


def _function(frame: str) -> str:
    """The frame without its line number, so cumulative time adds up per function."""
    return re.sub(r":\d+\)$", ")", _short(frame))


def _spine(stacks: Sequence[list[str]]) -> list[str]:
    """The frames every stack of one thread shares (``main``, the event loop, ``Thread.run``...)."""
    common = list(stacks[0])
    for frames in stacks[1:]:
        while frames[: len(common)] != common:
            common.pop()
    return common


def summarise(stacks: Sequence[tuple[list[str], int]], top: int = 10) -> str:
    """Self time per function, time per thread, and cumulative time below each thread's common frames."""
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    threads: dict[str, list[tuple[list[str], int]]] = {}
    for frames, count in stacks:
        own[_short(frames[-1])] += count
        threads.setdefault(frames[0], []).append((frames, count))
    per_thread: Counter[str] = Counter()
    for root, members in threads.items():
        spine = _spine([frames for frames, _ in members])
        per_thread[_short(root)] = sum(count for _, count in members)
        for frames, count in members:
            for frame in {_function(f) for f in frames[len(spine) :]}:
                cumulative[frame] += count
    parts = [f"{total} samples of non-idle threads.", ""]
    tables = (
        ("thread", per_thread, top),
        ("self time, per line", own, top),
        ("cumulative time, per function", cumulative, top * 2),
    )
    for title, counter, n in tables:
        parts += [f"By {title} (top {n}):", "", "| % | samples | function |", "|---:|---:|---|"]
        parts += [f"| {c / total:.1%} | {c} | `{name}` |" for name, c in counter.most_common(n)]
        parts.append("")
    return "\n".join(parts)


# -- command line ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per level (median reported)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one run")
    parser.add_argument("--connections", default="1,10,50", help="comma-separated concurrency levels")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (the server needs the other core)")
    parser.add_argument("--profile", action="store_true", help="profile one run at 10 connections with py-spy")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    loadgen = LoadGenerator(args.loadgen, args.wrk_threads)
    if args.profile:
        print(profile(loadgen, args.seconds))
        return 0
    levels = [measure_level(loadgen, int(c), args.runs, args.seconds) for c in args.connections.split(",")]
    print(report(levels, loadgen, args.runs, args.seconds))
    durable = all(run.durable(level.connections) for level in levels for run in level.creates)
    return 0 if durable else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
