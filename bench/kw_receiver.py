"""A loopback app for the benchmarks: an SMS URL that answers one-message TwiML, and a status-callback sink.

Not a benchmark itself. bench/inbound.py and bench/smpp.py start it as a subprocess (its own process, so its
work competes with neither the load generator's event loop nor the gateway's):

    .venv/bin/python bench/kw_receiver.py [--reply pong]      # prints "listening http://127.0.0.1:PORT"

Routes (every request is stamped with ``time.time()`` on arrival, the machine clock the benches also use):

* ``POST /sms``: an inbound-message webhook; answers ``<Response><Message>REPLY</Message></Response>``
  (text/xml) and records ``[t, From, MessageSid]``;
* ``POST /status``: a status callback; answers 204 and records ``[t, MessageSid, MessageStatus]``;
* ``GET /stats``: ``{"sms": [...], "status": [...]}`` as recorded so far; ``?reset=1`` also clears them.

From Python use :func:`running_receiver` (a context manager yielding a :class:`Receiver`), which stops the
subprocess by its own PID.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

HERE = Path(__file__).resolve().parent


# -- the app (runs in the subprocess) --------------------------------------------------------------------------


def make_app(reply: str) -> web.Application:
    sms: list[list[object]] = []
    status: list[list[object]] = []
    twiml = f"<?xml version='1.0' encoding='UTF-8'?><Response><Message>{reply}</Message></Response>"

    async def on_sms(request: web.Request) -> web.Response:
        at = time.time()
        form = await request.post()
        sms.append([at, str(form.get("From", "")), str(form.get("MessageSid", ""))])
        return web.Response(text=twiml, content_type="text/xml")

    async def on_status(request: web.Request) -> web.Response:
        at = time.time()
        form = await request.post()
        status.append([at, str(form.get("MessageSid", "")), str(form.get("MessageStatus", ""))])
        return web.Response(status=204)

    async def on_stats(request: web.Request) -> web.Response:
        body = orjson.dumps({"sms": sms, "status": status})
        if request.query.get("reset"):
            sms.clear()
            status.clear()
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/sms", on_sms)
    app.router.add_post("/status", on_status)
    app.router.add_get("/stats", on_stats)
    return app


async def serve(reply: str, port: int) -> None:
    runner = web.AppRunner(make_app(reply), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening http://127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reply", default="pong")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.reply, args.port))
    return 0


# -- the client side (runs in the bench) ------------------------------------------------------------------------


@dataclass
class Stats:
    sms: list[tuple[float, str, str]] = field(default_factory=list)
    status: list[tuple[float, str, str]] = field(default_factory=list)


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    base_url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def sms_url(self) -> str:
        return f"{self.base_url}/sms"

    @property
    def status_url(self) -> str:
        return f"{self.base_url}/status"

    async def stats(self, reset: bool = False) -> Stats:
        params = {"reset": "1"} if reset else {}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.base_url}/stats", params=params) as response,
        ):
            response.raise_for_status()
            data: dict[str, Any] = orjson.loads(await response.read())
        return Stats(
            [(float(t), str(a), str(b)) for t, a, b in data["sms"]],
            [(float(t), str(a), str(b)) for t, a, b in data["status"]],
        )


@contextmanager
def running_receiver(reply: str = "pong", timeout: float = 30.0) -> Iterator[Receiver]:
    """Start ``kw_receiver.py`` as a subprocess; SIGTERM (then SIGKILL) it by PID on exit."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "kw_receiver.py"), "--reply", reply],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    base_url = None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("listening "):
            base_url = line.split()[1]
            break
    try:
        if base_url is None:
            raise RuntimeError(f"kw_receiver did not start:\n{''.join(lines)}")
        threading.Thread(target=_drain, args=(process,), daemon=True).start()
        yield Receiver(process, base_url)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sys.stderr.write(f"[kw_receiver] {line}")


if __name__ == "__main__":
    sys.exit(main())
