"""Time as a dependency: wall-clock microseconds for records, monotonic seconds for pacing.

Pure code takes a :class:`Clock`; tests pass a :class:`FakeClock` and move it by hand.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_micros(self) -> int:
        """Wall-clock UTC time, integer microseconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals, never for dates)."""
        ...


class SystemClock:
    def now_micros(self) -> int:
        return time.time_ns() // 1000

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start_micros: int = 1_700_000_000_000_000, start_monotonic: float = 1000.0) -> None:
        self._micros = start_micros
        self._monotonic = start_monotonic

    def now_micros(self) -> int:
        return self._micros

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._micros += round(seconds * 1_000_000)
        self._monotonic += seconds
