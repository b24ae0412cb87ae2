"""Unit and property tests for kittiwake.pacing (GCRA per-sender scheduler) on a fake time variable.

The simulation below is the dispatcher loop in miniature: advance time to the sooner of the next arrival and the
scheduler's head, enqueue arrivals, and submit every due sender's oldest message. Checking each sender's log with
``violations`` (never early) and ``lateness`` (never late) gives both halves of the pacing rule exactly: floats
are compared with ``==``, no tolerance.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kittiwake.domain import NumberKind
from kittiwake.pacing import DEFAULT_RATES, Rate, RatePolicy, Scheduler, lateness, violations

# An arrival: (time, sender, segments).
Arrival = tuple[float, str, int]


@dataclass
class Sim:
    """A dispatcher on a fake clock: always advances time exactly to the next event."""

    rates: Mapping[str, Rate]
    scheduler: Scheduler = field(default_factory=Scheduler)
    now: float = 0.0
    queues: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    log: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    ready: dict[str, list[float]] = field(default_factory=dict)
    # Work-conservation witness: at each submission, the scheduler's own earliest(sender) before the submit.
    earliest_seen: dict[str, list[float]] = field(default_factory=dict)
    # Prune the scheduler's memory at every step (must not change any submission).
    prune: bool = False
    # After each step, check directly that no sender with queued work has reached its earliest time (O(senders)).
    check_idle: bool = False

    def run(self, arrivals: Iterable[Arrival]) -> Sim:
        pending = sorted(arrivals, key=lambda a: a[0])  # stable: same-time arrivals keep acceptance order
        i = 0
        while True:
            head = self.scheduler.next_due()
            next_arrival = pending[i][0] if i < len(pending) else math.inf
            next_time = min(next_arrival, head[0] if head else math.inf)
            if next_time == math.inf:
                return self
            assert next_time >= self.now, "time never goes backwards"
            self.now = next_time
            while i < len(pending) and pending[i][0] <= self.now:
                at, sender, segments = pending[i]
                i += 1
                self.queues.setdefault(sender, deque()).append((at, segments))
                self.scheduler.mark_ready(sender, self.rates[sender], self.now)
            self._submit_due()
            if self.prune:
                self.scheduler.prune(self.now)
            if self.check_idle:
                self._assert_work_conserving()

    def _submit_due(self) -> None:
        while (sender := self.scheduler.pop_due(self.now)) is not None:
            rate = self.rates[sender]
            queue = self.queues[sender]
            ready_at, segments = queue.popleft()
            self.earliest_seen.setdefault(sender, []).append(self.scheduler.earliest(sender, self.now))
            self.scheduler.record_submit(sender, segments, self.now, rate)
            self.log.setdefault(sender, []).append((self.now, segments))
            self.ready.setdefault(sender, []).append(ready_at)
            if queue:
                self.scheduler.reschedule(sender, rate, self.now)
            else:
                self.scheduler.mark_idle(sender)

    def _assert_work_conserving(self) -> None:
        for sender, queue in self.queues.items():
            if queue:
                tat = self.scheduler.tat(sender)
                assert tat is not None and tat > self.now, f"{sender} has due work at {self.now} but was not sent"
                assert self.scheduler.is_scheduled(sender)

    def times(self, sender: str) -> list[float]:
        return [t for t, _ in self.log[sender]]

    def assert_exact(self, initial_tats: Mapping[str, float] | None = None) -> None:
        """Every sender: zero violations, zero lateness, submitted exactly at its earliest, queue drained."""
        for sender, submits in self.log.items():
            tat0 = (initial_tats or {}).get(sender)
            rate = self.rates[sender]
            assert violations(submits, rate, initial_tat=tat0) == 0, sender
            assert lateness(submits, self.ready[sender], rate, initial_tat=tat0) == [0.0] * len(submits), sender
            assert self.earliest_seen[sender] == self.times(sender), sender
        assert all(not q for q in self.queues.values())
        assert self.scheduler.scheduled_count == 0


def burst(sender: str, at: float, segments: Iterable[int]) -> list[Arrival]:
    return [(at, sender, k) for k in segments]


ONE = Rate(1.0)


# -- Rate and RatePolicy -----------------------------------------------------------------------------------------


def test_rate_interval() -> None:
    assert ONE.interval == 1.0
    assert Rate(0.5).interval == 2.0
    assert Rate(3).interval == pytest.approx(1 / 3)
    assert Rate(100.0).interval == pytest.approx(0.01)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_rate_rejects_non_positive_or_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        Rate(bad)


def test_rate_rejects_non_numbers() -> None:
    with pytest.raises(TypeError):
        Rate(True)
    with pytest.raises(TypeError):
        Rate("1")  # type: ignore[arg-type]


def test_policy_seed_defaults() -> None:
    policy = RatePolicy()
    assert policy.rate_for("+15005550006", "long") == Rate(1.0)
    assert policy.rate_for("12345", "short") == Rate(100.0)
    assert policy.rate_for("+18005550100", "tollfree") == Rate(3.0)
    assert policy.rate_for("+15005550006", NumberKind.LONG_CODE) == Rate(1.0)
    assert set(DEFAULT_RATES) == {k.value for k in NumberKind}


def test_policy_kind_defaults_and_sender_overrides() -> None:
    policy = RatePolicy(defaults={"long": 2.0}, overrides={"+15005550006": Rate(0.5), "12345": 250})
    assert policy.rate_for("+15005550001", "long") == Rate(2.0)
    assert policy.rate_for("+15005550006", "long") == Rate(0.5)
    assert policy.rate_for("12345", "short") == Rate(250.0)
    assert policy.rate_for("54321", "short") == Rate(100.0)
    assert policy.rate_for("+18005550100", "tollfree") == Rate(3.0)
    policy.set_override("+15005550001", 4.0)
    assert policy.rate_for("+15005550001", "long") == Rate(4.0)
    policy.set_override("+15005550001", None)
    assert policy.rate_for("+15005550001", "long") == Rate(2.0)
    assert policy.overrides == {"+15005550006": Rate(0.5), "12345": Rate(250.0)}


def test_policy_unknown_kind_and_bad_rate() -> None:
    with pytest.raises(ValueError, match="no pacing rate"):
        RatePolicy().rate_for("SHOP24", "alphanumeric")
    with pytest.raises(ValueError):
        RatePolicy(overrides={"+15005550006": 0})


def test_policy_defaults_are_not_shared_between_instances() -> None:
    RatePolicy(defaults={"long": 9.0})
    assert RatePolicy().rate_for("+15005550006", "long") == Rate(1.0)


# -- the pacing rule on small cases -------------------------------------------------------------------------------


def test_long_code_one_segment_per_second() -> None:
    sim = Sim({"A": ONE}).run(burst("A", 0.0, [1, 1, 1, 1]))
    assert sim.times("A") == [0.0, 1.0, 2.0, 3.0]
    sim.assert_exact()


def test_fractional_rate_half_per_second() -> None:
    sim = Sim({"A": Rate(0.5)}).run(burst("A", 10.0, [1, 1, 1]))
    assert sim.times("A") == [10.0, 12.0, 14.0]
    sim.assert_exact()


def test_fractional_rate_three_per_second() -> None:
    sim = Sim({"T": Rate(3.0)}).run(burst("T", 0.0, [1] * 7))
    assert sim.times("T") == pytest.approx([i / 3 for i in range(7)])
    sim.assert_exact()


def test_multi_segment_message_blocks_sender_for_its_segments() -> None:
    sim = Sim({"A": ONE}).run(burst("A", 0.0, [3, 1, 2, 1]))
    assert sim.times("A") == [0.0, 3.0, 4.0, 6.0]
    sim.assert_exact()


def test_multi_segment_at_fractional_rate() -> None:
    sim = Sim({"A": Rate(0.5)}).run(burst("A", 0.0, [3, 1]))
    assert sim.times("A") == [0.0, 6.0]
    sim.assert_exact()


def test_no_burst_after_idle_period() -> None:
    arrivals = burst("A", 0.0, [1, 1]) + burst("A", 100.0, [1] * 5)
    sim = Sim({"A": ONE}).run(arrivals)
    # After idling, the first message goes at once (its tat is long past), the rest are paced again.
    assert sim.times("A") == [0.0, 1.0, 100.0, 101.0, 102.0, 103.0, 104.0]
    sim.assert_exact()


def test_arrival_while_still_paced_waits_for_tat() -> None:
    # A 3-segment message at 0 holds the sender until 3; a message arriving idle at 1 goes at 3, not at 1.
    sim = Sim({"A": ONE}).run([(0.0, "A", 3), (1.0, "A", 1), (10.0, "A", 1)])
    assert sim.times("A") == [0.0, 3.0, 10.0]
    sim.assert_exact()


def test_arrival_exactly_at_tat_goes_immediately() -> None:
    sim = Sim({"A": ONE}).run([(0.0, "A", 2), (2.0, "A", 1)])
    assert sim.times("A") == [0.0, 2.0]
    sim.assert_exact()


def test_senders_are_independent() -> None:
    rates = {"A": ONE, "B": ONE, "S": Rate(100.0)}
    arrivals = burst("A", 0.0, [1, 1, 1]) + burst("B", 0.0, [2, 1]) + burst("S", 0.0, [1] * 5)
    sim = Sim(rates).run(arrivals)
    assert sim.times("A") == [0.0, 1.0, 2.0]
    assert sim.times("B") == [0.0, 2.0]
    assert sim.times("S") == pytest.approx([0.0, 0.01, 0.02, 0.03, 0.04])
    sim.assert_exact()


def test_restored_tat_prevents_burst_after_restart() -> None:
    before = Sim({"A": ONE}).run([(10.0, "A", 3)])
    tat = before.scheduler.tat("A")
    assert tat == 13.0
    # "Restart": a fresh scheduler, the persisted tat restored, new work at 11.
    after = Sim({"A": ONE})
    after.scheduler.set_tat("A", tat)
    after.run(burst("A", 11.0, [1, 1]))
    assert after.times("A") == [13.0, 14.0]
    after.assert_exact(initial_tats={"A": tat})
    # Without the restored tat the first message would leave at 11, two seconds early.
    amnesiac = Sim({"A": ONE}).run(burst("A", 11.0, [1, 1]))
    assert amnesiac.times("A") == [11.0, 12.0]
    assert violations(amnesiac.log["A"], ONE, initial_tat=tat) == 1


def test_set_tat_rekeys_an_already_scheduled_sender() -> None:
    s = Scheduler()
    s.mark_ready("A", ONE, 5.0)
    s.set_tat("A", 8.0)
    assert s.next_due() == (8.0, "A")
    assert s.pop_due(7.9) is None
    assert s.pop_due(8.0) == "A"


def test_thousands_of_senders() -> None:
    rng = random.Random(1234)
    senders = [f"+1500{i:07d}" for i in range(10_000)]
    kinds = [Rate(1.0), Rate(0.5), Rate(3.0), Rate(100.0)]
    rates = {s: kinds[i % len(kinds)] for i, s in enumerate(senders)}
    arrivals: list[Arrival] = []
    for s in senders:
        start = rng.uniform(0.0, 5.0)
        arrivals += [(start, s, rng.randint(1, 3)) for _ in range(3)]
    sim = Sim(rates).run(arrivals)
    assert sum(len(log) for log in sim.log.values()) == 30_000
    sim.assert_exact()
    # Lazy deletion never lets the heap outgrow the active senders by more than the compaction bound.
    assert len(sim.scheduler._heap) <= 64


# -- scheduler mechanics ------------------------------------------------------------------------------------------


def test_empty_scheduler() -> None:
    s = Scheduler()
    assert s.next_due() is None
    assert s.pop_due(1e9) is None
    assert s.scheduled_count == 0
    assert s.tat("A") is None
    assert s.earliest("A", 5.0) == 5.0


def test_record_submit_gcra_update() -> None:
    s = Scheduler()
    assert s.record_submit("A", 1, 10.0, ONE) == 11.0
    assert s.record_submit("A", 3, 11.0, ONE) == 14.0
    # Submitting after tat: the charge starts at the submission time.
    assert s.record_submit("A", 1, 20.0, ONE) == 21.0
    # Submitting before tat (never done by the scheduler): the debt carries forward, as in GCRA.
    assert s.record_submit("A", 1, 20.5, ONE) == 22.0
    assert s.earliest("A", 21.0) == 22.0
    assert s.earliest("A", 30.0) == 30.0
    with pytest.raises(ValueError, match="at least one segment"):
        s.record_submit("A", 0, 30.0, ONE)


def test_mark_ready_is_idempotent_and_pop_requires_due() -> None:
    s = Scheduler()
    s.record_submit("A", 2, 0.0, ONE)
    s.mark_ready("A", ONE, 0.5)
    s.mark_ready("A", ONE, 0.7)
    assert s.scheduled_count == 1
    assert s.next_due() == (2.0, "A")
    assert s.pop_due(1.999) is None
    assert s.pop_due(2.0) == "A"
    assert s.pop_due(2.0) is None
    assert s.scheduled_count == 0


def test_mark_ready_while_in_flight_does_not_double_schedule() -> None:
    s = Scheduler()
    s.mark_ready("A", ONE, 0.0)
    assert s.pop_due(0.0) == "A"
    assert s.is_in_flight("A")
    s.mark_ready("A", ONE, 0.0)  # new work arrives during the submission
    assert s.scheduled_count == 0
    s.record_submit("A", 1, 0.0, ONE)
    s.reschedule("A", ONE, 0.0)
    assert not s.is_in_flight("A")
    assert s.next_due() == (1.0, "A")
    assert s.scheduled_count == 1


def test_mark_idle_drops_entry_and_keeps_tat() -> None:
    s = Scheduler()
    s.mark_ready("A", ONE, 0.0)
    s.mark_ready("B", ONE, 0.5)
    s.mark_idle("A")
    assert s.next_due() == (0.5, "B")
    assert s.scheduled_count == 1
    s.record_submit("A", 1, 0.0, ONE)
    s.mark_idle("A")
    assert s.tat("A") == 1.0
    s.mark_ready("A", ONE, 0.2)
    assert s.next_due() == (0.5, "B")
    assert s.pop_due(0.5) == "B"
    assert s.next_due() == (1.0, "A")


def test_reschedule_replaces_existing_entry() -> None:
    s = Scheduler()
    s.mark_ready("A", ONE, 0.0)
    s.record_submit("A", 4, 0.0, ONE)
    s.reschedule("A", ONE, 0.0)
    s.reschedule("A", ONE, 1.0)
    assert s.scheduled_count == 1
    assert s.pop_due(3.9) is None
    assert s.pop_due(4.0) == "A"
    assert s.pop_due(100.0) is None


def test_ties_go_to_the_sender_scheduled_first() -> None:
    s = Scheduler()
    for sender in ["C", "A", "B"]:
        s.mark_ready(sender, ONE, 1.0)
    assert [s.pop_due(1.0), s.pop_due(1.0), s.pop_due(1.0)] == ["C", "A", "B"]


def test_heap_compaction_bounds_memory_under_churn() -> None:
    s = Scheduler()
    for i in range(10_000):
        s.mark_ready("A", ONE, float(i))
        s.mark_idle("A")
        s.mark_ready("B", ONE, float(i))
        s.reschedule("B", ONE, float(i))
    assert s.scheduled_count == 1
    assert len(s._heap) <= 2 * s.scheduled_count + 64
    assert s.next_due() == (9999.0, "B")


def test_prune_drops_only_idle_senders_with_past_tat() -> None:
    s = Scheduler()
    s.record_submit("past", 1, 0.0, ONE)  # tat 1
    s.record_submit("future", 1, 9.0, ONE)  # tat 10
    s.record_submit("scheduled", 1, 0.0, ONE)
    s.mark_ready("scheduled", ONE, 0.0)
    s.record_submit("flying", 1, 0.0, ONE)
    s.mark_ready("flying", ONE, 0.0)
    s.mark_ready("scheduled", ONE, 0.0)
    assert s.pop_due(1.0) == "scheduled"  # first scheduled ...
    s.reschedule("scheduled", ONE, 1.0)
    assert s.pop_due(1.0) == "flying"  # ... "flying" stays in flight
    assert s.prune(5.0) == 1
    assert s.tat("past") is None
    assert s.tat("future") == 10.0
    assert s.tat("scheduled") == 1.0
    assert s.tat("flying") == 1.0
    # Behaviour is unchanged for the pruned sender: earliest is "now" with or without its past tat.
    assert s.earliest("past", 5.0) == 5.0


def test_forget_drops_tat_and_schedule() -> None:
    s = Scheduler()
    s.record_submit("A", 1, 0.0, ONE)
    s.mark_ready("A", ONE, 0.0)
    s.forget("A")
    assert s.tat("A") is None
    assert s.scheduled_count == 0
    assert s.next_due() is None


# -- the log checkers themselves ----------------------------------------------------------------------------------


def test_violations_counts_early_submissions() -> None:
    assert violations([], ONE) == 0
    assert violations([(0.0, 1), (1.0, 1), (2.0, 3), (5.0, 1)], ONE) == 0
    # Measured from the previous *actual* submission: one early message is one violation.
    assert violations([(0.0, 1), (0.5, 1), (1.5, 3), (4.5, 1)], ONE) == 1
    assert violations([(0.0, 1), (0.5, 1), (1.0, 3), (3.0, 1)], ONE) == 3
    assert violations([(0.0, 1), (0.999, 1)], ONE, tolerance=0.01) == 0
    assert violations([(0.0, 1), (0.98, 1)], ONE, tolerance=0.01) == 1
    assert violations([(0.0, 1)], ONE, initial_tat=1.0) == 1
    assert violations([(1.0, 1)], ONE, initial_tat=1.0) == 0


def test_lateness_measures_from_ready_or_previous_actual_submit() -> None:
    submits = [(0.0, 1), (1.5, 2), (3.5, 1), (10.0, 1)]
    ready = [0.0, 0.0, 0.0, 9.0]
    # #1: earliest max(0, 0+1) = 1 -> 0.5 late; #2: max(0, 1.5+2) = 3.5 -> on time (not charged again for #1's
    # delay); #3: max(9, 3.5+1) = 9 -> 1 late.
    assert lateness(submits, ready, ONE) == [0.0, 0.5, 0.0, 1.0]
    assert lateness([(2.0, 1)], [1.0], ONE, initial_tat=2.0) == [0.0]
    assert lateness([(0.5, 1), (1.0, 1)], [0.0, 0.0], ONE) == [0.5, -0.5]
    with pytest.raises(ValueError, match="ready times"):
        lateness([(0.0, 1)], [], ONE)


# -- properties ---------------------------------------------------------------------------------------------------

RATES = st.sampled_from([Rate(0.5), Rate(1.0), Rate(3.0), Rate(0.3), Rate(7.0), Rate(100.0)])
SENDERS = ["A", "B", "C", "D"]


@st.composite
def workloads(draw: st.DrawFn) -> tuple[dict[str, Rate], list[Arrival]]:
    rates = {s: draw(RATES) for s in SENDERS}
    # Times on a coarse grid (many exact ties with tat and other arrivals) mixed with arbitrary floats.
    grid = st.integers(0, 40).map(lambda n: n * 0.25)
    times = st.one_of(grid, st.floats(0.0, 20.0, allow_nan=False, allow_infinity=False))
    arrival = st.tuples(times, st.sampled_from(SENDERS), st.integers(1, 6))
    return rates, draw(st.lists(arrival, max_size=60))


@settings(max_examples=300, deadline=None)
@given(workloads())
def test_property_never_early_never_late(workload: tuple[dict[str, Rate], list[Arrival]]) -> None:
    rates, arrivals = workload
    sim = Sim(rates, check_idle=True).run(arrivals)
    sim.assert_exact()
    # Per sender, messages left in acceptance order.
    for sender in SENDERS:
        accepted = sorted(((t, k) for t, s, k in arrivals if s == sender), key=lambda a: a[0])
        assert sim.ready.get(sender, []) == [t for t, _ in accepted]
        assert [k for _, k in sim.log.get(sender, [])] == [k for _, k in accepted]


@settings(max_examples=200, deadline=None)
@given(workloads(), st.floats(0.0, 30.0, allow_nan=False))
def test_property_restored_tat(workload: tuple[dict[str, Rate], list[Arrival]], tat: float) -> None:
    rates, arrivals = workload
    sim = Sim(rates)
    for sender in SENDERS:
        sim.scheduler.set_tat(sender, tat)
    sim.run(arrivals)
    sim.assert_exact(initial_tats=dict.fromkeys(SENDERS, tat))


@settings(max_examples=200, deadline=None)
@given(workloads())
def test_property_senders_are_independent(workload: tuple[dict[str, Rate], list[Arrival]]) -> None:
    rates, arrivals = workload
    together = Sim(rates).run(arrivals)
    for sender in SENDERS:
        alone = Sim(rates).run([a for a in arrivals if a[1] == sender])
        assert alone.log.get(sender) == together.log.get(sender)


@settings(max_examples=100, deadline=None)
@given(workloads())
def test_property_prune_does_not_change_behaviour(workload: tuple[dict[str, Rate], list[Arrival]]) -> None:
    rates, arrivals = workload
    plain = Sim(rates).run(arrivals)
    pruned = Sim(rates, prune=True).run(arrivals)
    assert plain.log == pruned.log
