"""Reassembling concatenated mobile-originated messages (3GPP TS 23.040 §9.2.3.24.1, SMPP 3.4 SAR TLVs).

Parts are keyed by (source, destination, reference); a duplicate part is dropped; a message whose parts
do not all arrive within ``timeout`` seconds is given up (and counted). Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Pending:
    total: int
    first_seen: float
    parts: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Part:
    source: str
    destination: str
    reference: int
    total: int
    index: int  # 1-based, as in the UDH and sar_segment_seqnum
    text: str


class Reassembler:
    def __init__(self, timeout: float = 60.0, max_pending: int = 10_000) -> None:
        self._timeout = timeout
        self._max_pending = max_pending
        self._pending: dict[tuple[str, str, int], _Pending] = {}
        self.duplicates = 0
        self.expired = 0

    def add(self, part: Part, now: float) -> str | None:
        """Take one part; the whole text once every part of its message has arrived, else None."""
        self.expire(now)
        if part.total <= 1:
            return part.text
        if not 1 <= part.index <= part.total:
            return None
        key = (part.source, part.destination, part.reference)
        pending = self._pending.get(key)
        if pending is None or pending.total != part.total:
            if len(self._pending) >= self._max_pending:
                oldest = min(self._pending, key=lambda k: self._pending[k].first_seen)
                del self._pending[oldest]
                self.expired += 1
            pending = self._pending[key] = _Pending(part.total, now)
        if part.index in pending.parts:
            self.duplicates += 1
            return None
        pending.parts[part.index] = part.text
        if len(pending.parts) < pending.total:
            return None
        del self._pending[key]
        return "".join(pending.parts[i] for i in range(1, pending.total + 1))

    def expire(self, now: float) -> int:
        """Give up messages whose first part is older than the timeout; how many were dropped."""
        stale = [k for k, p in self._pending.items() if now - p.first_seen > self._timeout]
        for key in stale:
            del self._pending[key]
        self.expired += len(stale)
        return len(stale)

    @property
    def pending(self) -> int:
        return len(self._pending)
