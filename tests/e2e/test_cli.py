"""The ``kittiwake`` command line: data commands, their JSON output, and their errors (exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import CallbackReceiver, ServeProcess, run_cli


def test_accounts_create_and_list(tmp_path: Path) -> None:
    created = json.loads(run_cli("accounts", "create", "--name", "shop", "--json", data_dir=tmp_path).stdout)
    assert created["sid"].startswith("AC") and len(created["auth_token"]) == 32
    listed = json.loads(run_cli("accounts", "list", "--json", data_dir=tmp_path).stdout)
    assert [a["sid"] for a in listed] == [created["sid"]]
    assert listed[0]["friendly_name"] == "shop"
    plain = run_cli("accounts", "list", data_dir=tmp_path).stdout
    assert created["sid"] in plain


def test_numbers_add_and_list(tmp_path: Path) -> None:
    account = json.loads(run_cli("accounts", "create", "--json", data_dir=tmp_path).stdout)["sid"]
    long_code = json.loads(
        run_cli(
            "numbers", "add", "--account", account, "+14158141829", "--sms-url", "http://127.0.0.1:9/in",
            "--sms-method", "GET", "--json", data_dir=tmp_path,
        ).stdout
    )  # fmt: skip
    assert long_code["sid"].startswith("PN") and long_code["sms_method"] == "GET"
    short = json.loads(
        run_cli("numbers", "add", "--account", account, "--short-code", "98765", "--json", data_dir=tmp_path).stdout
    )
    assert short["sid"].startswith("SC")
    listed = json.loads(run_cli("numbers", "list", "--account", account, "--json", data_dir=tmp_path).stdout)
    assert [n["phone_number"] for n in listed] == ["+14158141829", "98765"]


@pytest.mark.parametrize(
    "args",
    [
        ["numbers", "add", "--account", "ACnope", "+14158141829"],
        ["numbers", "add", "--account", "AC" + "0" * 32, "+14158141829"],
        ["numbers", "list", "--account", "AC" + "0" * 32],
        ["numbers", "add", "--account", "{account}", "not-a-number"],
        ["numbers", "add", "--account", "{account}", "12345"],
        ["numbers", "add", "--account", "{account}", "+14158141829", "--sms-url", "ftp://x"],
        ["numbers", "add", "--account", "{account}", "+14158141829", "--sms-method", "PUT"],
        ["numbers", "add", "--account", "{account}", "--short-code", "+14158141829"],
        ["accounts", "create", "--name", "x" * 65],
        ["accounts", "frobnicate"],
        ["serve", "--port", "70000"],
    ],
)
def test_bad_arguments_exit_2_with_one_line_and_write_nothing(tmp_path: Path, args: list[str]) -> None:
    account = json.loads(run_cli("accounts", "create", "--json", data_dir=tmp_path).stdout)["sid"]
    before = run_cli("numbers", "list", "--account", account, "--json", data_dir=tmp_path).stdout
    result = run_cli(*[a.replace("{account}", account) for a in args], data_dir=tmp_path, check=False)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kittiwake: error:"), result.stderr
    assert run_cli("numbers", "list", "--account", account, "--json", data_dir=tmp_path).stdout == before
    accounts = json.loads(run_cli("accounts", "list", "--json", data_dir=tmp_path).stdout)
    assert len(accounts) == 1


def test_same_number_cannot_go_to_two_accounts(tmp_path: Path) -> None:
    first = json.loads(run_cli("accounts", "create", "--json", data_dir=tmp_path).stdout)["sid"]
    second = json.loads(run_cli("accounts", "create", "--json", data_dir=tmp_path).stdout)["sid"]
    run_cli("numbers", "add", "--account", first, "+14158141829", data_dir=tmp_path)
    result = run_cli("numbers", "add", "--account", second, "+14158141829", data_dir=tmp_path, check=False)
    assert result.returncode == 2 and "not available" in result.stderr


def test_data_commands_work_while_serve_runs(serve_process: ServeProcess) -> None:
    gw = serve_process.gateway
    for i in range(5):
        run_cli("numbers", "add", "--account", gw.account_sid, f"+1415555010{i}", data_dir=gw.data_dir)
    listed = json.loads(run_cli("numbers", "list", "--account", gw.account_sid, "--json", data_dir=gw.data_dir).stdout)
    assert len(listed) == 5
    accounts = json.loads(run_cli("accounts", "list", "--json", data_dir=gw.data_dir).stdout)
    assert [a["sid"] for a in accounts] == [gw.account_sid]


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    env_dir = tmp_path / "from-env"
    result = subprocess.run(
        [sys.executable, "-m", "kittiwake", "accounts", "create", "--json"],
        capture_output=True,
        text=True,
        env={"KITTIWAKE_DATA_DIR": str(env_dir), "PATH": "/usr/bin:/bin"},
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (env_dir / "kittiwake.sqlite3").exists()


def test_sim_send_reaches_the_running_gateways_webhook(serve_process: ServeProcess, receiver: CallbackReceiver) -> None:
    gw = serve_process.gateway
    url = receiver.answer("/in", "<Response><Message>pong</Message></Response>")
    run_cli("numbers", "add", "--account", gw.account_sid, "+14158141829", "--sms-url", url, data_dir=gw.data_dir)
    sent = json.loads(
        run_cli(
            "sim", "send", "--from", "+14159352345", "--to", "+14158141829", "--body", "ping", "--json",
            data_dir=gw.data_dir,
        ).stdout
    )  # fmt: skip
    assert sent["sid"].startswith("SM") and sent["status"] == "received"
    [request] = receiver.wait_for(1, MessageSid=sent["sid"])
    assert request.params["Body"] == "ping"
    bad = run_cli("sim", "send", "--from", "+14159352345", "--to", "+14150000000", "--body", "x", data_dir=gw.data_dir,
                  check=False)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("kittiwake: error:")


def test_second_serve_on_the_same_data_dir_is_refused(serve_process: ServeProcess) -> None:
    result = run_cli("serve", "--port", "0", data_dir=serve_process.gateway.data_dir, check=False)
    assert result.returncode == 2
    assert "already running" in result.stderr and len(result.stderr.strip().splitlines()) == 1
