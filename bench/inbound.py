"""Inbound throughput: handset -> /sim/inbound -> SMS URL webhook -> TwiML reply -> queued -> submitted.

Run from the repository root:

    .venv/bin/python bench/inbound.py                           # 10 and 50 clients, 2,000 inbound per run, 3 runs
    .venv/bin/python bench/inbound.py --runs 1 --concurrency 50 --messages 500

One ``kittiwake serve --port 0`` on a fresh temporary data directory with ``[pacing] short_code = 5000.0`` (so
pacing does not limit the replies) and ``[simulator] receipt_delay = 0.01``. The receiving number is the short
code 55555 (``kittiwake numbers add --short-code 55555 --sms-url URL``); its SMS URL is a loopback aiohttp app
in its own process (bench/kw_receiver.py) that answers every webhook with
``<Response><Message>pong</Message></Response>``, so every inbound message makes exactly one reply.

Each run POSTs ``--messages`` inbound messages to ``/sim/inbound`` (HTTP Basic, form From, To=55555, Body) with
N concurrent aiohttp clients. The handsets are all different numbers, ``--per-handset`` messages each (never
reused across runs), so the 30-replies-per-30-s loop protection between two numbers never triggers. Then the
bench polls the data directory read-only (SQLite, every 0.1 s; costs the server nothing) until every reply was
submitted to the simulated carrier, and computes, from the moment the first request was sent (t0):

* accepted/s: 201s / time from t0 to the last 201 (the /sim/inbound API alone);
* webhooks/s: requests the app received / time from t0 to the last one (the app stamps each on arrival);
* replies queued/s: reply messages / time from t0 to the last reply's ``date_created``;
* replies submitted/s: replies taken by the simulated carrier / time from t0 to the last ``submitted_at``
  (cross-checked against ``GET /sim/messages``);
* webhook latency: a message's 201 (client clock) to its webhook's arrival at the app (same machine clock);
* lag: last submission minus the last 201 (near 0: the pipeline keeps up with the API).

Results (median over runs) go to stdout as a markdown table with the command and git commit that produced them;
progress goes to stderr. Exit status 1 if an inbound message got no webhook or no reply, or recorded an error.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

import kw_harness as kw
from kw_receiver import Receiver, running_receiver

SHORT_CODE = "55555"
POLL_SECONDS = 0.1


@dataclass
class Baseline:
    message_seq: int
    sim_id: int
    sim_total: int


@dataclass
class RunResult:
    accepted: int
    refused: int
    load_seconds: float
    webhooks: int
    webhook_seconds: float
    replies: int
    queued_seconds: float
    submitted: int
    submitted_seconds: float
    webhook_latency_p50: float
    webhook_latency_p99: float
    errors: int
    complete: bool

    def per_second(self, count: int, seconds: float) -> float:
        return count / seconds if seconds > 0 else float("nan")


def connect(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / 'kittiwake.sqlite3'}?mode=ro", uri=True, timeout=10)


def baseline(data_dir: Path) -> Baseline:
    conn = connect(data_dir)
    try:
        seq = conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0]
        sim_id, total = conn.execute("SELECT coalesce(max(id), 0), count(*) FROM sim_messages").fetchone()
        return Baseline(int(seq), int(sim_id), int(total))
    finally:
        conn.close()


def submitted_since(data_dir: Path, base: Baseline) -> int:
    conn = connect(data_dir)
    try:
        return int(conn.execute("SELECT count(*) FROM sim_messages WHERE id > ?", (base.sim_id,)).fetchone()[0])
    finally:
        conn.close()


def timings(data_dir: Path, base: Baseline) -> tuple[list[float], list[float], int]:
    """Reply creation times, carrier submission times (epoch seconds), and inbound messages with an error."""
    conn = connect(data_dir)
    try:
        created = [
            int(t) / 1e6
            for (t,) in conn.execute(
                "SELECT date_created FROM messages WHERE seq > ? AND direction = 'outbound-reply'", (base.message_seq,)
            )
        ]
        submitted = [
            int(t) / 1e6 for (t,) in conn.execute("SELECT submitted_at FROM sim_messages WHERE id > ?", (base.sim_id,))
        ]
        errors = conn.execute(
            "SELECT count(*) FROM messages WHERE seq > ? AND direction = 'inbound' AND error_code IS NOT NULL",
            (base.message_seq,),
        ).fetchone()[0]
        return created, submitted, int(errors)
    finally:
        conn.close()


async def load(
    server: kw.Server, handsets: list[str], per_handset: int, concurrency: int
) -> tuple[dict[str, float], int, float]:
    """POST every inbound message; return sid -> 201 time (epoch), refusals, and the seconds from t0 to the last."""
    forms = ({"From": h, "To": SHORT_CODE, "Body": f"ping {k}"} for k in range(per_handset) for h in handsets)
    return await kw.post_forms(server, f"{server.base_url}/sim/inbound", forms, concurrency, "inbound")


async def sim_total(server: kw.Server) -> int:
    async with aiohttp.ClientSession() as session:
        return len(await kw.sim_messages(session, server))


def run_once(
    server: kw.Server, receiver: Receiver, handsets: list[str], args: argparse.Namespace, concurrency: int
) -> RunResult:
    base = baseline(server.data_dir)
    asyncio.run(receiver.stats(reset=True))
    t0 = time.time()
    accepted, refused, load_seconds = asyncio.run(load(server, handsets, args.per_handset, concurrency))
    deadline = time.monotonic() + args.timeout
    done = 0
    while time.monotonic() < deadline:
        done = submitted_since(server.data_dir, base)
        if done >= len(accepted):
            break
        time.sleep(POLL_SECONDS)
    time.sleep(0.2)  # let a straggling webhook land in the app's record
    stats = asyncio.run(receiver.stats(reset=True))
    created, submitted, errors = timings(server.data_dir, base)
    api_total = asyncio.run(sim_total(server))
    if api_total - base.sim_total != len(submitted):
        kw.log(f"GET /sim/messages lists {api_total - base.sim_total} new, the database {len(submitted)}")
    latencies = [at - accepted[sid] for at, _, sid in stats.sms if sid in accepted]
    last_webhook = max((at for at, _, _ in stats.sms), default=t0)
    complete = len(stats.sms) >= len(accepted) and len(submitted) >= len(accepted) and errors == 0
    return RunResult(
        accepted=len(accepted),
        refused=refused,
        load_seconds=load_seconds,
        webhooks=len(stats.sms),
        webhook_seconds=last_webhook - t0,
        replies=len(created),
        queued_seconds=max(created, default=t0) - t0,
        submitted=len(submitted),
        submitted_seconds=max(submitted, default=t0) - t0,
        webhook_latency_p50=kw.percentile(latencies, 50),
        webhook_latency_p99=kw.percentile(latencies, 99),
        errors=errors,
        complete=complete,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="10,50", help="comma-separated client counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="inbound messages per run")
    parser.add_argument("--per-handset", type=int, default=2, help="messages per handset (loop guard: <= 30)")
    parser.add_argument("--short-code-rate", type=float, default=5000.0, help="[pacing] short_code")
    parser.add_argument("--timeout", type=float, default=120.0, help="max seconds to wait for the replies per run")
    args = parser.parse_args(argv)
    kw.exit_on_sigterm()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    handsets_per_run = -(-args.messages // args.per_handset)
    results: dict[int, list[RunResult]] = {}
    work = Path(tempfile.mkdtemp(prefix="kw-inbound-"))
    try:
        config = kw.write_config(work / "kittiwake.toml", short_code=args.short_code_rate, receipt_delay=0.01)
        with running_receiver() as receiver, kw.running_server(work / "data", config) as server:
            kw.log(f"server pid {server.pid} on {server.base_url}; app pid {receiver.pid} on {receiver.base_url}")
            kw.add_short_code(server, SHORT_CODE, sms_url=receiver.sms_url)
            offset = 0
            for run in range(args.runs):
                for concurrency in concurrencies:
                    handsets = [f"+14153{n:06d}" for n in range(offset, offset + handsets_per_run)]
                    offset += handsets_per_run
                    result = run_once(server, receiver, handsets, args, concurrency)
                    results.setdefault(concurrency, []).append(result)
                    kw.log(
                        f"c={concurrency} run {run + 1}: {result.accepted} accepted "
                        f"({result.per_second(result.accepted, result.load_seconds):.0f}/s), "
                        f"{result.webhooks} webhooks, {result.replies} replies, {result.submitted} submitted "
                        f"({result.per_second(result.submitted, result.submitted_seconds):.0f}/s), "
                        f"{result.errors} errors"
                    )
                    time.sleep(1.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows: list[list[object]] = []
    ok = True
    for concurrency, runs in results.items():
        ok = ok and all(r.complete and r.refused == 0 for r in runs)
        rows.append([
            concurrency,
            round(kw.median(r.accepted for r in runs)),
            f"{kw.median(r.per_second(r.accepted, r.load_seconds) for r in runs):.0f}",
            f"{kw.median(r.per_second(r.webhooks, r.webhook_seconds) for r in runs):.0f}",
            f"{kw.median(r.per_second(r.replies, r.queued_seconds) for r in runs):.0f}",
            f"{kw.median(r.per_second(r.submitted, r.submitted_seconds) for r in runs):.0f}",
            f"{kw.median(r.webhook_latency_p50 for r in runs) * 1000:.0f}",
            f"{kw.median(r.webhook_latency_p99 for r in runs) * 1000:.0f}",
            f"{kw.median(r.submitted_seconds - r.load_seconds for r in runs):.2f}",
            sum(r.errors for r in runs),
            sum(r.refused for r in runs),
            sum(not r.complete for r in runs),
        ])  # fmt: skip
    print(f"Command: `{kw.command_line()}`\n")
    print(
        f"{args.runs} run(s) per row, median; short code {SHORT_CODE} at {args.short_code_rate:g} segments/s; "
        f"{args.per_handset} message(s) per handset; rates from the first request (t0) to the last event of "
        f"each kind; {kw.machine_note()}.\n"
    )
    header = ["clients", "inbound/run", "accepted/s", "webhooks/s", "replies queued/s", "replies submitted/s",
              "201->webhook p50, ms", "p99, ms", "last submit after last 201, s", "inbound errors (sum)",
              "refused (sum)", "incomplete runs"]  # fmt: skip
    print(kw.table(header, rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
