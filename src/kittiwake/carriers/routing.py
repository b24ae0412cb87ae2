"""Routing between several carriers: by destination prefix and by sender (``[[routes]]`` in the config).

Routes are tried in order; the first whose ``prefix`` (destination) and ``from`` (sender, exact or a
prefix) both match wins. Unmatched traffic goes to the carrier marked ``default``, else to the first
configured carrier. With a single carrier no routes are needed: everything goes through it.
"""

from __future__ import annotations

import asyncio

from kittiwake.carriers.base import Carrier, MoHandler, ReceiptHandler, Submission, SubmitResult
from kittiwake.config import RouteSettings


class RoutingCarrier:
    name = "router"

    def __init__(self, carriers: dict[str, Carrier], routes: tuple[RouteSettings, ...], default: str) -> None:
        self._carriers = carriers
        self._routes = routes
        self._default = carriers[default]

    def parts(self) -> list[Carrier]:
        """The carriers behind the router (for metrics)."""
        return list(self._carriers.values())

    def bind_limits(self) -> dict[str, int]:
        limits: dict[str, int] = {}
        for carrier in self._carriers.values():
            limits.update(carrier.bind_limits())
        return limits

    def allow_bind(self, name: str, allowed: bool) -> None:
        for carrier in self._carriers.values():
            carrier.allow_bind(name, allowed)

    def route(self, submission: Submission) -> Carrier:
        for route in self._routes:
            if route.prefix is not None and not submission.to.startswith(route.prefix):
                continue
            if route.sender is not None and not submission.from_.startswith(route.sender):
                continue
            return self._carriers[route.carrier]
        return self._default

    async def start(self, on_receipt: ReceiptHandler, on_mo: MoHandler | None = None) -> None:
        for carrier in self._carriers.values():
            await carrier.start(on_receipt, on_mo)

    async def submit(self, submission: Submission) -> SubmitResult:
        return await self.route(submission).submit(submission)

    async def stop(self) -> None:
        await asyncio.gather(*(carrier.stop() for carrier in self._carriers.values()), return_exceptions=True)
