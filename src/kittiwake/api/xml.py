"""Twilio's XML format: the resource dicts rendered inside ``<TwilioResponse>`` (twilio-api.md §1, §2.4).

Keys become PascalCase elements (``num_segments`` -> ``NumSegments``), ``None`` an empty element,
booleans ``true``/``false``; list envelopes carry their paging metadata as lowercase attributes without
underscores (``numpages``, ``firstpageuri``), as the 2010 documents show.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from xml.sax.saxutils import escape, quoteattr

# Elements whose PascalCase spelling is not mechanical (Twilio writes SMS and MMS in capitals).
_ELEMENT_NAMES = {"sms": "SMS", "mms": "MMS", "sms_messages": "SMSMessages", "uri": "Uri"}

# XML 1.0 forbids most C0 control characters even escaped; a body may carry them, so they are replaced.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def element_name(key: str) -> str:
    special = _ELEMENT_NAMES.get(key)
    if special is not None:
        return special
    return "".join(part[:1].upper() + part[1:] for part in key.split("_"))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(_NOT_XML_CHAR.sub("\ufffd", str(value)))


def _element(name: str, value: Any, out: list[str]) -> None:
    if value is None or value == "":
        out.append(f"<{name}/>")
    elif isinstance(value, Mapping):
        out.append(f"<{name}>")
        for key, inner in value.items():
            _element(element_name(key), inner, out)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_text(value)}</{name}>")


def document(inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<TwilioResponse>{inner}</TwilioResponse>'


def render_instance(element: str, record: Mapping[str, Any]) -> str:
    out: list[str] = []
    _element(element, record, out)
    return document("".join(out))


def render_list(element: str, item_element: str, meta: Mapping[str, Any], items: Iterable[Mapping[str, Any]]) -> str:
    attributes = "".join(
        f" {key.replace('_', '')}={quoteattr('' if value is None else str(value))}" for key, value in meta.items()
    )
    out = [f"<{element}{attributes}>"]
    for item in items:
        _element(item_element, item, out)
    out.append(f"</{element}>")
    return document("".join(out))


def render_error(status: int, message: str, code: int, more_info: str) -> str:
    """``<RestException>`` with Status, Message, Code and MoreInfo (twilio-api.md §1.1)."""
    return document(
        f"<RestException><Code>{code}</Code><Message>{_text(message)}</Message>"
        f"<MoreInfo>{_text(more_info)}</MoreInfo><Status>{status}</Status></RestException>"
    )
