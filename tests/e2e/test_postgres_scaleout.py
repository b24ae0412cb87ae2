"""Scale-out on PostgreSQL with real processes: one API process and two dispatchers on one database keep
one correct pace; a dispatcher killed with SIGKILL hands its senders over and nothing is lost; an
embedded deployment moves over with ``migrate-data``."""

from __future__ import annotations

import collections
import itertools
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from peers.smsc import SKIP_REASON, Smsc, node_available
from support import ServeProcess, run_cli, start_serve, stop_process

ADMIN_URL = os.environ.get("KITTIWAKE_TEST_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(
    not ADMIN_URL,
    reason="PostgreSQL tests skipped: set KITTIWAKE_TEST_DATABASE_URL "
    "(scripts/test starts a throwaway cluster when PostgreSQL is installed)",
)
SENDERS = [f"+1415814{1830 + i}" for i in range(6)]
PER_SENDER = 5


@pytest.fixture
def database_url() -> Iterator[str]:
    name = f"kw_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(ADMIN_URL)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def instant(record: dict[str, object]) -> float:
    return datetime.fromisoformat(str(record["submitted_at"]).replace("Z", "+00:00")).timestamp()


def violations(records: list[dict[str, object]], interval: float = 1.0) -> int:
    """Submissions of one sender closer than the interval (per segment of the previous one), 2 ms of slack."""
    found = 0
    by_sender: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for record in records:
        by_sender[str(record["from"])].append(record)
    for mine in by_sender.values():
        for a, b in itertools.pairwise(mine):
            if instant(b) - instant(a) < interval * int(str(a["segments"])) - 0.002:
                found += 1
    return found


def start_cluster(tmp_path: Path, url: str) -> tuple[ServeProcess, list[ServeProcess]]:
    api = start_serve(tmp_path / "api", "--role", "api", "--database-url", url)
    dispatchers = [
        start_serve(tmp_path / f"d{i}", "--role", "dispatcher,webhooks", "--database-url", url, ready="Running ")
        for i in range(2)
    ]
    return api, dispatchers


def enqueue(api: ServeProcess, url: str) -> list[str]:
    gw = api.gateway
    for number in SENDERS:
        run_cli("numbers", "add", "--account", gw.account_sid, number, "--database-url", url, data_dir=gw.data_dir)
    sids = []
    with httpx.Client(base_url=gw.base_url, auth=gw.auth, timeout=10) as client:
        for i in range(PER_SENDER):
            for number in SENDERS:
                response = client.post(
                    gw.account_path("/Messages.json"), data={"From": number, "To": "+14159352345", "Body": f"m{i}"}
                )
                assert response.status_code == 201, response.text
                sids.append(response.json()["sid"])
    return sids


def wait_all_delivered(api: ServeProcess, sids: list[str], timeout: float = 60) -> dict[str, str]:
    gw = api.gateway
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    with httpx.Client(base_url=gw.base_url, auth=gw.auth, timeout=10) as client:
        while time.monotonic() < deadline:
            listing = client.get(gw.account_path("/Messages.json?PageSize=1000")).json()["messages"]
            statuses = {m["sid"]: m["status"] for m in listing}
            if all(statuses.get(sid) == "delivered" for sid in sids):
                break
            time.sleep(0.2)
    return statuses


def sim_records(api: ServeProcess) -> list[dict[str, object]]:
    gw = api.gateway
    records: list[dict[str, object]] = httpx.get(f"{gw.base_url}/sim/messages", auth=gw.auth).json()["messages"]
    return records


def test_two_dispatchers_one_pace_zero_violations(tmp_path: Path, database_url: str) -> None:
    api, dispatchers = start_cluster(tmp_path, database_url)
    try:
        sids = enqueue(api, database_url)
        statuses = wait_all_delivered(api, sids)
        assert all(statuses.get(sid) == "delivered" for sid in sids), collections.Counter(statuses.values())
        records = sim_records(api)
        assert collections.Counter(r["sid"] for r in records) == collections.Counter(sids), "each exactly once"
        assert violations(records) == 0
    finally:
        for process in [api, *dispatchers]:
            stop_process(process)


def test_sigkill_one_dispatcher_and_the_other_takes_over(tmp_path: Path, database_url: str) -> None:
    api, dispatchers = start_cluster(tmp_path, database_url)
    try:
        sids = enqueue(api, database_url)
        time.sleep(1.5)
        before = len(sim_records(api))
        assert 0 < before < len(sids), "the kill lands mid-backlog"
        stop_process(dispatchers[0], signal.SIGKILL)
        statuses = wait_all_delivered(api, sids, timeout=90)
        assert all(statuses.get(sid) == "delivered" for sid in sids), collections.Counter(statuses.values())
        records = sim_records(api)
        counts = collections.Counter(str(r["sid"]) for r in records)
        assert set(counts) == set(sids)
        duplicates = sum(n - 1 for n in counts.values())
        assert duplicates <= len(SENDERS), counts  # at most the submissions in flight at the kill
        unique = [r for r in records if counts[str(r["sid"])] == 1]
        assert violations(unique) == 0
    finally:
        for process in [api, *dispatchers]:
            stop_process(process)


def test_migrate_data_moves_an_embedded_deployment(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "embedded"
    embedded = start_serve(data_dir)
    gw = embedded.gateway
    try:
        run_cli("numbers", "add", "--account", gw.account_sid, SENDERS[0], data_dir=data_dir)
        with httpx.Client(base_url=gw.base_url, auth=gw.auth, timeout=10) as client:
            data = [{"From": SENDERS[0], "To": "+14159352345", "Body": f"x{i}"} for i in range(4)]
            sids = [client.post(gw.account_path("/Messages.json"), data=d).json()["sid"] for d in data]
        migrate = ["migrate-data", "--from", f"sqlite:{data_dir}", "--to", database_url]
        refused = run_cli(*migrate, data_dir=None, check=False)
        assert refused.returncode == 2 and "stop kittiwake serve" in refused.stderr
    finally:
        assert stop_process(embedded) == 0
    moved = run_cli(*migrate, data_dir=None)
    assert "messages" in moved.stdout
    cluster = start_serve(tmp_path / "pg", "--database-url", database_url)
    try:
        assert "Created the first account" not in "".join(cluster.output), "the accounts moved too"
        moved_gw = ServeProcess(cluster.process, replace(gw, base_url=cluster.gateway.base_url), [])
        statuses = wait_all_delivered(moved_gw, sids)
        assert all(statuses.get(sid) == "delivered" for sid in sids), statuses
        again = run_cli(*migrate, data_dir=None, check=False)
        assert again.returncode == 2 and "not empty" in again.stderr
    finally:
        stop_process(cluster)


@pytest.mark.skipif(not node_available(), reason=SKIP_REASON)
def test_one_smpp_bind_across_dispatchers_and_failover(tmp_path: Path, database_url: str) -> None:
    with Smsc() as smsc:
        config = tmp_path / "kittiwake.toml"
        config.write_text(
            '[pacing]\nlong_code = 20.0\n\n[[carriers]]\nname = "smsc"\ntype = "smpp"\nhost = "127.0.0.1"\n'
            f'port = {smsc.port}\nsystem_id = "kittiwake"\npassword = "secret"\nreconnect_min = 0.2\n'
        )
        api = start_serve(tmp_path / "api", "--role", "api", "--database-url", database_url, "--config", str(config))
        dispatchers = [
            start_serve(
                tmp_path / f"d{i}",
                "--role",
                "dispatcher,webhooks",
                "--database-url",
                database_url,
                "--config",
                str(config),
                ready="Running ",
            )
            for i in range(2)
        ]
        try:
            sids = enqueue(api, database_url)
            statuses = wait_all_delivered(api, sids)
            assert all(statuses.get(sid) == "delivered" for sid in sids), collections.Counter(statuses.values())
            with psycopg.connect(database_url) as conn:
                row = conn.execute(
                    "SELECT owner FROM carrier_binds WHERE carrier = 'smsc' AND owner IS NOT NULL"
                ).fetchone()
            assert row is not None
            holder_pid = int(str(row[0]).split("-")[-2])
            holder = next(d for d in dispatchers if d.process.pid == holder_pid)
            stop_process(holder, signal.SIGKILL)
            more = enqueue_more(api)
            statuses = wait_all_delivered(api, more, timeout=60)
            assert all(statuses.get(sid) == "delivered" for sid in more), collections.Counter(statuses.values())
            bound: set[object] = set()
            most = 0
            for event in smsc.events:
                if event.get("event") == "bound":
                    bound.add(event.get("session"))
                elif event.get("event") in {"closed", "unbound"}:
                    bound.discard(event.get("session"))
                most = max(most, len(bound))
            assert most == 1, "one bind at a time across the dispatchers"
            assert len([e for e in smsc.events if e.get("event") == "bound"]) == 2, "the standby took over"
        finally:
            for process in [api, *dispatchers]:
                stop_process(process)


def enqueue_more(api: ServeProcess) -> list[str]:
    gw = api.gateway
    with httpx.Client(base_url=gw.base_url, auth=gw.auth, timeout=10) as client:
        return [
            client.post(
                gw.account_path("/Messages.json"), data={"From": n, "To": "+14159352345", "Body": "after"}
            ).json()["sid"]
            for n in SENDERS
        ]
