"""Delivery receipt parsing, message id matching across hex/decimal, and the stat -> Twilio outcome table."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kittiwake.smpp.receipt import (
    Receipt,
    canonical_message_id,
    message_state_to_stat,
    normalise_message_id,
    parse_receipt,
    stat_to_status,
)


def test_standard_receipt_with_seconds_in_done_date() -> None:
    r = parse_receipt(
        "id:0123ABC sub:001 dlvrd:001 submit date:2611300405 done date:261130040512 stat:DELIVRD err:000 text:hello"
    )
    assert r == Receipt(
        message_id="0123ABC",
        submitted=1,
        delivered=1,
        submit_date=datetime(2026, 11, 30, 4, 5, tzinfo=UTC),
        done_date=datetime(2026, 11, 30, 4, 5, 12, tzinfo=UTC),
        stat="DELIVRD",
        err="000",
        text="hello",
    )


def test_bytes_input_and_lower_case_keys() -> None:
    r = parse_receipt(b"ID:42 SUB:1 DLVRD:0 Submit Date:2601010000 DONE DATE:2601010001 Stat:undeliv Err:0A3 Text:")
    assert r.message_id == "42"
    assert r.delivered == 0
    assert r.stat == "UNDELIV"
    assert r.err == "0A3"
    assert r.text == ""
    assert r.done_date == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


def test_extra_spaces_missing_fields_and_odd_values() -> None:
    r = parse_receipt("  id:  98765   stat:EXPIRED   err:xyz  submit date:bogus done date:2613300000 ")
    assert r.message_id == "98765"
    assert r.stat == "EXPIRED"
    assert r.err == "xyz"
    assert r.submitted is None and r.delivered is None and r.text is None
    assert r.submit_date is None
    assert r.done_date is None  # month 13


def test_four_digit_year_form() -> None:
    assert parse_receipt("id:1 done date:20261130040512").done_date == datetime(2026, 11, 30, 4, 5, 12, tzinfo=UTC)


def test_text_is_taken_verbatim_even_if_it_looks_like_keys() -> None:
    r = parse_receipt("id:7 stat:DELIVRD err:000 text:my id:8 stat:UNDELIV")
    assert r.message_id == "7" and r.stat == "DELIVRD"
    assert r.text == "my id:8 stat:UNDELIV"


def test_keys_inside_words_are_not_keys() -> None:
    r = parse_receipt("msgid:5 id:6 stat:DELIVRD")
    assert r.message_id == "6"


def test_garbage_yields_an_empty_receipt() -> None:
    assert parse_receipt("hello there") == Receipt(None, None, None, None, None, None, None, None)


@given(st.text())
def test_parser_never_raises(text: str) -> None:
    parse_receipt(text)


@given(st.binary())
def test_parser_never_raises_on_bytes(data: bytes) -> None:
    parse_receipt(data)


# --- message ids ---


def test_canonical_form() -> None:
    assert canonical_message_id(" 0123ABC ") == "123abc"
    assert canonical_message_id("000") == "0"
    assert canonical_message_id("") == ""


def test_hex_id_gets_its_decimal_form() -> None:
    assert normalise_message_id("0123ABC") == {"123abc", str(0x123ABC)}


def test_hex_in_submit_resp_matches_decimal_in_receipt() -> None:
    submit_resp_id = "1A2B"
    receipt_id = str(0x1A2B)  # "6699"
    assert normalise_message_id(submit_resp_id) & normalise_message_id(receipt_id)


def test_digits_only_hex_id_matches_decimal_receipt() -> None:
    # "1234" in hex is 4660: a digits-only id is offered in both readings.
    assert "4660" in normalise_message_id("1234")
    assert normalise_message_id("1234") & normalise_message_id("4660")


def test_decimal_in_submit_resp_matches_hex_in_receipt() -> None:
    assert normalise_message_id("6699") & normalise_message_id("00001a2b")


def test_leading_zeros_and_case_match() -> None:
    assert normalise_message_id("000ABC") & normalise_message_id("abc")


def test_non_numeric_ids_are_kept_as_they_are() -> None:
    assert normalise_message_id("msg-42-xyz") == {"msg-42-xyz"}
    assert normalise_message_id("f" * 64) == {"f" * 64}  # too long to be a number
    assert normalise_message_id("") == set()


@given(st.integers(min_value=0, max_value=2**64))
def test_any_number_matches_across_bases(n: int) -> None:
    assert normalise_message_id(format(n, "X")) & normalise_message_id(str(n))
    assert normalise_message_id(format(n, "x").zfill(10)) & normalise_message_id(str(n))


# --- outcome ---


@pytest.mark.parametrize(
    ("stat", "outcome"),
    [
        ("DELIVRD", (True, None)),
        ("delivrd", (True, None)),
        ("DELIVERED", (True, None)),
        ("UNDELIV", (False, 30003)),
        ("EXPIRED", (False, 30003)),
        ("REJECTD", (False, 30007)),
        ("DELETED", (False, 30008)),
        ("UNKNOWN", (False, 30008)),
        ("ACCEPTD", (None, None)),
        ("ENROUTE", (None, None)),
        ("WHATEVER", (None, None)),
        (None, (None, None)),
    ],
)
def test_stat_to_status(stat: str | None, outcome: tuple[bool | None, int | None]) -> None:
    assert stat_to_status(stat) == outcome


def test_message_state_tlv_values() -> None:
    assert message_state_to_stat(2) == "DELIVRD"
    assert message_state_to_stat(5) == "UNDELIV"
    assert message_state_to_stat(8) == "REJECTD"
    assert message_state_to_stat(99) is None
    assert stat_to_status(message_state_to_stat(3)) == (False, 30003)
