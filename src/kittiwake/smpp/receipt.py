"""Delivery receipts: parse the ``id:... stat:...`` text, match message ids, map the outcome to Twilio.

SMPP 3.4 Appendix B gives the de-facto receipt format carried in a deliver_sm with esm_class message type
"SMSC Delivery Receipt" (5.2.12, 0x04)::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...

Appendix B calls it vendor-specific, and real SMSCs deviate: ids in hex or decimal (with or without leading
zeros), keys in any case, dates with seconds (YYMMDDhhmmss) or as YYYYMMDDhhmmss, ``err`` codes that are not
decimal (``err:0A3``, ``err:xyz``), fields missing or in another order, runs of spaces. :func:`parse_receipt`
accepts all of these and never raises: what it cannot read is None. Receipt dates carry no zone; they are
returned as UTC (the common SMSC setting), and an impossible date is None rather than an error.

Message id matching (:func:`normalise_message_id`): several SMSCs report the id in hex in submit_sm_resp
and in decimal in the receipt (or the reverse; Kannel's ``msg-id-type`` option exists for this). Store the
id from submit_sm_resp under every form it returns and look the receipt's forms up against them; prefer an
exact match on :func:`canonical_message_id` when there is one.

Twilio outcome of a final receipt (:func:`stat_to_status`), ``stat`` word or message_state TLV (5.2.28):

==========  =================  ==========  ===========================================================
stat        message_state      delivered   Twilio ErrorCode, why
==========  =================  ==========  ===========================================================
DELIVRD     2 DELIVERED        True        none: status ``delivered``
UNDELIV     5 UNDELIVERABLE    False       30003 Unreachable destination handset: the generic "could not
                                           deliver"; 30005 (unknown handset) would tell apps to drop a
                                           number that may only have been switched off
EXPIRED     3 EXPIRED          False       30003 Unreachable destination handset: the SMSC retried until
                                           the validity period ran out, i.e. the handset stayed away
REJECTD     8 REJECTED         False       30007 Message filtered: the network refused the message itself
DELETED     4 DELETED          False       30008 Unknown error: removed by the SMSC or an operator
UNKNOWN     7 UNKNOWN          False       30008 Unknown error
ACCEPTD     6 ACCEPTED         None        not final (many SMSCs send it as an intermediate notification)
ENROUTE     1 ENROUTE          None        not final
other       other              None        not final: an unknown word must not end the message's life
==========  =================  ==========  ===========================================================

``delivered`` False maps to Twilio status ``undelivered`` (the carrier accepted the message and then could not
deliver it), not ``failed`` (which Twilio reserves for messages that never left).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from kittiwake.smpp.constants import MessageState

__all__ = [
    "Receipt",
    "canonical_message_id",
    "message_state_to_stat",
    "normalise_message_id",
    "parse_receipt",
    "stat_to_status",
]


@dataclass(frozen=True)
class Receipt:
    message_id: str | None  # as sent, stripped; match it with normalise_message_id
    submitted: int | None  # sub: messages originally submitted (usually 1)
    delivered: int | None  # dlvrd: messages delivered
    submit_date: datetime | None
    done_date: datetime | None
    stat: str | None  # upper-case: DELIVRD, UNDELIV, ...
    err: str | None  # raw: "000", "0A3", "xyz"
    text: str | None  # the first characters of the message, if the SMSC includes them


# A key starts a field only at the start or after whitespace ("xid:" is not "id:"). "text:" runs to the end,
# so anything inside the message text that looks like a key is left alone.
_KEY = re.compile(r"(?<!\S)(id|sub|dlvrd|submit\s+date|done\s+date|stat|err|text)\s*:", re.IGNORECASE)


def _fields(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for i, m in enumerate(matches):
        key = " ".join(m.group(1).lower().split())
        if key == "text":
            found.setdefault(key, text[m.end() :].lstrip(" "))
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        found.setdefault(key, text[m.end() : end].strip())
    return found


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdecimal() and value.isascii() else None


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    digits = value.strip()
    if not (digits.isascii() and digits.isdecimal()):
        return None
    if len(digits) in (10, 12):  # YYMMDDhhmm[ss]
        digits = "20" + digits
    if len(digits) == 12:  # YYYYMMDDhhmm
        digits += "00"
    if len(digits) != 14:
        return None
    try:
        return datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


def parse_receipt(text: str | bytes) -> Receipt:
    """Parse a receipt's short_message (bytes are read as Latin-1, which accepts any octet)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    f = _fields(text)
    stat = f.get("stat")
    return Receipt(
        message_id=f.get("id") or None,
        submitted=_int(f.get("sub")),
        delivered=_int(f.get("dlvrd")),
        submit_date=_date(f.get("submit date")),
        done_date=_date(f.get("done date")),
        stat=stat.upper() if stat else None,
        err=f.get("err") or None,
        text=f.get("text"),
    )


_HEX = frozenset("0123456789abcdef")
_MAX_CONVERTIBLE = 32  # ids longer than this are not numbers; leave them alone


def canonical_message_id(message_id: str) -> str:
    """Lower-case, surrounding spaces and leading zeros removed ("0" stays "0")."""
    s = message_id.strip().lower()
    stripped = s.lstrip("0")
    return stripped or ("0" if s else "")


def normalise_message_id(message_id: str) -> set[str]:
    """Every form an SMSC may use for this id: the canonical form, plus its decimal value if it reads as hex
    and its hex form if it reads as decimal. "0123ABC" -> {"123abc", "1194684"}; "6699" -> {"6699", "1a2b",
    "26265"} (a digits-only id could be either base, so both readings are offered)."""
    canonical = canonical_message_id(message_id)
    forms = {canonical} if canonical else set()
    if not canonical or len(canonical) > _MAX_CONVERTIBLE or not _HEX.issuperset(canonical):
        return forms
    forms.add(str(int(canonical, 16)))
    if canonical.isdecimal():
        forms.add(format(int(canonical), "x"))
    return forms


_STAT_ALIASES = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
}
_OUTCOME: dict[str, tuple[bool | None, int | None]] = {
    "DELIVRD": (True, None),
    "UNDELIV": (False, 30003),
    "EXPIRED": (False, 30003),
    "REJECTD": (False, 30007),
    "DELETED": (False, 30008),
    "UNKNOWN": (False, 30008),
    "ACCEPTD": (None, None),
    "ENROUTE": (None, None),
}
_STATE_TO_STAT = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}


def message_state_to_stat(state: int) -> str | None:
    """The receipt ``stat`` word for a message_state TLV value (5.2.28), or None if out of the table."""
    try:
        return _STATE_TO_STAT[MessageState(state)]
    except ValueError:
        return None


def stat_to_status(stat: str | None) -> tuple[bool | None, int | None]:
    """(delivered, Twilio error code) for a receipt ``stat``; (None, None) when not final. See the table."""
    if not stat:
        return (None, None)
    word = stat.strip().upper()
    return _OUTCOME.get(_STAT_ALIASES.get(word, word), (None, None))
