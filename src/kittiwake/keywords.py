"""Opt-out, opt-in and help keywords that Twilio handles on long codes (twilio-api.md §10). Pure.

A keyword is the whole message body as a single word, in any case (surrounding whitespace ignored).
"""

from __future__ import annotations

import enum

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})


class Keyword(enum.Enum):
    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"
    HELP = "help"


def keyword_of(body: str) -> Keyword | None:
    word = body.strip().upper()
    if word in OPT_OUT:
        return Keyword.OPT_OUT
    if word in OPT_IN:
        return Keyword.OPT_IN
    if word in HELP:
        return Keyword.HELP
    return None
