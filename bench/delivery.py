"""End to end through the simulated carrier: accepted/s during load, and delivered/s until the last receipt.

Run from the repository root:

    .venv/bin/python bench/delivery.py                          # both variants, 10 and 50 clients, 3 runs each
    .venv/bin/python bench/delivery.py --variants engine --concurrency 10,50,100 --messages 5000
    .venv/bin/python bench/delivery.py --poll api               # count statuses through the REST API instead

Two variants, each on its own ``kittiwake serve --port 0`` with a fresh temporary data directory, 200 long
codes provisioned through the REST API and ``[simulator] receipt_delay = 0.01``:

* ``paced``: the default pacing rule, 1 segment/s per long code. 200 long codes can send at most 200 msg/s
  in total, so delivered/s measures the pacing rule, not the engine;
* ``engine``: ``[pacing] long_code = 1000.0``, so pacing is not the limit and delivered/s measures the
  engine (claims, submissions, status writes, receipts through the group-commit writer) while it shares the
  process with the API's creates;
* ``drain``: no HTTP load at all. ``--drain-messages`` queued messages (round-robin over the 200 long codes)
  are written straight into a prepared data directory (``kw_harness.Database``), then the server starts with
  ``long_code = 1000.0`` and the bench times from "Listening on" to the last delivery: the engine alone.
  (Concurrency does not apply; the row's clients column reads 0.)

Each run sends ``--messages`` (paced) or ``--engine-messages`` (engine) creates with N concurrent aiohttp
clients (senders round-robin, one-segment bodies). accepted/s = 201s / time from the first request to the
last 201. Then the bench polls every 0.1 s until every message of the run is ``delivered``; delivered/s =
messages / time from the first request to the moment the last one was seen delivered (so the resolution is
the poll period); "after the load" is how long delivery lagged behind the last 201 (near 0: the engine keeps
up with the API). submitted/s is the same with the moment none of the run's messages was left queued or
sending. In the paced variant each sender's first message goes at once, so N messages per sender take N-1 s
and delivered/s can exceed 200. By default the poll counts
statuses with a read-only SQLite connection on the data directory (``SELECT status, count(*) ... GROUP BY``),
which costs the server nothing; ``--poll api`` pages ``GET .../Messages.json?PageSize=1000`` instead (which
competes with the engine for the server's CPU). Either way, at the end of each variant every message is
checked through the REST API to be ``delivered``.

Results (median of the runs) go to stdout as a markdown table with the command that produced them; progress
goes to stderr. Exit status 1 if a message was lost or did not end ``delivered``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

import kw_harness as kw

SENDERS = 200
BODY = "Kittiwake delivery bench"
POLL_SECONDS = 0.1


@dataclass
class RunResult:
    accepted: int
    refused: int
    load_seconds: float
    submitted_seconds: float
    delivered_seconds: float
    complete: bool

    @property
    def accepted_per_second(self) -> float:
        return self.accepted / self.load_seconds

    @property
    def delivered_per_second(self) -> float:
        return self.accepted / self.delivered_seconds


async def load(server: kw.Server, senders: list[str], count: int, concurrency: int) -> tuple[int, int, float]:
    """POST ``count`` creates with ``concurrency`` clients; (accepted, refused, seconds to the last answer)."""
    to = kw.recipients(50)
    counter = iter(range(count))
    accepted = refused = 0
    url = server.url("/Messages.json")

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, refused
        for i in counter:
            form = {"From": senders[i % len(senders)], "To": to[i % len(to)], "Body": BODY}
            async with session.post(url, data=form, headers=server.headers) as response:
                await response.read()
                if response.status == 201:
                    accepted += 1
                else:
                    refused += 1

    began = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return accepted, refused, time.monotonic() - began


def db_counts(data_dir: Path) -> Counter[str]:
    conn = sqlite3.connect(f"file:{data_dir / 'kittiwake.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return Counter({str(s): int(n) for s, n in conn.execute("SELECT status, count(*) FROM messages GROUP BY 1")})
    finally:
        conn.close()


async def api_counts(session: aiohttp.ClientSession, server: kw.Server) -> Counter[str]:
    counts: Counter[str] = Counter()
    uri: str | None = f"{kw.API}/{server.account_sid}/Messages.json?PageSize=1000"
    while uri:
        async with session.get(server.base_url + uri, headers=server.headers) as response:
            response.raise_for_status()
            page = orjson.loads(await response.read())
        counts.update(str(m["status"]) for m in page["messages"])
        uri = page["next_page_uri"]
    return counts


async def wait_delivered(
    server: kw.Server, poll: str, baseline: Counter[str], expected: int, began: float, patience: float
) -> tuple[float, float, bool]:
    """Seconds from ``began`` until all of the run's messages were submitted, and until all were delivered."""
    submitted_at = None
    deadline = time.monotonic() + patience
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            counts = db_counts(server.data_dir) if poll == "db" else await api_counts(session, server)
            now = time.monotonic()
            pending = counts["queued"] + counts["sending"]
            delivered = counts["delivered"] - baseline["delivered"]
            if submitted_at is None and pending == 0:
                submitted_at = now - began
            if delivered >= expected:
                return submitted_at or now - began, now - began, True
            await asyncio.sleep(POLL_SECONDS)
    return float("nan"), float("nan"), False


def run_variant(name: str, args: argparse.Namespace) -> tuple[dict[int, list[RunResult]], bool]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"kw-delivery-{name}-"))
    results: dict[int, list[RunResult]] = {}
    ok = True
    try:
        config = kw.write_config(
            data_dir.parent / f"{data_dir.name}.toml",
            long_code=1000.0 if name == "engine" else None,
            receipt_delay=args.receipt_delay,
        )
        try:
            with kw.running_server(data_dir, config) as server:
                kw.log(f"{name}: server pid {server.pid} on {server.base_url}, data {data_dir}")
                senders = kw.long_codes(SENDERS)
                count = args.engine_messages if name == "engine" else args.messages
                asyncio.run(kw.provision(server, senders))
                total = 0
                for concurrency in args.concurrency:
                    for run in range(args.runs):
                        baseline = db_counts(data_dir)
                        began = time.monotonic()
                        accepted, refused, load_seconds = asyncio.run(load(server, senders, count, concurrency))
                        submitted, delivered, complete = asyncio.run(
                            wait_delivered(server, args.poll, baseline, accepted, began, args.timeout)
                        )
                        total += accepted
                        result = RunResult(accepted, refused, load_seconds, submitted, delivered, complete)
                        results.setdefault(concurrency, []).append(result)
                        ok = ok and complete and refused == 0
                        kw.log(
                            f"{name} c={concurrency} run {run + 1}: {result.accepted_per_second:.0f} accepted/s, "
                            f"{result.delivered_per_second:.0f} delivered/s ({delivered:.1f} s)"
                        )
                        time.sleep(1.0)  # let every sender's pacing state fall into the past
                final = asyncio.run(_final_counts(server))
                if final["delivered"] != total or sum(final.values()) != total:
                    kw.log(f"{name}: expected {total} delivered, the API lists {dict(final)}")
                    ok = False
        finally:
            config.unlink(missing_ok=True)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return results, ok


def run_drain(args: argparse.Namespace) -> tuple[dict[int, list[RunResult]], bool]:
    """Pre-queued backlog, no HTTP load: from "Listening on" to the last delivery (clients column: 0)."""
    runs: list[RunResult] = []
    ok = True
    senders = kw.long_codes(SENDERS)
    per_sender, extra = divmod(args.drain_messages, SENDERS)
    for run in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="kw-delivery-drain-"))
        try:
            db = kw.Database(work / "data")
            asyncio.run(db.create(senders))
            for i, sender in enumerate(senders):
                db.add(sender, per_sender + (1 if i < extra else 0))
            config = kw.write_config(work / "kittiwake.toml", long_code=1000.0, receipt_delay=args.receipt_delay)
            with kw.running_server(db.data_dir, config, db.credentials) as server:
                began = time.monotonic()
                submitted, delivered, complete = asyncio.run(
                    wait_delivered(server, args.poll, Counter(), args.drain_messages, began, args.timeout)
                )
                final = asyncio.run(_final_counts(server))
            complete = complete and final["delivered"] == args.drain_messages
            ok = ok and complete
            # accepted/s does not apply: report the backlog over an infinitesimal load window as nan.
            runs.append(RunResult(args.drain_messages, 0, float("nan"), submitted, delivered, complete))
            kw.log(f"drain run {run + 1}: {args.drain_messages / delivered:.0f} delivered/s ({delivered:.1f} s)")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {0: runs}, ok


async def _final_counts(server: kw.Server) -> Counter[str]:
    async with aiohttp.ClientSession() as session:
        return await api_counts(session, server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="paced,engine,drain", help="comma-separated: paced, engine, drain")
    parser.add_argument("--concurrency", default="10,50", help="comma-separated client counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="creates per run, paced variant")
    parser.add_argument("--engine-messages", type=int, default=6000, help="creates per run, engine variant")
    parser.add_argument("--drain-messages", type=int, default=20000, help="queued messages per drain run")
    parser.add_argument("--receipt-delay", type=float, default=0.01)
    parser.add_argument("--poll", choices=("db", "api"), default="db")
    parser.add_argument("--timeout", type=float, default=120.0, help="max seconds to wait for delivery per run")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - {"paced", "engine", "drain"}
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    rows: list[list[object]] = []
    ok = True
    for name in variants:
        results, variant_ok = run_drain(args) if name == "drain" else run_variant(name, args)
        ok = ok and variant_ok
        rate = "1/s per long code (200 msg/s cap)" if name == "paced" else "1000/s per long code"
        if name == "drain":
            rate += ", backlog queued before start"
        for concurrency, runs in results.items():
            rows.append([
                name, rate, concurrency, round(kw.median(r.accepted for r in runs)),
                f"{kw.median(r.accepted_per_second for r in runs):.0f}",
                f"{kw.median(r.accepted / r.submitted_seconds for r in runs):.0f}",
                f"{kw.median(r.delivered_per_second for r in runs):.0f}",
                f"{kw.median(r.delivered_seconds for r in runs):.2f}",
                f"{kw.median(r.delivered_seconds - r.load_seconds for r in runs):.2f}",
                sum(not r.complete for r in runs),
            ])  # fmt: skip
    print(f"Command: `{kw.command_line()}`\n")
    print(
        f"{args.runs} run(s) per row, median; {SENDERS} long codes round-robin; receipt_delay {args.receipt_delay} s; "
        f"completion polled via {args.poll} every {POLL_SECONDS} s; {kw.machine_note()}.\n"
    )
    header = ["variant", "pacing", "clients", "messages", "accepted/s", "submitted/s", "delivered/s",
              "all delivered after, s", "of which after the load, s", "incomplete runs"]  # fmt: skip
    print(kw.table(header, rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
