"""Reassembly of concatenated MO messages: order, duplicates, timeouts."""

from __future__ import annotations

from kittiwake.carriers.reassembly import Part, Reassembler


def part(index: int, text: str, total: int = 3, ref: int = 7) -> Part:
    return Part("+14159352345", "+14158141829", ref, total, index, text)


def test_parts_in_any_order_make_one_message() -> None:
    r = Reassembler()
    assert r.add(part(3, "c"), 0.0) is None
    assert r.add(part(1, "a"), 0.1) is None
    assert r.add(part(2, "b"), 0.2) == "abc"
    assert r.pending == 0


def test_duplicate_part_is_dropped_and_counted() -> None:
    r = Reassembler()
    r.add(part(1, "a"), 0.0)
    assert r.add(part(1, "a"), 0.1) is None
    r.add(part(2, "b"), 0.2)
    assert r.add(part(3, "c"), 0.3) == "abc"
    assert r.duplicates == 1


def test_incomplete_message_times_out() -> None:
    r = Reassembler(timeout=5)
    r.add(part(1, "a"), 0.0)
    assert r.expire(6.0) == 1 and r.pending == 0
    assert r.add(part(2, "b"), 6.1) is None  # a late part starts a new, incomplete message


def test_references_and_senders_are_separate() -> None:
    r = Reassembler()
    r.add(part(1, "a", total=2, ref=1), 0)
    r.add(part(1, "x", total=2, ref=2), 0)
    assert r.add(part(2, "y", total=2, ref=2), 0) == "xy"
    assert r.add(part(2, "b", total=2, ref=1), 0) == "ab"


def test_single_part_and_bad_index() -> None:
    r = Reassembler()
    assert r.add(part(1, "solo", total=1), 0) == "solo"
    assert r.add(part(4, "?", total=3), 0) is None
