"""Per-sender pacing: rates, and an exact GCRA scheduler over a min-heap.

This module owns the pacing *policy* and nothing else. It is pure: no I/O, no asyncio, no clock reads. Every
time is a float of monotonic seconds passed in by the caller (the runtime reads ``Clock.monotonic()``; tests
move a fake time variable by hand).

The rule (design.md "Pacing: one way to make it exact"): each sender sends at most ``rate`` *segments* per
second (a long code 1/s, so a 3-segment message uses 3 s of its sender's capacity); senders are independent;
per sender, messages leave in acceptance order, never two closer than the sender's interval allows, and the
sender is never idle while it has due work.

The mechanism is GCRA, the generic cell rate algorithm of ATM traffic policing (ITU-T I.371, also the "virtual
scheduling" form used by many rate limiters). Each sender keeps one number, its theoretical arrival time
``tat``: the earliest moment its next submission conforms. With zero burst tolerance::

    earliest(sender)                                  = max(now, tat[sender])
    on submit of k segments at time t:  tat[sender]  = max(t, tat[sender]) + k * interval

A ``tat`` in the past carries no information (``max(now, tat) == now``), which is why idle senders can be
forgotten (:meth:`Scheduler.prune`) without changing behaviour, and why persisting ``tat`` across a restart
is enough to prevent a burst.

Senders with queued work sit in a min-heap keyed by ``earliest``; the caller sleeps until the head is due (or
until new work arrives for an idle sender), pops it, submits one message, records it, and pushes the sender
back keyed by its new ``tat``. Cost per operation: O(log active senders), independent of queue depth.
Removal is lazy: each heap entry carries a generation number and only the sender's current generation is live,
so :meth:`Scheduler.mark_idle` and :meth:`Scheduler.reschedule` never search the heap.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kittiwake.domain import NumberKind

__all__ = [
    "DEFAULT_RATES",
    "Rate",
    "RatePolicy",
    "Scheduler",
    "lateness",
    "violations",
]


@dataclass(frozen=True)
class Rate:
    """A sender's capacity in segments per second (fractional rates allowed: 0.5 means one segment per 2 s)."""

    segments_per_second: float

    def __post_init__(self) -> None:
        value = self.segments_per_second
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"rate must be a number, not {type(value).__name__}")
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"rate must be a finite number > 0 segments/s, not {value!r}")

    @property
    def interval(self) -> float:
        """Seconds of the sender's capacity one segment uses (the GCRA increment ``T``)."""
        return 1.0 / self.segments_per_second


# Seed defaults per sender kind: US long code 1 segment/s, short code 100 segments/s (Twilio: ">100", error
# 21611/30001), toll-free 3 segments/s (twilio-api.md §8; the toll-free figure is unconfirmed for Twilio).
DEFAULT_RATES: Mapping[str, Rate] = {
    NumberKind.LONG_CODE.value: Rate(1.0),
    NumberKind.SHORT_CODE.value: Rate(100.0),
    NumberKind.TOLL_FREE.value: Rate(3.0),
}


def _as_rate(value: Rate | float) -> Rate:
    return value if isinstance(value, Rate) else Rate(value)


class RatePolicy:
    """Which rate applies to a sender: a per-sender override if the operator set one, else its kind's default."""

    def __init__(
        self,
        defaults: Mapping[str, Rate | float] | None = None,
        overrides: Mapping[str, Rate | float] | None = None,
    ) -> None:
        """``defaults`` (per kind) are merged over :data:`DEFAULT_RATES`; ``overrides`` are per sender string."""
        self._defaults: dict[str, Rate] = dict(DEFAULT_RATES)
        for kind, rate in (defaults or {}).items():
            self._defaults[str(kind)] = _as_rate(rate)
        self._overrides: dict[str, Rate] = {str(s): _as_rate(r) for s, r in (overrides or {}).items()}

    def rate_for(self, sender: str, kind: str) -> Rate:
        """The sender's rate. Raises ``ValueError`` for a kind with no default (a configuration error)."""
        override = self._overrides.get(sender)
        if override is not None:
            return override
        try:
            return self._defaults[str(kind)]
        except KeyError:
            raise ValueError(f"no pacing rate for sender kind {kind!r}") from None

    def set_override(self, sender: str, rate: Rate | float | None) -> None:
        """Set (or, with ``None``, clear) one sender's rate. Takes effect from the sender's next submission."""
        if rate is None:
            self._overrides.pop(sender, None)
        else:
            self._overrides[sender] = _as_rate(rate)

    @property
    def defaults(self) -> Mapping[str, Rate]:
        return dict(self._defaults)

    @property
    def overrides(self) -> Mapping[str, Rate]:
        return dict(self._overrides)


class Scheduler:
    """GCRA per-sender scheduler: which sender may submit next, and when.

    A sender is in one of three states:

    * idle: no heap entry (its ``tat`` may still be remembered);
    * scheduled: one live heap entry keyed by ``earliest``;
    * in flight: returned by :meth:`pop_due` and not yet finished. The caller must finish it with
      :meth:`reschedule` (more work) or :meth:`mark_idle` (none); :meth:`mark_ready` on an in-flight sender is
      a no-op, so work arriving during a submission cannot schedule the sender twice.

    The scheduler chooses senders, never messages: per sender, the caller submits the oldest queued message,
    which gives acceptance order. Among senders due at the same instant, the one scheduled first goes first.
    """

    # Rebuild the heap when stale entries outnumber live ones by this factor (plus a floor), so lazy deletion
    # keeps memory O(active senders) and each operation amortised O(log active senders).
    _COMPACT_FACTOR = 2
    _COMPACT_FLOOR = 64

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        # Heap entries are (earliest, generation, sender); the generation breaks ties (first scheduled, first
        # out) and identifies the live entry: an entry is live iff _live[sender] == (earliest, generation).
        self._heap: list[tuple[float, int, str]] = []
        self._live: dict[str, tuple[float, int]] = {}
        self._in_flight: set[str] = set()
        self._generation = 0

    # -- state -----------------------------------------------------------------------------------------------

    def set_tat(self, sender: str, tat: float) -> None:
        """Restore a persisted theoretical arrival time (monotonic seconds of *this* process) at start-up.

        If the sender is already scheduled, its entry is re-keyed to honour the restored ``tat``.
        """
        self._tat[sender] = tat
        live = self._live.get(sender)
        if live is not None and live[0] < tat:
            self._push(sender, tat)

    def tat(self, sender: str) -> float | None:
        """The sender's theoretical arrival time, or ``None`` if none is remembered."""
        return self._tat.get(sender)

    def earliest(self, sender: str, now: float) -> float:
        """When the sender may next submit: ``max(now, tat)`` (GCRA conformance time with zero tolerance)."""
        tat = self._tat.get(sender)
        return now if tat is None or tat < now else tat

    @property
    def scheduled_count(self) -> int:
        """How many senders have a live heap entry (in-flight senders are not counted)."""
        return len(self._live)

    def is_scheduled(self, sender: str) -> bool:
        return sender in self._live

    def is_in_flight(self, sender: str) -> bool:
        return sender in self._in_flight

    # -- transitions -----------------------------------------------------------------------------------------

    def mark_ready(self, sender: str, rate: Rate, now: float) -> None:
        """The sender has queued work: schedule it at ``max(now, tat)`` unless already scheduled or in flight.

        ``rate`` is not needed by zero-tolerance GCRA (the interval is charged at :meth:`record_submit`); it is
        taken so that every scheduling call has the same shape.
        """
        del rate
        if sender in self._live or sender in self._in_flight:
            return
        self._push(sender, self.earliest(sender, now))

    def next_due(self) -> tuple[float, str] | None:
        """Peek at the head: ``(earliest, sender)`` of the sender due soonest, or ``None`` if none is scheduled."""
        self._drop_stale_head()
        if not self._heap:
            return None
        earliest, _, sender = self._heap[0]
        return earliest, sender

    def pop_due(self, now: float) -> str | None:
        """Remove and return the head sender if its earliest time is ``<= now``; it is then in flight."""
        self._drop_stale_head()
        if not self._heap or self._heap[0][0] > now:
            return None
        _, _, sender = heapq.heappop(self._heap)
        del self._live[sender]
        self._in_flight.add(sender)
        return sender

    def record_submit(self, sender: str, segments: int, at: float, rate: Rate) -> float:
        """Charge a submission of ``segments`` segments at ``at``: ``tat = max(at, tat) + segments * interval``.

        Returns the new ``tat``, the earliest time of the sender's next submission (persist it with the claim).
        Submitting before ``tat`` is not refused here (the scheduler never does it); the charge then starts
        from ``tat``, as in GCRA, so the debt is carried forward rather than forgiven.
        """
        if segments < 1:
            raise ValueError(f"a submission has at least one segment, not {segments}")
        previous = self._tat.get(sender)
        start = at if previous is None or previous < at else previous
        # Same expression as violations()/lateness() use, so an exact simulation compares equal floats.
        tat = start + segments * rate.interval
        self._tat[sender] = tat
        return tat

    def reschedule(self, sender: str, rate: Rate, now: float) -> None:
        """After a submission, the sender still has work: (re)schedule it at ``max(now, tat)``.

        Replaces any existing entry; also usable to re-drive a sender whose submission was throttled.
        """
        del rate
        self._in_flight.discard(sender)
        self._push(sender, self.earliest(sender, now))

    def mark_idle(self, sender: str) -> None:
        """The sender has no more work: unschedule it (lazily) and keep its ``tat``."""
        self._in_flight.discard(sender)
        self._live.pop(sender, None)
        self._maybe_compact()

    def forget(self, sender: str) -> None:
        """Drop everything about the sender, ``tat`` included.

        Only behaviour-preserving when the sender is idle and its ``tat`` is in the past (see :meth:`prune`);
        forgetting a future ``tat`` allows that sender one early submission.
        """
        self._tat.pop(sender, None)
        self.mark_idle(sender)

    def prune(self, now: float) -> int:
        """Forget idle senders whose ``tat <= now`` (it carries no information); returns how many were dropped.

        O(remembered senders): call it now and then (e.g. once a minute), not per message.
        """
        stale = [
            sender
            for sender, tat in self._tat.items()
            if tat <= now and sender not in self._live and sender not in self._in_flight
        ]
        for sender in stale:
            del self._tat[sender]
        return len(stale)

    # -- heap ------------------------------------------------------------------------------------------------

    def _push(self, sender: str, earliest: float) -> None:
        self._generation += 1
        self._live[sender] = (earliest, self._generation)
        heapq.heappush(self._heap, (earliest, self._generation, sender))
        self._maybe_compact()

    def _drop_stale_head(self) -> None:
        heap = self._heap
        while heap:
            earliest, generation, sender = heap[0]
            if self._live.get(sender) == (earliest, generation):
                return
            heapq.heappop(heap)

    def _maybe_compact(self) -> None:
        if len(self._heap) > self._COMPACT_FACTOR * len(self._live) + self._COMPACT_FLOOR:
            self._heap = [(earliest, generation, sender) for sender, (earliest, generation) in self._live.items()]
            heapq.heapify(self._heap)


# -- checks on a sender's submission log (for tests and benchmarks) ---------------------------------------------


def violations(
    submits: Sequence[tuple[float, int]],
    rate: Rate,
    tolerance: float = 0.0,
    *,
    initial_tat: float | None = None,
) -> int:
    """Count pacing violations in one sender's submission log.

    ``submits`` are ``(time, segments)`` in submission order. Submission ``i > 0`` violates when
    ``time[i] < time[i-1] + segments[i-1] * interval - tolerance``. With ``initial_tat`` (a ``tat`` restored at
    start-up), the first submission violates when ``time[0] < initial_tat - tolerance``.
    """
    interval = rate.interval
    count = 0
    bound = initial_tat
    for time, segments in submits:
        if bound is not None and time < bound - tolerance:
            count += 1
        bound = time + segments * interval
    return count


def lateness(
    submits: Sequence[tuple[float, int]],
    ready_times: Sequence[float],
    rate: Rate,
    *,
    initial_tat: float | None = None,
) -> list[float]:
    """Per-submission lateness ``actual time - earliest allowed time`` for one sender's log.

    ``submits`` are ``(time, segments)`` in submission order and ``ready_times[i]`` is when message ``i``
    became submittable (accepted, or its SendAt time). The earliest allowed time of message ``i`` is
    ``max(ready_times[i], time[i-1] + segments[i-1] * interval)`` for ``i > 0`` — measured from the previous
    message's *actual* submission, so one late message is counted once, not again for every message behind
    it — and ``max(ready_times[0], initial_tat)`` for the first (``initial_tat`` omitted: ``ready_times[0]``).

    Zero everywhere means work-conserving: no message waited past the moment both it and its sender were due.
    A negative value means the message left early (a violation, also counted by :func:`violations`).
    """
    if len(submits) != len(ready_times):
        raise ValueError(f"{len(submits)} submissions but {len(ready_times)} ready times")
    interval = rate.interval
    result: list[float] = []
    bound = initial_tat
    for (time, segments), ready in zip(submits, ready_times, strict=True):
        allowed = ready if bound is None or bound < ready else bound
        result.append(time - allowed)
        bound = time + segments * interval
    return result
