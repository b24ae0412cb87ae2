"""The composition root: Settings -> store -> API app -> HTTP server; start and stop.

Nothing else wires components together. ``serve`` runs every role in one process (API now; the
dispatcher and simulated carrier join here as they are built).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TextIO

import uvicorn

from kittiwake import __version__, provisioning
from kittiwake.carriers.base import Carrier, MobileOriginated
from kittiwake.carriers.routing import RoutingCarrier
from kittiwake.carriers.simulator import SimulatedCarrier
from kittiwake.clock import Clock, SystemClock
from kittiwake.config import Settings
from kittiwake.dispatch.dispatcher import Dispatcher
from kittiwake.domain import NumberKind
from kittiwake.errors import ConfigError, TwilioError
from kittiwake.inbound.worker import InboundWorker
from kittiwake.models import Account
from kittiwake.pacing import RatePolicy
from kittiwake.receiving import receive_sms
from kittiwake.store.base import FullStore, Store
from kittiwake.store.sqlite import SqliteStore
from kittiwake.webhooks.outbox import OutboxSettings, OutboxWorker

log = logging.getLogger("kittiwake")


def build_policy(settings: Settings) -> RatePolicy:
    pacing = settings.pacing
    defaults = {
        NumberKind.LONG_CODE.value: pacing.long_code,
        NumberKind.SHORT_CODE.value: pacing.short_code,
        NumberKind.TOLL_FREE.value: pacing.toll_free,
    }
    return RatePolicy(defaults, dict(pacing.per_sender))


def build_outbox_settings(settings: Settings) -> OutboxSettings:
    cb = settings.callbacks
    return OutboxSettings(
        timeout_seconds=cb.timeout,
        give_up_after_seconds=cb.give_up_after,
        backoff_base_seconds=cb.backoff_base,
        backoff_cap_seconds=cb.backoff_cap,
        per_host_concurrency=cb.per_host_concurrency,
    )


def build_carrier(settings: Settings, store: FullStore, clock: Clock) -> Carrier:
    """The carrier (or router over carriers) the config describes; the simulator when none is."""
    carriers: dict[str, Carrier] = {}
    for config in settings.carriers:
        if config.type == "simulator":
            carriers[config.name] = SimulatedCarrier(store, clock, settings.simulator, name=config.name)
        else:
            from kittiwake.carriers.smpp import SmppCarrier

            carriers[config.name] = SmppCarrier(config, store, clock)
    if not carriers:
        return SimulatedCarrier(store, clock, settings.simulator)
    if len(carriers) == 1:
        return next(iter(carriers.values()))
    default = next((c.name for c in settings.carriers if c.default), settings.carriers[0].name)
    return RoutingCarrier(carriers, settings.routes, default)


def build_store(settings: Settings) -> FullStore:
    return SqliteStore(
        settings.database_path, synchronous=settings.sqlite_synchronous, max_batch=settings.max_commit_batch
    )


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[FullStore]:
    """The store with migrations applied, closed (after finishing queued writes) on exit."""
    store = build_store(settings)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def ensure_first_account(store: Store, clock: Clock) -> Account | None:
    """Create the first account on an empty database; return it, or None when accounts exist."""
    if await store.all_accounts():
        return None
    return await provisioning.create_account(store, clock, "Kittiwake first account")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: the Gateway owns SIGINT/SIGTERM.

    uvicorn re-raises a captured signal after shutting down, so the process would die of SIGTERM
    (exit status -15) instead of exiting 0 after a clean stop.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def serve_lock(settings: Settings) -> Iterator[None]:
    """One ``serve`` per SQLite data directory: a second one would pace the same senders twice."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.data_dir / "serve.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another kittiwake serve is already running on {settings.data_dir}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


class Gateway:
    """One Kittiwake process: every role, until :meth:`request_stop`, SIGINT or SIGTERM.

    ``ready`` is set once the HTTP server accepts requests; ``port`` is then the bound port (useful
    with ``--port 0``) and ``first_account`` the account created on an empty database, if any.
    """

    def __init__(self, settings: Settings, out: TextIO = sys.stdout, clock: Clock | None = None) -> None:
        self.settings = settings
        self.out = out
        self.clock = clock or SystemClock()
        self.ready = threading.Event()
        self.port: int | None = None
        self.first_account: Account | None = None
        self._server: uvicorn.Server | None = None
        self.dispatcher: Dispatcher | None = None
        self.outbox: OutboxWorker | None = None

    def request_stop(self) -> None:
        """Ask the server to finish in-flight requests and stop (call from the gateway's own loop)."""
        if self._server is not None:
            self._server.should_exit = True

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded in a test or another program: the host stops us with request_stop()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_stop)

    async def run(self) -> None:
        settings, out = self.settings, self.out
        with serve_lock(settings):
            await self._serve(settings, out)

    async def _serve(self, settings: Settings, out: TextIO) -> None:
        # Imported here so the CLI's data commands do not load the web stack.
        from kittiwake.api.app import create_app
        from kittiwake.api.http import ApiContext

        async with opened_store(settings) as store:
            out.write(f"Kittiwake {__version__}: data in {settings.data_dir}\n")
            self.first_account = await ensure_first_account(store, self.clock)
            if self.first_account is not None:
                # Printed once, at creation, for the person who started the gateway; never logged.
                out.write(
                    "Created the first account. Use these credentials with any Twilio client:\n"
                    f"  Account SID: {self.first_account.sid}\n  Auth token:  {self.first_account.auth_token}\n"
                )
            policy = build_policy(settings)
            outbox = OutboxWorker(store, self.clock, build_outbox_settings(settings))
            carrier = build_carrier(settings, store, self.clock)

            async def on_mo(mo: MobileOriginated) -> None:
                try:
                    await receive_sms(store, self.clock, policy, settings, account_sid=None,
                                      from_raw=mo.from_, to_raw=mo.to, body=mo.body)  # fmt: skip
                except TwilioError as exc:
                    log.warning("inbound SMS from %s to %s dropped: %s", mo.from_, mo.to, exc.message)

            dispatcher = Dispatcher(store, carrier, self.clock, policy, on_callbacks=outbox.wake, on_mo=on_mo)
            store.add_queue_listener(dispatcher.notify)
            inbound = InboundWorker(store, self.clock, policy, settings)
            store.add_inbound_listener(inbound.wake)
            await dispatcher.start()
            outbox_task = asyncio.create_task(outbox.run())
            inbound_task = asyncio.create_task(inbound.run())
            self.dispatcher, self.outbox = dispatcher, outbox
            app = create_app(ApiContext(store=store, settings=settings, clock=self.clock, policy=policy))
            config = uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_level=settings.log_level,
                access_log=False,
                lifespan="off",
                server_header=False,
                timeout_graceful_shutdown=10,
            )
            self._server = server = _Server(config)
            self._install_signal_handlers()
            task = asyncio.create_task(server.serve())
            # uvicorn exposes only a `started` flag, no event to wait on.
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            if server.started:
                host, port = server.servers[0].sockets[0].getsockname()[:2]
                self.port = port
                out.write(f"Listening on http://{host}:{port}\n")
                out.flush()
                self.ready.set()
            await task
            # The API has stopped taking requests: finish or park in-flight submissions, then callbacks.
            inbound.stop()
            await inbound_task
            await dispatcher.stop()
            await outbox.aclose()
            await outbox_task
            out.write("Kittiwake stopped.\n")
            out.flush()


async def serve(settings: Settings, out: TextIO = sys.stdout) -> None:
    """Run the gateway until SIGINT/SIGTERM; print the first account's credentials if it was created."""
    await Gateway(settings, out).run()
