"""Queue depth: claim cost, server memory and start-up time with up to 1,000,000 queued messages on one sender.

Run from the repository root:

    .venv/bin/python bench/queue_depth.py                          # depths 0, 1k, 100k, 1M
    .venv/bin/python bench/queue_depth.py --depths 0,1000,10000,100000,1000000,3000000 --observe 10

Everything HTTP would take too long to build, so the bench builds the data directory itself, growing one
database from depth to depth:

* ``SqliteStore.open`` applies the migrations; the account and the numbers (one deep long code
  +14152000000 and five long codes with 10 queued messages each) are made with ``kittiwake.provisioning``;
* messages are raw ``INSERT``s of ``rows.message_row`` tuples (status ``queued``, one segment, a 10-hour
  validity like the API's default) in 100k-row transactions, and ``senders.queued_segments`` is raised by
  the same amount in the same transaction, as ``enqueue_message`` would.

At each depth (the deep sender's queued count):

1. claim cost, with no server running: ``SqliteStore.claim_queued(deep sender, limit=1)`` called
   ``--claims`` times in a row, under a sender lease the bench takes first (``acquire_senders``) and
   releases after (``release_senders``), on a store opened like the server's (synchronous=FULL, so each claim
   includes a group commit and its fsync); median and p90 in µs. Also the claim's SELECT alone (the
   indexed range read, no write, no commit) on a read connection, median of 2,000, which isolates the part
   of the cost that could grow with depth. The claimed messages are left ``sending``: the server's
   start-up re-queues them (``recover_in_flight``), as after a crash;
2. ``kittiwake serve --port 0`` on that directory with ``[pacing] max_backlog_seconds = 1e7`` (so the API's
   10-hour backlog cap, 36,000 messages for a 1/s long code, would admit the depth too): start-up time from
   spawn to "Listening on", VmRSS of the server right then and after ``--observe`` seconds of dispatching,
   and from ``GET /sim/messages?From=...`` the deep sender's submissions in that window: how many, and
   the smallest and largest gap (expected ~1 s apart at the default 1 segment/s).

Results go to stdout as a markdown table with the command that produced them; progress goes to stderr. The
temporary data directory is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

import kw_harness as kw
from kittiwake.store import rows
from kittiwake.store.sqlite import SqliteStore

DEEP = "+14152000000"
OTHERS = kw.long_codes(5, start=1)
OTHER_QUEUED = 10
CLAIM_SELECT = (
    f"SELECT {', '.join(rows.MESSAGE_COLUMNS)} FROM messages "
    "WHERE from_number = ? AND status = 'queued' ORDER BY seq LIMIT ?"
)


@dataclass
class DepthResult:
    depth: int
    build_seconds: float
    claim_median_us: float
    claim_p90_us: float
    select_median_us: float
    startup_seconds: float
    rss_start_mb: float
    rss_end_mb: float
    submissions: int
    first_after: float
    min_gap: float
    max_gap: float


async def claim_cost(db: kw.Database, claims: int) -> tuple[float, float]:
    """Median and p90 µs of ``claim_queued(DEEP, limit=1)`` under a lease held by the bench, then released.

    ``interval_micros=0`` so the claims do not push the sender's persisted tat into the future (the
    dispatcher passes its interval; the write is the same UPDATE either way).
    """
    store = SqliteStore(db.path)
    await store.open()
    owner = "queue-depth-bench"
    try:
        now = time.time_ns() // 1000
        await store.acquire_senders(owner, [DEEP], now, now + 600_000_000)
        took: list[float] = []
        for _ in range(claims):
            began = time.perf_counter()
            await store.claim_queued(DEEP, 1, time.time_ns() // 1000, owner, 0)
            took.append(time.perf_counter() - began)
        await store.release_senders(owner, [(DEEP, 0)])
    finally:
        await store.close()
    return statistics.median(took) * 1e6, kw.percentile(took, 90) * 1e6


def select_cost(db: kw.Database, calls: int = 2000) -> float:
    conn = sqlite3.connect(db.path)
    try:
        plan = " / ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {CLAIM_SELECT}", (DEEP, 1)))
        took: list[float] = []
        for _ in range(calls):
            began = time.perf_counter()
            conn.execute(CLAIM_SELECT, (DEEP, 1)).fetchall()
            took.append(time.perf_counter() - began)
    finally:
        conn.close()
    kw.log(f"claim query plan: {plan}")
    return statistics.median(took) * 1e6


async def deep_submissions(server: kw.Server, since: float) -> list[float]:
    """The deep sender's submission times (epoch s) from ``since`` on (earlier servers' records stay listed)."""
    async with aiohttp.ClientSession() as session:
        found = await kw.sim_messages(session, server, DEEP)
    times = [kw.iso_to_epoch(str(r["submitted_at"])) for r in found]
    return [t for t in times if t >= since - 0.001]


def measure(db: kw.Database, depth: int, build_seconds: float, args: argparse.Namespace, config: Path) -> DepthResult:
    claim_median, claim_p90 = asyncio.run(claim_cost(db, args.claims))
    select_median = select_cost(db)
    spawned = time.time()
    with kw.running_server(db.data_dir, config, (db.account_sid, db.auth_token)) as server:
        rss_start = kw.rss_mb(server.pid)
        kw.log(f"depth {depth}: server pid {server.pid} listening after {server.started_in:.2f} s, {rss_start:.1f} MB")
        time.sleep(args.observe)
        rss_end = kw.rss_mb(server.pid)
        times = asyncio.run(deep_submissions(server, spawned))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    nan = float("nan")
    first_after = times[0] - spawned - server.started_in if times else nan
    return DepthResult(
        depth, build_seconds, claim_median, claim_p90, select_median, server.started_in, rss_start, rss_end,
        len(times), first_after, min(gaps, default=nan), max(gaps, default=nan),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="0,1000,100000,1000000", help="comma-separated, increasing")
    parser.add_argument("--claims", type=int, default=300, help="claim_queued calls per depth")
    parser.add_argument("--observe", type=float, default=5.0, help="seconds of dispatching watched per depth")
    args = parser.parse_args(argv)
    depths = sorted(int(d) for d in args.depths.split(","))
    work = Path(tempfile.mkdtemp(prefix="kw-depth-"))
    results: list[DepthResult] = []
    try:
        db = kw.Database(work / "data")
        asyncio.run(db.create([DEEP, *OTHERS]))
        for sender in OTHERS:
            db.add(sender, OTHER_QUEUED)
        config = kw.write_config(work / "kittiwake.toml", max_backlog_seconds=1e7)
        for depth in depths:
            began = time.monotonic()
            missing = depth - db.queued(DEEP)
            if missing > 0:
                kw.log(f"depth {depth}: inserting {missing} messages")
                db.add(DEEP, missing)
                # Flush the bulk insert's dirty pages now, not inside the claims' fsyncs.
                os.sync()
            build = time.monotonic() - began
            results.append(measure(db, depth, build, args, config))
            last = results[-1]
            kw.log(f"depth {depth}: claim {last.claim_median_us:.0f} µs, select {last.select_median_us:.1f} µs")
        size_mb = sum(p.stat().st_size for p in db.data_dir.iterdir()) / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Command: `{kw.command_line()}`\n")
    print(
        f"One long code {DEEP} with DEPTH queued messages plus {len(OTHERS)} long codes with {OTHER_QUEUED} each; "
        f"claim_queued(limit=1) x {args.claims} per depth (synchronous=FULL, includes the group commit); "
        f"server watched {args.observe:g} s per depth; final database {size_mb:.0f} MiB; {kw.machine_note()}.\n"
    )
    header = ["queued", "claim µs p50", "claim µs p90", "claim SELECT µs", "startup s", "RSS MB at start",
              f"RSS MB after {args.observe:g} s", "deep sender submits", "1st submit after listening, s",
              "min gap s", "max gap s", "build s"]  # fmt: skip
    table_rows = [
        [f"{r.depth:,}", f"{r.claim_median_us:.0f}", f"{r.claim_p90_us:.0f}", f"{r.select_median_us:.1f}",
         f"{r.startup_seconds:.2f}", f"{r.rss_start_mb:.1f}", f"{r.rss_end_mb:.1f}", r.submissions,
         f"{r.first_after:.3f}", f"{r.min_gap:.3f}", f"{r.max_gap:.3f}", f"{r.build_seconds:.1f}"]
        for r in results
    ]  # fmt: skip
    print(kw.table(header, table_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
