"""Test helpers: a real gateway on 127.0.0.1:0, in a thread or as the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kittiwake.config import Settings
from kittiwake.runtime import Gateway

KITTIWAKE = [sys.executable, "-m", "kittiwake"]


@dataclass
class RunningGateway:
    """What a test needs to talk to a running gateway."""

    base_url: str
    account_sid: str
    auth_token: str
    data_dir: Path

    @property
    def auth(self) -> tuple[str, str]:
        return (self.account_sid, self.auth_token)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, auth=self.auth, timeout=10)

    def account_path(self, rest: str = "") -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}{rest}"


class GatewayThread:
    """A Gateway running on its own event loop in a background thread of the test process."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.out = io.StringIO()
        settings = Settings(data_dir=data_dir, port=0, log_level="warning", **overrides)
        self.gateway = Gateway(settings, self.out)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self.gateway.run())
        except BaseException as exc:
            self._error = exc
        finally:
            self.gateway.ready.set()
            self._loop.close()

    def start(self) -> None:
        self._thread.start()
        if not self.gateway.ready.wait(30) or self._error is not None:
            raise RuntimeError(f"gateway did not start: {self._error!r}\n{self.out.getvalue()}")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.gateway.request_stop)
            self._thread.join(30)
        if self._error is not None:
            raise self._error


def run_cli(*args: str, data_dir: Path | None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``kittiwake ARGS --data-dir DATA_DIR`` (no --data-dir when None) and return its result."""
    where = ["--data-dir", str(data_dir)] if data_dir is not None else []
    result = subprocess.run([*KITTIWAKE, *args, *where], capture_output=True, text=True, timeout=60, env=_env())
    if check and result.returncode != 0:
        raise AssertionError(f"kittiwake {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("KITTIWAKE_DATA_DIR", None)
    env.pop("TWILIO_REGION", None)
    env.pop("TWILIO_EDGE", None)
    return env


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    gateway: RunningGateway
    output: list[str]


def start_serve(data_dir: Path, *extra: str, ready: str = "Listening on") -> ServeProcess:
    """Start ``kittiwake serve --port 0`` and wait until it prints where it listens (or ``ready``)."""
    process = subprocess.Popen(
        [*KITTIWAKE, "serve", "--port", "0", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    sid = token = None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := re.search(r"Account SID: (AC[0-9a-f]{32})", line):
            sid = match.group(1)
        if match := re.search(r"Auth token:\s+([0-9a-f]{32})", line):
            token = match.group(1)
        if match := re.search(r"Listening on (http://\S+)", line):
            return ServeProcess(process, RunningGateway(match.group(1), sid or "", token or "", data_dir), lines)
        if ready != "Listening on" and ready in line:
            return ServeProcess(process, RunningGateway("", sid or "", token or "", data_dir), lines)
    process.kill()
    raise AssertionError("kittiwake serve did not start:\n" + "".join(lines))


@dataclass
class ReceivedRequest:
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, str]
    at: float


class CallbackReceiver:
    """An HTTP server on 127.0.0.1:0 in a background thread that records every request it gets.

    ``status`` (or a callable of the request count) decides the answer, to script an app that fails.
    """

    def __init__(self, status: int = 200) -> None:
        self.status = status
        # path -> (status, content type, body, delay seconds): what the app answers there.
        self.answers: dict[str, tuple[int, str, str, float]] = {}
        self.requests: list[ReceivedRequest] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="callback-receiver", daemon=True)
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._lock = threading.Lock()

    def url(self, path: str = "/status") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            form = await request.post() if request.method == "POST" else {}
            params = {k: str(v) for k, v in form.items()}
            if request.method == "GET":
                params = {k: v for k, v in request.query.items()}
            with self._lock:
                self.requests.append(
                    ReceivedRequest(request.method, str(request.url), dict(request.headers), params, time.time())
                )
            status, content_type, body, delay = self.answers.get(
                request.path, (self.status, "text/xml", "<Response/>", 0.0)
            )
            if delay < 0:  # a negative delay streams the body in two halves, abs(delay) seconds apart
                stream = web.StreamResponse(status=status, headers={"Content-Type": content_type})
                await stream.prepare(request)
                half = len(body) // 2
                await stream.write(body[:half].encode())
                await asyncio.sleep(-delay)
                await stream.write(body[half:].encode())
                await stream.write_eof()
                return stream
            if delay:
                await asyncio.sleep(delay)
            return web.Response(status=status, body=body.encode(), headers={"Content-Type": content_type})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> CallbackReceiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def answer(
        self, path: str, body: str, *, status: int = 200, content_type: str = "text/xml", delay: float = 0.0
    ) -> str:
        """Make the app answer ``body`` at ``path``; returns the full URL of that path."""
        self.answers[path] = (status, content_type, body, delay)
        return self.url(path)

    def at(self, path: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.url.split("?", 1)[0].endswith(path)]

    def wait_for(self, count: int, timeout: float = 15.0, **match: str) -> list[ReceivedRequest]:
        """Wait until ``count`` recorded requests have every param in ``match``; return them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [r for r in self.requests if all(r.params.get(k) == v for k, v in match.items())]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


def stop_process(started: ServeProcess, sig: int = signal.SIGTERM) -> int:
    """Stop a started serve process (SIGTERM by default) and return its exit status."""
    if started.process.poll() is None:
        started.process.send_signal(sig)
    try:
        status = started.process.wait(30)
    except subprocess.TimeoutExpired:
        started.process.kill()
        status = started.process.wait()
    if started.process.stdout is not None:
        started.process.stdout.close()
    return status
