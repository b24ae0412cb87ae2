"""One SMPP connection (a bind) as asyncio I/O around the pure :class:`kittiwake.smpp.session.Session`.

The link owns the socket, feeds bytes to the session, writes what the session produces, runs its timers
(response timeouts, enquire_link), and turns responses into resolved futures. Requests from the peer
(deliver_sm, data_sm) go to the carrier's handler, which answers them. When the connection ends, every
unanswered request fails with :class:`LinkLost` so its sender can re-drive it on the next bind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kittiwake.clock import Clock
from kittiwake.config import CarrierSettings
from kittiwake.smpp import pdu as p
from kittiwake.smpp.errors import LocalProtocolError
from kittiwake.smpp.session import (
    BindFailed,
    Bound,
    EnquireLinkDue,
    Event,
    ProtocolErrorEvent,
    Request,
    Response,
    ResponseTimeout,
    Session,
    Unbound,
)

log = logging.getLogger(__name__)

RequestHandler = Callable[["Link", p.Pdu], Coroutine[Any, Any, None]]


class LinkLost(Exception):
    """The connection ended before the request was answered (it may or may not have reached the SMSC)."""


class BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with command_status 0x{status:08X}")
        self.status = status


class Link:
    """A bound SMPP connection of one mode: "transceiver", "transmitter" or "receiver"."""

    def __init__(self, config: CarrierSettings, mode: str, clock: Clock, on_request: RequestHandler) -> None:
        self.config = config
        self.mode = mode
        self._clock = clock
        self._on_request = on_request
        self.session = Session(
            window_size=config.window,
            response_timeout=config.response_timeout,
            enquire_link_interval=config.enquire_link_interval,
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[p.Pdu]] = {}
        self._bound: asyncio.Future[None] | None = None
        self._window = asyncio.Event()
        self._window.set()
        self._timer_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = asyncio.Event()

    # -- connecting ----------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the TCP connection and bind; BindRefused or OSError/TimeoutError when that fails."""
        cfg = self.config
        self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(cfg.host, cfg.port), 10)
        loop = asyncio.get_running_loop()
        self._bound = loop.create_future()
        reader_task = asyncio.create_task(self._read_loop())
        timer_task = asyncio.create_task(self._timer_loop())
        self._tasks.update({reader_task, timer_task})
        bind_cls = {"transceiver": p.BindTransceiver, "transmitter": p.BindTransmitter, "receiver": p.BindReceiver}
        bind = bind_cls[self.mode](
            system_id=cfg.system_id,
            password=cfg.password,
            system_type=cfg.system_type,
            addr_ton=cfg.source_ton,
            addr_npi=cfg.source_npi,
        )
        self._write(self.session.send(bind, self._clock.monotonic())[1])
        try:
            await asyncio.wait_for(asyncio.shield(self._bound), cfg.response_timeout)
        except BaseException:
            await self.close()
            raise

    # -- requests ------------------------------------------------------------------------------------

    async def request(self, pdu: p.PduBase) -> p.Pdu:
        """Send a windowed request and wait for its response (LinkLost if the connection ends first)."""
        while not self.session.can_send():
            if self.closed.is_set():
                raise LinkLost("connection closed")
            self._window.clear()
            await self._window.wait()
        if self.closed.is_set():
            raise LinkLost("connection closed")
        try:
            seq, data = self.session.send(pdu, self._clock.monotonic())
        except LocalProtocolError as exc:
            raise LinkLost(str(exc)) from None
        future: asyncio.Future[p.Pdu] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        self._write(data)
        self._timer_changed.set()
        return await future

    def respond(self, request: p.Pdu, status: int = 0, message_id: str = "") -> None:
        if not self.closed.is_set():
            self._write(self.session.respond(request, status, message_id=message_id))

    @property
    def window_in_use(self) -> int:
        return self.session.window_size - self.session.window_available

    # -- the loops -----------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                self._handle(self.session.receive_data(data, self._clock.monotonic()))
                if self.closed.is_set():
                    break
        except (OSError, asyncio.IncompleteReadError) as exc:
            log.warning("SMPP %s (%s): connection error: %s", self.config.name, self.mode, exc)
        finally:
            self._lost()

    async def _timer_loop(self) -> None:
        while not self.closed.is_set():
            deadline = self.session.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock.monotonic())
            self._timer_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_changed.wait(), timeout)
                continue
            self._handle(self.session.on_timer(self._clock.monotonic()))

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Bound):
                if self._bound is not None and not self._bound.done():
                    self._bound.set_result(None)
            elif isinstance(event, BindFailed):
                if self._bound is not None and not self._bound.done():
                    self._bound.set_exception(BindRefused(event.status))
            elif isinstance(event, Response):
                self._resolve(event.request_seq, event.response_pdu)
            elif isinstance(event, ResponseTimeout):
                self._fail(event.request_seq, LinkLost("no response in time"))
            elif isinstance(event, Request):
                if event.auto_response is not None:
                    self._write(event.auto_response)
                elif event.pdu.command_id in (p.DeliverSm.command_id, p.DataSm.command_id):
                    task = asyncio.create_task(self._on_request(self, event.pdu))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            elif isinstance(event, EnquireLinkDue):
                with contextlib.suppress(LocalProtocolError):
                    self._write(self.session.send(p.EnquireLink(), self._clock.monotonic())[1])
            elif isinstance(event, ProtocolErrorEvent):
                log.warning("SMPP %s: protocol error from the SMSC: %s", self.config.name, event.error)
                if event.reply_bytes is not None:
                    self._write(event.reply_bytes)
                if event.must_close:
                    self._abort()
            elif isinstance(event, Unbound):
                self._abort()
        self._timer_changed.set()

    def _resolve(self, seq: int, response: p.Pdu) -> None:
        future = self._pending.pop(seq, None)
        if future is not None and not future.done():
            future.set_result(response)
        self._window.set()

    def _fail(self, seq: int, error: Exception) -> None:
        future = self._pending.pop(seq, None)
        if future is not None and not future.done():
            future.set_exception(error)
        self._window.set()

    def _write(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def _abort(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _lost(self) -> None:
        """The connection is gone: every unanswered request fails with LinkLost."""
        self.session.connection_lost()
        self.closed.set()
        self._window.set()
        self._timer_changed.set()
        if self._bound is not None and not self._bound.done():
            self._bound.set_exception(LinkLost("connection closed before the bind was answered"))
        for seq in list(self._pending):
            self._fail(seq, LinkLost("connection closed"))
        self._abort()

    async def close(self, *, unbind: bool = False) -> None:
        """End the link: politely (unbind, wait briefly for its answer) or at once."""
        if unbind and not self.closed.is_set():
            with contextlib.suppress(LocalProtocolError):
                self._write(self.session.send(p.Unbind(), self._clock.monotonic())[1])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closed.wait(), 2)
        self._abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._lost()
