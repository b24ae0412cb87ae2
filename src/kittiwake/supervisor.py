"""``kittiwake serve --workers N``: N API processes sharing one port, supervised by this process.

The parent reserves the port (SO_REUSEPORT, so the kernel spreads connections over the children), creates
the first account if the database is empty, starts the children as ``kittiwake serve --role api``, and
itself runs the other roles it was given (dispatcher, webhooks). SIGINT/SIGTERM stop the children
gracefully, then the parent's own roles.

With SQLite the children write through their own group commits (BEGIN IMMEDIATE serialises them) and the
dispatcher in the parent learns of their messages by its once-a-second poll; with PostgreSQL, NOTIFY
wakes it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

from kittiwake.config import Settings
from kittiwake.runtime import Gateway, listening_socket

log = logging.getLogger(__name__)


def _child_command(settings: Settings, port: int, config_file: Path | None) -> list[str]:
    command = [
        sys.executable, "-m", "kittiwake", "serve", "--role", "api", "--reuse-port", "--no-bootstrap",
        "--host", settings.host, "--port", str(port), "--log-level", settings.log_level,
        "--data-dir", str(settings.data_dir),
    ]  # fmt: skip
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    if config_file is not None:
        command += ["--config", str(config_file)]
    return command


async def _supervise(settings: Settings, workers: int, config_file: Path | None) -> None:
    reservation = listening_socket(settings.host, settings.port, reuse_port=True)
    port = reservation.getsockname()[1]
    parent_roles = settings.roles - {"api"}
    # The parent runs the other roles (possibly none); it also creates and prints the first account.
    parent = Gateway(replace(settings, roles=parent_roles, reuse_port=False), handle_signals=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    parent_task = asyncio.create_task(parent.run())
    while not parent.ready.is_set() and not parent_task.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    if parent_task.done():
        await parent_task  # it failed to start: raise its error
    command = _child_command(settings, port, config_file)
    children = [await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE) for _ in range(workers)]
    try:
        for child in children:
            assert child.stdout is not None
            while line := (await child.stdout.readline()).decode():
                if "Listening on" in line:
                    break
            else:
                raise RuntimeError("an API worker exited before it listened")
        reservation.close()
        print(f"Listening on http://{settings.host}:{port} ({workers} API processes)", flush=True)
        waits = [asyncio.create_task(child.wait()) for child in children]
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.terminate()
        for child in children:
            await child.wait()
        parent.request_stop()
        await parent_task
        reservation.close()


def run_with_api_workers(settings: Settings, workers: int, config_file: Path | None) -> None:
    # The first account, if any, is created (and printed) here, not by each worker.
    asyncio.run(_supervise(settings, workers, config_file))
