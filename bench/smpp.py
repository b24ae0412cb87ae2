"""End to end through SMPP: HTTP create -> submit_sm -> delivery receipt -> status callback, next to the simulator.

Run from the repository root (needs node and ``npm ci --prefix tests/peers``):

    .venv/bin/python bench/smpp.py                         # 10 and 50 clients, 3,000 creates per run, 3 runs
    .venv/bin/python bench/smpp.py --runs 1 --concurrency 50 --messages 1000 --variants smpp

Set-up, once per invocation: the node-smpp SMSC of the integration tests (tests/peers/smsc.js, driven through
tests/peers/smsc.py's ``Smsc`` with ``receipt_delay_ms`` 10, every receipt DELIVRD), a loopback status-callback
receiver in its own process (bench/kw_receiver.py), and two ``kittiwake serve --port 0`` processes, each on a
fresh temporary data directory with 200 long codes and ``[pacing] long_code = 1000.0`` (pacing is not the limit):

* ``smpp``: one ``[[carriers]]`` table, type smpp, bound to the SMSC (transceiver, window 50);
* ``sim``: the simulated carrier with ``[simulator] receipt_delay = 0.01`` (the same receipt delay).

The variants alternate (run 1 smpp then sim at each client count, run 2 ...), so drift in the machine's load
affects both alike. Each run POSTs ``--messages`` creates to ``/Messages.json`` (senders round-robin, one
segment, ``StatusCallback`` = the receiver) with N concurrent aiohttp clients, then waits until every message's
``delivered`` callback has reached the receiver. From the moment the first request was sent (t0):

* accepted/s: 201s / time from t0 to the last 201;
* submitted/s: messages / time from t0 to the last carrier submission (``messages.submitted_at``, read from the
  data directory read-only after the run); for smpp also "SMSC submit_sm/s", the same from the SMSC's own
  ``submit_sm`` events (stamped on arrival in this process), and their count (duplicates would show);
* delivered/s: messages that reached ``delivered`` / time from t0 to the last such status write
  (``date_updated``);
* all delivered after: that last write minus t0, and how much of it came after the last 201;
* latency: a message's 201 (client clock) to the arrival of its ``delivered`` callback at the receiver
  (same machine clock), p50 and p99 over the run.

"Keeps pace" compares the SMPP variant's submitted/s with its own accepted/s (>= 90 %: the SMPP side takes
messages as fast as the API accepts them). The ratio row divides smpp by sim. Results (median over runs) go to
stdout as markdown with the command and git commit; progress to stderr. Exit status 1 if a message did not end
``delivered`` or its callback never came.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import kw_harness as kw
from kw_receiver import Receiver, running_receiver

sys.path.insert(0, str(kw.ROOT / "tests"))
from peers.smsc import Smsc, node_available

SENDERS = 200
BODY = "Kittiwake SMPP bench"
VARIANTS = ("smpp", "sim")


class TimedSmsc(Smsc):
    """The test driver, with each event stamped ``_t`` (epoch seconds) as this process reads it."""

    def _read_stdout(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            at = time.time()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.rstrip("\n")}
            event["_t"] = at
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()


@dataclass
class RunResult:
    accepted: int
    refused: int
    load_seconds: float
    submitted_seconds: float
    delivered_seconds: float
    smsc_submits: int
    smsc_seconds: float
    latency_p50: float
    latency_p99: float
    not_delivered: int
    missing_callbacks: int

    @staticmethod
    def rate(count: int, seconds: float) -> float:
        return count / seconds if seconds > 0 else float("nan")

    @property
    def accepted_per_second(self) -> float:
        return self.rate(self.accepted, self.load_seconds)

    @property
    def submitted_per_second(self) -> float:
        return self.rate(self.accepted, self.submitted_seconds)

    @property
    def delivered_per_second(self) -> float:
        """Messages that reached ``delivered`` (not all accepted ones, if some got stuck) over their time."""
        return self.rate(self.accepted - self.not_delivered, self.delivered_seconds)

    @property
    def smsc_per_second(self) -> float:
        return self.rate(self.smsc_submits, self.smsc_seconds)

    @property
    def complete(self) -> bool:
        return self.refused == 0 and self.not_delivered == 0 and self.missing_callbacks == 0


def smpp_carrier(port: int) -> str:
    return (
        '[[carriers]]\nname = "smsc"\ntype = "smpp"\nhost = "127.0.0.1"\n'
        f'port = {port}\nsystem_id = "kittiwake"\npassword = "secret"\nwindow = 50\n'
    )


def connect(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / 'kittiwake.sqlite3'}?mode=ro", uri=True, timeout=10)


def max_seq(data_dir: Path) -> int:
    conn = connect(data_dir)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0])
    finally:
        conn.close()


def outcome(data_dir: Path, since_seq: int) -> tuple[Counter[str], float, float]:
    """Statuses of the run's messages, the last submission and the last delivered write (epoch seconds)."""
    conn = connect(data_dir)
    try:
        statuses = Counter(
            {str(s): int(n) for s, n in conn.execute(
                "SELECT status, count(*) FROM messages WHERE seq > ? GROUP BY 1", (since_seq,))}
        )  # fmt: skip
        last_submit, last_delivered = conn.execute(
            "SELECT max(submitted_at), max(CASE WHEN status = 'delivered' THEN date_updated END) "
            "FROM messages WHERE seq > ?",
            (since_seq,),
        ).fetchone()
        return statuses, (last_submit or 0) / 1e6, (last_delivered or 0) / 1e6
    finally:
        conn.close()


async def load(
    server: kw.Server, senders: list[str], count: int, concurrency: int, callback: str
) -> tuple[dict[str, float], int, float]:
    """POST ``count`` creates; sid -> 201 time (epoch), refusals, seconds from the first request to the last 201."""
    to = kw.recipients(50)
    forms = (
        {"From": senders[i % len(senders)], "To": to[i % len(to)], "Body": BODY, "StatusCallback": callback}
        for i in range(count)
    )
    return await kw.post_forms(server, server.url("/Messages.json"), forms, concurrency, "creates")


async def delivered_callbacks(
    receiver: Receiver, sids: dict[str, float], patience: float, stall: float
) -> dict[str, float]:
    """Wait until every sid's ``delivered`` callback arrived; sid -> arrival time.

    Gives up after ``patience`` seconds, or after ``stall`` seconds without a new one (a message stuck short of
    ``delivered`` would otherwise cost the whole patience)."""
    deadline = time.monotonic() + patience
    found: dict[str, float] = {}
    progress_at = time.monotonic()
    while True:
        stats = await receiver.stats()
        now = time.monotonic()
        latest = {sid: at for at, sid, status in stats.status if status == "delivered" and sid in sids}
        if len(latest) > len(found):
            progress_at = now
        found = latest
        if len(found) >= len(sids) or now > deadline or now - progress_at > stall:
            return found
        await asyncio.sleep(0.25)


def run_once(
    variant: str, server: kw.Server, smsc: Smsc | None, receiver: Receiver, args: argparse.Namespace, clients: int
) -> RunResult:
    senders = kw.long_codes(SENDERS)
    since = max_seq(server.data_dir)
    mark = smsc.mark() if smsc is not None else 0
    asyncio.run(receiver.stats(reset=True))
    t0 = time.time()
    accepted, refused, load_seconds = asyncio.run(load(server, senders, args.messages, clients, receiver.status_url))
    callbacks = asyncio.run(delivered_callbacks(receiver, accepted, args.timeout, args.stall))
    statuses, last_submit, last_delivered = outcome(server.data_dir, since)
    smsc_times: list[float] = []
    if smsc is not None:
        with smsc._cond:
            smsc_times = [float(e["_t"]) for e in smsc.events[mark:] if e.get("event") == "submit_sm"]
    latencies = [at - accepted[sid] for sid, at in callbacks.items()]
    return RunResult(
        accepted=len(accepted),
        refused=refused,
        load_seconds=load_seconds,
        submitted_seconds=last_submit - t0,
        delivered_seconds=last_delivered - t0,
        smsc_submits=len(smsc_times),
        smsc_seconds=max(smsc_times, default=t0) - t0,
        latency_p50=kw.percentile(latencies, 50),
        latency_p99=kw.percentile(latencies, 99),
        not_delivered=len(accepted) - statuses["delivered"],
        missing_callbacks=len(accepted) - len(callbacks),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="smpp,sim", help="comma-separated: smpp, sim")
    parser.add_argument("--concurrency", default="10,50", help="comma-separated client counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=3000, help="creates per run")
    parser.add_argument("--receipt-delay-ms", type=int, default=10, help="SMSC and simulator receipt delay")
    parser.add_argument("--window", type=int, default=50, help="the SMPP carrier's window")
    parser.add_argument(
        "--callback-concurrency",
        type=int,
        default=64,
        help="[callbacks] per_host_concurrency (kittiwake's default 8 defers bursts to one host by 15 s)",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="max seconds to wait for callbacks per run")
    parser.add_argument("--stall", type=float, default=5.0, help="stop waiting after this long without a callback")
    args = parser.parse_args(argv)
    kw.exit_on_sigterm()
    clients_list = [int(c) for c in args.concurrency.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(variants) - set(VARIANTS):
        parser.error(f"variants are {', '.join(VARIANTS)}")
    if "smpp" in variants and not node_available():
        parser.error("node or node-smpp missing: install Node 20 and run `npm ci --prefix tests/peers`")
    results: dict[tuple[str, int], list[RunResult]] = {}
    work = Path(tempfile.mkdtemp(prefix="kw-smpp-"))
    try:
        with ExitStack() as stack:
            receiver = stack.enter_context(running_receiver())
            smsc: Smsc | None = None
            servers: dict[str, kw.Server] = {}
            for variant in variants:
                extra = f"[callbacks]\nper_host_concurrency = {args.callback_concurrency}\n"
                if variant == "smpp":
                    smsc = stack.enter_context(TimedSmsc(config={"receipt_delay_ms": args.receipt_delay_ms}))
                    extra += smpp_carrier(smsc.port).replace("window = 50", f"window = {args.window}")
                config = kw.write_config(
                    work / f"{variant}.toml", long_code=1000.0, receipt_delay=args.receipt_delay_ms / 1000, extra=extra
                )
                server = stack.enter_context(kw.running_server(work / variant, config))
                servers[variant] = server
                asyncio.run(kw.provision(server, kw.long_codes(SENDERS)))
                kw.log(f"{variant}: server pid {server.pid} on {server.base_url}")
            if smsc is not None:
                smsc.wait_for("bound", timeout=30)
                kw.log(f"SMSC pid {smsc._proc.pid if smsc._proc else '?'} on port {smsc.port}: bound")
            kw.log(f"callback receiver pid {receiver.pid} on {receiver.base_url}")
            for run in range(args.runs):
                for clients in clients_list:
                    for variant in variants:
                        result = run_once(
                            variant, servers[variant], smsc if variant == "smpp" else None, receiver, args, clients
                        )
                        results.setdefault((variant, clients), []).append(result)
                        kw.log(
                            f"{variant} c={clients} run {run + 1}: {result.accepted_per_second:.0f} accepted/s, "
                            f"{result.submitted_per_second:.0f} submitted/s, {result.delivered_per_second:.0f} "
                            f"delivered/s, p50 {result.latency_p50 * 1000:.0f} ms, p99 {result.latency_p99 * 1000:.0f}"
                            f" ms; smsc saw {result.smsc_submits}; not delivered {result.not_delivered}, "
                            f"missing callbacks {result.missing_callbacks}"
                        )
                        time.sleep(1.0)
            if smsc is not None:
                unknown = [e for e in smsc.events if e.get("event") in ("error", "generic_nack", "unsupported")]
                if unknown:
                    kw.log(f"SMSC reported {len(unknown)} error event(s), e.g. {unknown[:3]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(args, variants, clients_list, results)


Results = dict[tuple[str, int], list[RunResult]]


def report(args: argparse.Namespace, variants: list[str], clients_list: list[int], results: Results) -> int:
    def med(runs: list[RunResult], attr: str) -> float:
        return kw.median(float(getattr(r, attr)) for r in runs)

    rows: list[list[object]] = []
    verdicts: list[str] = []
    for clients in clients_list:
        for variant in variants:
            runs = results[(variant, clients)]
            rows.append([
                variant, clients, round(med(runs, "accepted")),
                f"{med(runs, 'accepted_per_second'):.0f}", f"{med(runs, 'submitted_per_second'):.0f}",
                f"{med(runs, 'smsc_per_second'):.0f}" if variant == "smpp" else "-",
                f"{med(runs, 'smsc_submits'):.0f}" if variant == "smpp" else "-",
                f"{med(runs, 'delivered_per_second'):.0f}", f"{med(runs, 'delivered_seconds'):.2f}",
                f"{kw.median(r.delivered_seconds - r.load_seconds for r in runs):.2f}",
                f"{med(runs, 'latency_p50') * 1000:.0f}", f"{med(runs, 'latency_p99') * 1000:.0f}",
                sum(r.not_delivered for r in runs), sum(r.missing_callbacks for r in runs),
                sum(not r.complete for r in runs),
            ])  # fmt: skip
        if "smpp" in variants:
            runs = results[("smpp", clients)]
            share = kw.median(r.submitted_per_second / r.accepted_per_second for r in runs)
            keeps = "keeps pace" if share >= 0.9 else "falls behind"
            stuck = sum(r.not_delivered for r in runs) / max(1, sum(r.accepted for r in runs))
            verdicts.append(
                f"* {clients} clients: SMPP submitted/s is {share:.0%} of its accepted/s: {keeps}"
                + (f"; but {stuck:.1%} of the messages never reached delivered." if stuck else ".")
            )
        if set(VARIANTS) <= set(variants):
            smpp_runs, sim_runs = results[("smpp", clients)], results[("sim", clients)]
            ratios = [
                ("accepted/s", med(smpp_runs, "accepted_per_second") / med(sim_runs, "accepted_per_second")),
                ("submitted/s", med(smpp_runs, "submitted_per_second") / med(sim_runs, "submitted_per_second")),
                ("delivered/s", med(smpp_runs, "delivered_per_second") / med(sim_runs, "delivered_per_second")),
                ("latency p50", med(smpp_runs, "latency_p50") / med(sim_runs, "latency_p50")),
            ]
            verdicts.append(
                f"* {clients} clients, smpp / sim: " + ", ".join(f"{name} {value:.2f}" for name, value in ratios)
            )
    print(f"Command: `{kw.command_line()}`\n")
    print(
        f"{args.runs} run(s) per row, median; {SENDERS} long codes at 1000 segments/s each; receipt delay "
        f"{args.receipt_delay_ms} ms (SMSC and simulator); SMPP window {args.window}; callbacks "
        f"per_host_concurrency {args.callback_concurrency}; rates from the first request (t0) to the last event "
        f"of each kind; latency = 201 -> delivered callback; {kw.machine_note()}.\n"
    )
    header = ["variant", "clients", "messages", "accepted/s", "submitted/s", "SMSC submit_sm/s", "SMSC submit_sm",
              "delivered/s", "all delivered after, s", "of which after the load, s", "latency p50, ms", "p99, ms",
              "not delivered (sum)", "no delivered callback (sum)", "incomplete runs"]  # fmt: skip
    print(kw.table(header, rows))
    print()
    print("\n".join(verdicts))
    ok = all(r.complete for runs in results.values() for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
