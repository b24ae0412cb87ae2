"""A small time-bounded cache of rows found by key, shared by the store engines."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

T = TypeVar("T")

# Every API request authenticates an account and every create looks up its sender: rows found are kept
# this long (seconds). Only found rows are kept, so a row another process just added is seen at once.
CACHE_SECONDS = 1.0


class TtlCache(Generic[T]):
    """Rows by key for ``ttl`` seconds (monotonic), at most ``size`` of them."""

    def __init__(self, ttl: float = CACHE_SECONDS, size: int = 10_000) -> None:
        self._ttl = ttl
        self._size = size
        self._rows: dict[str, tuple[float, T]] = {}

    def get(self, key: str) -> T | None:
        entry = self._rows.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, row: T) -> T:
        if len(self._rows) >= self._size:
            self._rows.clear()
        self._rows[key] = (time.monotonic() + self._ttl, row)
        return row

    def drop(self, key: str) -> None:
        self._rows.pop(key, None)

    def clear(self) -> None:
        self._rows.clear()
