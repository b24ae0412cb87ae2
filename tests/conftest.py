"""Shared fixtures: a real gateway on 127.0.0.1:0 (in a thread, or the CLI in a subprocess)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import CallbackReceiver, GatewayThread, RunningGateway, ServeProcess, start_serve


@pytest.fixture
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningGateway]:
    """A gateway in this process with an empty data directory and its first account.

    Settings can be overridden per test with ``@pytest.mark.parametrize("gateway", [{...}], indirect=True)``.
    """
    overrides = getattr(request, "param", {})
    thread = GatewayThread(tmp_path / "data", **overrides)
    thread.start()
    first = thread.gateway.first_account
    assert first is not None
    try:
        yield RunningGateway(f"http://127.0.0.1:{thread.gateway.port}", first.sid, first.auth_token, tmp_path / "data")
    finally:
        thread.stop()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    """A loopback HTTP server that records the callbacks it receives."""
    server = CallbackReceiver().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[ServeProcess]:
    """``kittiwake serve`` in a subprocess, stopped with SIGTERM afterwards."""
    started = start_serve(tmp_path / "data")
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.process.terminate()
            try:
                started.process.wait(20)
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait()
        if started.process.stdout is not None:
            started.process.stdout.close()
