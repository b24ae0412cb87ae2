"""The composition root: Settings -> store -> API app -> HTTP server; start and stop.

Nothing else wires components together. ``serve`` runs every role in one process (API now; the
dispatcher and simulated carrier join here as they are built).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
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
from kittiwake.metrics import Metrics, Sample
from kittiwake.models import Account
from kittiwake.pacing import RatePolicy
from kittiwake.receiving import receive_sms
from kittiwake.store.base import FullStore, Store
from kittiwake.store.lock import exclusive_data_dir
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
    if settings.database_url is not None:
        from kittiwake.store.postgres import PostgresStore

        return PostgresStore(settings.database_url, max_batch=settings.max_commit_batch)
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


def serve_lock(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """One ``serve`` with a dispatcher per SQLite data directory: a second one would pace senders twice."""
    return exclusive_data_dir(settings.data_dir, f"another kittiwake serve is already running on {settings.data_dir}")


class Gateway:
    """One Kittiwake process: the roles its settings name, until :meth:`request_stop`, SIGINT or SIGTERM.

    ``ready`` is set once the process works (for the api role: once the HTTP server accepts requests);
    ``port`` is then the bound port (useful with ``--port 0``) and ``first_account`` the account created
    on an empty database, if any.
    """

    def __init__(
        self, settings: Settings, out: TextIO = sys.stdout, clock: Clock | None = None, *, handle_signals: bool = True
    ) -> None:
        self.settings = settings
        self._handle_signals = handle_signals
        self.out = out
        self.clock = clock or SystemClock()
        self.ready = threading.Event()
        self.port: int | None = None
        self.first_account: Account | None = None
        self._server: uvicorn.Server | None = None
        self._stop: asyncio.Event | None = None
        self.dispatcher: Dispatcher | None = None
        self.outbox: OutboxWorker | None = None
        self.metrics = Metrics()

    def request_stop(self) -> None:
        """Ask the process to finish in-flight work and stop (call from the gateway's own loop)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._stop is not None:
            self._stop.set()

    def _install_signal_handlers(self) -> None:
        if not self._handle_signals or threading.current_thread() is not threading.main_thread():
            return  # embedded in a test or another program: the host stops us with request_stop()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.request_stop)

    async def run(self) -> None:
        settings = self.settings
        self._stop = asyncio.Event()
        self._install_signal_handlers()
        if settings.database_url is None and "dispatcher" in settings.roles:
            with serve_lock(settings):
                await self._serve(settings, self.out)
        else:
            await self._serve(settings, self.out)

    async def _serve(self, settings: Settings, out: TextIO) -> None:
        async with opened_store(settings) as store:
            where = "PostgreSQL" if settings.database_url else f"data in {settings.data_dir}"
            out.write(f"Kittiwake {__version__}: {where}; roles: {', '.join(sorted(settings.roles))}\n")
            if settings.bootstrap:
                self.first_account = await ensure_first_account(store, self.clock)
            if self.first_account is not None:
                # Printed once, at creation, for the person who started the gateway; never logged.
                out.write(
                    "Created the first account. Use these credentials with any Twilio client:\n"
                    f"  Account SID: {self.first_account.sid}\n  Auth token:  {self.first_account.auth_token}\n"
                )
            out.flush()
            policy = build_policy(settings)
            workers = await self._start_workers(store, settings, policy)
            try:
                if "api" in settings.roles:
                    await self._run_api(store, settings, policy, out)
                else:
                    out.write(f"Running {', '.join(sorted(settings.roles)) or 'no roles'} (no HTTP port)\n")
                    out.flush()
                    self.ready.set()
                    assert self._stop is not None
                    await self._stop.wait()
            finally:
                # No more requests: finish or park in-flight submissions, then callbacks.
                for stop in reversed(workers):
                    await stop()
            out.write("Kittiwake stopped.\n")
            out.flush()

    async def _start_workers(
        self, store: FullStore, settings: Settings, policy: RatePolicy
    ) -> list[Callable[[], Awaitable[None]]]:
        """Start the background roles; return how to stop each, in start order."""
        stops: list[Callable[[], Awaitable[None]]] = []
        outbox: OutboxWorker | None = None
        if "webhooks" in settings.roles:
            outbox = OutboxWorker(store, self.clock, build_outbox_settings(settings))
            inbound = InboundWorker(store, self.clock, policy, settings)
            store.add_inbound_listener(inbound.wake)
            outbox_task = asyncio.create_task(outbox.run())
            inbound_task = asyncio.create_task(inbound.run())
            self.outbox = outbox
            self.metrics.register(lambda: _worker_samples(outbox, inbound))

            async def stop_webhooks() -> None:
                inbound.stop()
                await inbound_task
                assert outbox is not None
                await outbox.aclose()
                await outbox_task

            stops.append(stop_webhooks)
        if "dispatcher" in settings.roles:
            carrier = build_carrier(settings, store, self.clock)

            async def on_mo(mo: MobileOriginated) -> None:
                try:
                    await receive_sms(store, self.clock, policy, settings, account_sid=None,
                                      from_raw=mo.from_, to_raw=mo.to, body=mo.body)  # fmt: skip
                except TwilioError as exc:
                    log.warning("inbound SMS from %s to %s dropped: %s", mo.from_, mo.to, exc.message)

            wake = outbox.wake if outbox is not None else (lambda: None)
            dispatcher = Dispatcher(store, carrier, self.clock, policy, on_callbacks=wake, on_mo=on_mo)
            store.add_queue_listener(dispatcher.notify)
            # With SQLite this is the only dispatcher (serve_lock); with PostgreSQL others may be running.
            await dispatcher.start(sole_dispatcher=settings.database_url is None)
            self.dispatcher = dispatcher
            self.metrics.register(lambda: _dispatcher_samples(dispatcher, carrier))
            stops.append(dispatcher.stop)
        return stops

    async def _run_api(self, store: FullStore, settings: Settings, policy: RatePolicy, out: TextIO) -> None:
        # Imported here so the CLI's data commands do not load the web stack.
        from kittiwake.api.app import create_app
        from kittiwake.api.http import ApiContext

        app = create_app(
            ApiContext(store=store, settings=settings, clock=self.clock, policy=policy, metrics=self.metrics)
        )
        config = uvicorn.Config(
            app,
            log_level=settings.log_level,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=10,
        )
        self._server = server = _Server(config)
        sock = listening_socket(settings.host, settings.port, reuse_port=settings.reuse_port)
        if self._stop is not None and self._stop.is_set():
            server.should_exit = True  # a signal arrived while starting up
        task = asyncio.create_task(server.serve(sockets=[sock]))
        # uvicorn exposes only a `started` flag, no event to wait on.
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        if server.started:
            host, port = sock.getsockname()[:2]
            self.port = port
            out.write(f"Listening on http://{host}:{port}\n")
            out.flush()
            self.ready.set()
        await task


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _dispatcher_samples(dispatcher: Dispatcher, carrier: Carrier) -> list[Sample]:
    lateness = list(dispatcher.lateness)[-10_000:]
    samples = [
        Sample("submitted_total", "counter", "Messages handed to a carrier.", dispatcher.submitted),
        Sample("submit_failed_total", "counter", "Submissions the carrier refused.", dispatcher.failed),
        Sample("expired_total", "counter", "Messages failed with 30001 (past ValidityPeriod).", dispatcher.expired),
        Sample("pacing_lateness_seconds", "gauge", "Submit time minus earliest allowed, recent p50.",
               _percentile(lateness, 0.5), (("quantile", "0.5"),)),
        Sample("pacing_lateness_seconds", "gauge", "Submit time minus earliest allowed, recent p99.",
               _percentile(lateness, 0.99), (("quantile", "0.99"),)),
        Sample("senders_leased", "gauge", "Senders this dispatcher holds the lease of.", dispatcher.leased_senders),
    ]  # fmt: skip
    for part in getattr(carrier, "parts", lambda: [carrier])():
        name = (("carrier", part.name),)
        state = getattr(part, "bind_state", None)
        if state is not None:
            samples.append(
                Sample("bind_up", "gauge", "1 when the carrier's bind is up.", float(state == "bound"), name)
            )
        for attr, help_text in (
            ("submitted_parts", "submit_sm answered OK."),
            ("throttled", "ESME_RTHROTTLED/RMSGQFUL answers."),
            ("redriven", "Submissions re-driven after a lost connection (possible duplicates)."),
            ("reconnects", "Binds lost and re-established."),
            ("receipts_matched", "Receipts matched to a message part."),
            ("receipts_unknown", "Receipts for unknown message ids (acknowledged, logged)."),
            ("mo_received", "Mobile-originated messages received."),
        ):
            if hasattr(part, attr):
                samples.append(Sample(f"carrier_{attr}_total", "counter", help_text, getattr(part, attr), name))
    return samples


def _worker_samples(outbox: OutboxWorker, inbound: InboundWorker) -> list[Sample]:
    return [
        Sample("callbacks_delivered_total", "counter", "Status callbacks delivered.", outbox.delivered),
        Sample("callbacks_retried_total", "counter", "Status callback attempts to retry.", outbox.retried),
        Sample("callbacks_dead_total", "counter", "Status callbacks given up.", outbox.dead),
        Sample("callbacks_in_flight", "gauge", "Status callback requests on the wire.", outbox.in_flight),
        Sample("inbound_processed_total", "counter", "Inbound messages whose webhook ran.", inbound.processed),
        Sample("inbound_failed_total", "counter", "Inbound webhooks that ended in an error.", inbound.failed),
    ]


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port; with ``reuse_port``, several processes can bind the same port and
    the kernel spreads connections among them (SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


async def serve(settings: Settings, out: TextIO = sys.stdout) -> None:
    """Run the gateway until SIGINT/SIGTERM; print the first account's credentials if it was created."""
    await Gateway(settings, out).run()
