"""Pacing under load: many long codes plus one short code, every message queued as fast as possible.

Run from the repository root:

    .venv/bin/python bench/pacing.py                       # 1,000 long codes x 5 + 1 short code x 2,000, 3 runs
    .venv/bin/python bench/pacing.py --runs 1 --long-codes 200 --per-long-code 3 --short-code-messages 500
    .venv/bin/python bench/pacing.py --multi-segment-every 0   # single-segment messages only

Each run starts ``kittiwake serve --port 0`` on a fresh temporary data directory (default pacing: long code
1 segment/s, short code 100 segments/s), provisions the long codes through the REST API and the short code
55555 with ``kittiwake numbers add --short-code``, then enqueues every message with ~32 concurrent aiohttp
clients (long codes round-robin, the short code's messages spread evenly among them). Every
``--multi-segment-every``-th message of a sender has a 2-segment body, so the segments x interval rule is
exercised. The acceptance time of a message is the client's clock when its 201 arrived. The bench then polls
``GET /sim/messages`` until the simulated carrier has taken every message and checks, per sender, from
``submitted_at`` (server wall clock, millisecond resolution; same machine clock as the client):

* violations: a submission earlier than previous submission + previous segments x interval, minus 1 ms
  for the millisecond rounding of ``submitted_at`` (``kittiwake.pacing.violations``); must be 0;
* lateness: submission minus earliest allowed = max(acceptance, previous submission + interval x segments)
  (``kittiwake.pacing.lateness``). A slightly negative value is expected for a sender's first message: the
  server can submit it before its 201 reaches the client; it is not a violation;
* aggregate submissions per second over the run (first to last submission).

Results (the median over runs; violations summed) go to stdout as a markdown table with the command that
produced them; progress goes to stderr. Exit status 1 if any violation or lost message was seen.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import aiohttp

import kw_harness as kw
from kittiwake.pacing import Rate, lateness, violations

SHORT_CODE = "55555"
ONE_SEGMENT = "Kittiwake pacing bench: one segment"
TWO_SEGMENTS = "Kittiwake pacing bench, a two-segment message: " + "x" * 150  # 197 GSM-7 chars -> 2 segments
# submitted_at has millisecond resolution (floored), so a gap can read up to 1 ms short of the truth. The extra
# microsecond keeps an observed gap of exactly interval - 1 ms from counting through float rounding.
TOLERANCE = 0.001 + 1e-6


@dataclass
class Job:
    sender: str
    to: str
    body: str


@dataclass
class SenderStats:
    messages: int
    violations: int
    lateness: list[float]
    # Gaps that read shorter than the interval but within the 1 ms tolerance. Since submitted_at is floored to
    # whole ms and the intervals are whole ms, any such gap still proves the true gap was below the interval.
    early_within_tolerance: int = 0


@dataclass
class RunResult:
    enqueue_seconds: float
    accepted: int
    rejected: int
    submitted: int
    span_seconds: float
    long: SenderStats
    short: SenderStats
    short_finish_late: float
    short_segments_per_second: float


def build_jobs(long_codes: list[str], per_long: int, short_messages: int, multi_every: int) -> list[Job]:
    """Long codes round-robin (all first messages, then all second ...), the short code's spread evenly."""
    to = kw.recipients(max(len(long_codes), 1))

    def body(index: int) -> str:
        return TWO_SEGMENTS if multi_every and index % multi_every == multi_every - 1 else ONE_SEGMENT

    long_jobs = [
        Job(sender, to[i], body(k)) for k in range(per_long) for i, sender in enumerate(long_codes)
    ]  # fmt: skip
    short_jobs = [Job(SHORT_CODE, to[k % len(to)], body(k)) for k in range(short_messages)]
    total = len(long_jobs) + len(short_jobs)
    jobs: list[Job] = []
    li = si = 0
    for n in range(total):
        # Bresenham: after n jobs, about n * share of them are short-code jobs.
        want_short = (n + 1) * len(short_jobs) // total
        if si < want_short:
            jobs.append(short_jobs[si])
            si += 1
        else:
            jobs.append(long_jobs[li])
            li += 1
    return jobs


async def enqueue(server: kw.Server, jobs: list[Job], concurrency: int) -> tuple[dict[str, float], int, float]:
    """POST every job; return sid -> acceptance time (client wall clock), the rejections, and the duration."""
    forms = ({"From": job.sender, "To": job.to, "Body": job.body} for job in jobs)
    return await kw.post_forms(server, server.url("/Messages.json"), forms, concurrency, "creates")


async def wait_submitted(server: kw.Server, expected: int, patience: float) -> list[dict[str, object]]:
    deadline = time.monotonic() + patience
    async with aiohttp.ClientSession() as session:
        while True:
            found = await kw.sim_messages(session, server)
            if len(found) >= expected or time.monotonic() > deadline:
                return found
            await asyncio.sleep(1.0)


def analyse(
    found: list[dict[str, object]], accepted: dict[str, float]
) -> tuple[SenderStats, SenderStats, float, float]:
    by_sender: dict[str, list[tuple[float, int, float]]] = defaultdict(list)
    for record in found:
        sid = str(record["sid"])
        if sid not in accepted:
            continue
        submit = kw.iso_to_epoch(str(record["submitted_at"]))
        by_sender[str(record["from"])].append((submit, int(str(record["segments"])), accepted[sid]))
    long = SenderStats(0, 0, [])
    short = SenderStats(0, 0, [])
    short_finish_late = 0.0
    short_rate = 0.0
    for sender, log in by_sender.items():
        is_short = sender == SHORT_CODE
        rate = Rate(100.0) if is_short else Rate(1.0)
        submits = [(t, s) for t, s, _ in log]
        ready = [a for _, _, a in log]
        stats = short if is_short else long
        stats.messages += len(log)
        stats.violations += violations(submits, rate, TOLERANCE)
        stats.early_within_tolerance += violations(submits, rate, 1e-6) - violations(submits, rate, TOLERANCE)
        stats.lateness += lateness(submits, ready, rate)
        if is_short:
            # How much later than an ideal GCRA schedule from the same acceptance times the last one left.
            tat = ready[0]
            start = tat
            for (_, segments), at in zip(submits, ready, strict=True):
                start = max(at, tat)
                tat = start + segments * rate.interval
            short_finish_late = submits[-1][0] - start
            if len(submits) > 1 and submits[-1][0] > submits[0][0]:
                # Segments charged between the first and the last submission, over the time they took.
                short_rate = sum(seg for _, seg in submits[:-1]) / (submits[-1][0] - submits[0][0])
    return long, short, short_finish_late, short_rate


def run_once(args: argparse.Namespace, index: int) -> RunResult:
    data_dir = Path(tempfile.mkdtemp(prefix="kw-pacing-"))
    try:
        with kw.running_server(data_dir) as server:
            kw.log(f"run {index + 1}: server pid {server.pid} on {server.base_url}, data {data_dir}")
            numbers = kw.long_codes(args.long_codes)
            asyncio.run(kw.provision(server, numbers))
            if args.short_code_messages:
                kw.add_short_code(server, SHORT_CODE)
            jobs = build_jobs(numbers, args.per_long_code, args.short_code_messages, args.multi_segment_every)
            kw.log(f"run {index + 1}: enqueueing {len(jobs)} messages with {args.concurrency} clients")
            accepted, rejected, elapsed = asyncio.run(enqueue(server, jobs, args.concurrency))
            kw.log(f"run {index + 1}: {len(accepted)} accepted in {elapsed:.1f} s; waiting for submission")
            found = asyncio.run(wait_submitted(server, len(accepted), args.timeout))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    ours = [r for r in found if str(r["sid"]) in accepted]
    times = [kw.iso_to_epoch(str(r["submitted_at"])) for r in ours]
    span = max(times) - min(times) if times else 0.0
    long, short, finish_late, short_rate = analyse(ours, accepted)
    return RunResult(elapsed, len(accepted), rejected, len(ours), span, long, short, finish_late, short_rate)


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def report(args: argparse.Namespace, results: list[RunResult]) -> bool:
    ok = True
    rows: list[list[object]] = []
    for label, rate, stats in (
        ("long codes", 1.0, [r.long for r in results]),
        ("short code", 100.0, [r.short for r in results]),
    ):
        if not any(s.messages for s in stats):
            continue
        viol = sum(s.violations for s in stats)
        ok = ok and viol == 0
        rows.append([
            f"{label} ({rate:g}/s)",
            round(kw.median(s.messages for s in stats)),
            viol,
            sum(s.early_within_tolerance for s in stats),
            ms(kw.median(kw.percentile(s.lateness, 50) for s in stats)),
            ms(kw.median(kw.percentile(s.lateness, 99) for s in stats)),
            ms(kw.median(max(s.lateness) for s in stats)),
            ms(kw.median(min(s.lateness) for s in stats)),
        ])  # fmt: skip
    lost = sum(r.accepted - r.submitted for r in results)
    ok = ok and lost == 0
    print(f"Command: `{kw.command_line()}`\n")
    print(f"{len(results)} run(s); {kw.machine_note()}. Lateness is in ms (median over runs of each run's figure).\n")
    print(
        kw.table(
            ["senders", "messages/run", "violations (sum)", "early <= 1 ms (sum)", "lateness p50", "p99", "max", "min"],
            rows,
        )
    )
    print()
    summary: list[list[object]] = [
        ["accepted per run", round(kw.median(r.accepted for r in results))],
        ["refused per run", round(kw.median(r.rejected for r in results))],
        ["accepted but never submitted (sum)", lost],
        ["enqueue time, s", f"{kw.median(r.enqueue_seconds for r in results):.2f}"],
        ["creates/s", f"{kw.median(r.accepted / r.enqueue_seconds for r in results):.0f}"],
        ["first to last submission, s", f"{kw.median(r.span_seconds for r in results):.2f}"],
        ["aggregate submits/s", f"{kw.median(r.submitted / r.span_seconds for r in results if r.span_seconds):.0f}"],
        ["short code: last submission vs ideal GCRA finish, ms", ms(kw.median(r.short_finish_late for r in results))],
        [
            "short code: achieved segments/s (configured 100)",
            f"{kw.median(r.short_segments_per_second for r in results):.1f}",
        ],
    ]
    print(kw.table(["figure", "median"], summary))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long-codes", type=int, default=1000)
    parser.add_argument("--per-long-code", type=int, default=5)
    parser.add_argument("--short-code-messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--multi-segment-every", type=int, default=5, help="every Nth message has 2 segments (0: never)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="max seconds to wait for submission per run")
    args = parser.parse_args(argv)
    results = [run_once(args, i) for i in range(args.runs)]
    return 0 if report(args, results) else 1


if __name__ == "__main__":
    sys.exit(main())
