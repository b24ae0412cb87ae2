"""Parsing a messaging TwiML document into typed verbs (pure: bytes or str in, :data:`Verb` list out).

The rules, from the TwiML docs as digested in twilio-api.md §5:

* The root is ``<Response>`` (element names are case-sensitive, attributes camelCase); its optional
  ``version`` attribute is a 2008 TwiML relic (2008-08-01 or 2010-04-01).
* Verbs run top to bottom; the valid verbs of an SMS reply are ``<Message>``, ``<Sms>`` and ``<Redirect>``
  (Twilio 14110). Everything after the first ``<Redirect>`` is never reached, so it is neither checked nor returned.
* ``<Sms>`` holds plain text (≤160 characters); ``<Message>`` holds plain text or ``<Body>``, plus up to ten
  ``<Media>`` (body ≤1600 characters); ``<Redirect>`` holds a URL. Nothing else nests anywhere.

The XML is parsed with defusedxml, which refuses entity declarations (billion laughs, quadratic blowup) and
external references; the size cap is applied before any parsing. Every failure is a :class:`TwimlError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as DefusedET

from kittiwake.twiml.errors import (
    DOCUMENT_PARSE_FAILURE,
    INVALID_BODY,
    INVALID_METHOD,
    INVALID_URL_FORMAT,
    INVALID_VERB_FOR_REPLY,
    INVALID_VERSION,
    ROOT_NOT_RESPONSE,
    SCHEMA_VALIDATION,
    TwimlError,
)
from kittiwake.twiml.verbs import (
    DEFAULT_METHOD,
    MEDIA_LIMIT,
    MESSAGE_BODY_LIMIT,
    MESSAGE_VERB_LIMIT,
    METHODS,
    SMS_BODY_LIMIT,
    MessageVerb,
    RedirectVerb,
    SmsVerb,
    Verb,
)

DEFAULT_MAX_BYTES = 65536

# Attribute name in the document -> keyword of the verb dataclass. <Sms> and <Message> share the set (§5.1, §5.2).
_MESSAGE_ATTRIBUTES: Mapping[str, str] = {
    "to": "to",
    "from": "from_",
    "action": "action",
    "method": "method",
    "statusCallback": "status_callback",
}
_REDIRECT_ATTRIBUTES: Mapping[str, str] = {"method": "method"}
_RESPONSE_ATTRIBUTES: Mapping[str, str] = {"version": "version"}
# The two TwiML versions Twilio ever had (error 30028 names exactly these API versions).
_VERSIONS = frozenset({"2008-08-01", "2010-04-01"})
# Voice verbs: real TwiML, but not valid in an SMS reply (14110). Any other unknown name is a schema error (12200).
_VOICE_VERBS = frozenset(
    {
        "Say", "Play", "Pause", "Gather", "Record", "Dial", "Hangup", "Reject", "Enqueue", "Leave",
        "Refer", "Connect", "Start", "Stop", "Pay", "Prompt", "Echo", "Queue",
    }
)  # fmt: skip


def parse_twiml(document: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Verb]:
    """The verbs of a messaging TwiML document, in order, up to and including the first ``<Redirect>``.

    Raises :class:`TwimlError` for anything Kittiwake will not act on (codes in :mod:`kittiwake.twiml.errors`).
    """
    _check_size(document, max_bytes)
    root = _parse_xml(document)
    _check_root(root)
    verbs: list[Verb] = []
    for element in root:
        verb = _parse_verb(element)
        verbs.append(verb)
        if isinstance(verb, RedirectVerb):
            break  # §5: everything after <Redirect> is unreachable, so it is ignored, even its tail text
        _reject_text(element.tail, "between verbs")
        if len(verbs) > MESSAGE_VERB_LIMIT:
            # Kittiwake's own cap (verbs.MESSAGE_VERB_LIMIT); Twilio documents none, so the schema code stands in.
            raise TwimlError(SCHEMA_VALIDATION, f"more than {MESSAGE_VERB_LIMIT} <Message>/<Sms> verbs in one answer")
    return verbs


def _check_size(document: bytes | str, max_bytes: int) -> None:
    # A str of more characters than the cap is over it in any encoding; only shorter ones need encoding to count.
    if isinstance(document, bytes) or len(document) > max_bytes:
        size = len(document)
    else:
        size = len(document.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise TwimlError(DOCUMENT_PARSE_FAILURE, f"document is {size} bytes; the limit is {max_bytes}")


def _parse_xml(document: bytes | str) -> Element:
    # defusedxml raises EntitiesForbidden / ExternalReferenceForbidden (ValueError subclasses) for the XML bombs;
    # expat raises ParseError; a bad encoding declaration gives LookupError or ValueError (UnicodeError included).
    try:
        root: Element = DefusedET.fromstring(document)
    except (ParseError, ValueError, LookupError) as exc:
        raise TwimlError(DOCUMENT_PARSE_FAILURE, f"not a well-formed XML document: {exc}") from exc
    return root


def _check_root(root: Element) -> None:
    if root.tag != "Response":
        raise TwimlError(ROOT_NOT_RESPONSE, f"root element is <{root.tag}>, not <Response>")
    attributes = _attributes(root, _RESPONSE_ATTRIBUTES)
    version = attributes.get("version")
    if version is not None and version not in _VERSIONS:
        raise TwimlError(INVALID_VERSION, f"<Response version={version!r}> is not one of {sorted(_VERSIONS)}")
    _reject_text(root.text, "inside <Response>")


def _parse_verb(element: Element) -> Verb:
    if element.tag == "Message":
        return _parse_message(element)
    if element.tag == "Sms":
        return _parse_sms(element)
    if element.tag == "Redirect":
        return _parse_redirect(element)
    if element.tag in _VOICE_VERBS:
        raise TwimlError(INVALID_VERB_FOR_REPLY, f"<{element.tag}> is a voice verb; use Message, Sms or Redirect")
    raise TwimlError(SCHEMA_VALIDATION, f"unknown verb <{element.tag}>")


def _parse_sms(element: Element) -> SmsVerb:
    attributes = _attributes(element, _MESSAGE_ATTRIBUTES)
    _reject_children(element)
    body = (element.text or "").strip()
    _check_body(body, has_media=False, limit=SMS_BODY_LIMIT, verb="Sms")
    return SmsVerb(body=body, method=_method(attributes), **_optional(attributes))


def _parse_message(element: Element) -> MessageVerb:
    attributes = _attributes(element, _MESSAGE_ATTRIBUTES)
    bodies, media = _message_nouns(element)
    text = "".join(_direct_text(element)).strip()
    if len(bodies) > 1:
        raise TwimlError(SCHEMA_VALIDATION, "<Message> has more than one <Body>")
    if bodies and text:
        raise TwimlError(SCHEMA_VALIDATION, "<Message> has both plain text and a <Body>")
    if len(media) > MEDIA_LIMIT:
        raise TwimlError(SCHEMA_VALIDATION, f"<Message> has {len(media)} <Media>; the limit is {MEDIA_LIMIT}")
    body = bodies[0] if bodies else text
    _check_body(body, has_media=bool(media), limit=MESSAGE_BODY_LIMIT, verb="Message")
    return MessageVerb(body=body, media=tuple(media), method=_method(attributes), **_optional(attributes))


def _message_nouns(element: Element) -> tuple[list[str], list[str]]:
    """The texts of the ``<Body>`` and ``<Media>`` nouns of a ``<Message>`` (§5.2); any other child is an error."""
    bodies: list[str] = []
    media: list[str] = []
    for child in element:
        if child.tag == "Body":
            bodies.append(_noun_text(child))
        elif child.tag == "Media":
            url = _noun_text(child)
            if not url:
                raise TwimlError(SCHEMA_VALIDATION, "<Media> holds no URL")
            media.append(url)
        else:
            raise TwimlError(SCHEMA_VALIDATION, f"<{child.tag}> cannot be nested in <Message>")
    return bodies, media


def _parse_redirect(element: Element) -> RedirectVerb:
    attributes = _attributes(element, _REDIRECT_ATTRIBUTES)
    _reject_children(element)
    url = (element.text or "").strip()
    if not url:
        raise TwimlError(INVALID_URL_FORMAT, "<Redirect> holds no URL")
    return RedirectVerb(url=url, method=_method(attributes))


def _attributes(element: Element, allowed: Mapping[str, str]) -> dict[str, str]:
    """The element's attributes keyed by dataclass field; blank values count as absent."""
    found: dict[str, str] = {}
    for name, value in element.attrib.items():
        if name not in allowed:
            raise TwimlError(SCHEMA_VALIDATION, f"unknown attribute {name!r} on <{element.tag}>")
        if value.strip():
            found[allowed[name]] = value.strip()
    return found


def _optional(attributes: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in attributes.items() if key != "method"}


def _method(attributes: dict[str, str]) -> str:
    # 14104 "Invalid Method attribute": "Method attribute may only be "GET" or "POST"". Input case is forgiven.
    method = attributes.get("method", DEFAULT_METHOD).upper()
    if method not in METHODS:
        raise TwimlError(INVALID_METHOD, f"method {attributes['method']!r} is not GET or POST")
    return method


def _check_body(body: str, *, has_media: bool, limit: int, verb: str) -> None:
    # 14103 "Invalid Body": "Empty SMS body with no media URL specified", "SMS Body exceeding 1600 characters".
    if not body and not has_media:
        raise TwimlError(INVALID_BODY, f"<{verb}> has no body and no media")
    if len(body) > limit:
        raise TwimlError(INVALID_BODY, f"<{verb}> body is {len(body)} characters; the limit is {limit}")


def _noun_text(element: Element) -> str:
    if element.attrib:
        name = next(iter(element.attrib))
        raise TwimlError(SCHEMA_VALIDATION, f"unknown attribute {name!r} on <{element.tag}>")
    _reject_children(element)
    return (element.text or "").strip()


def _reject_children(element: Element) -> None:
    for child in element:
        raise TwimlError(SCHEMA_VALIDATION, f"<{child.tag}> cannot be nested in <{element.tag}>")


def _direct_text(element: Element) -> Iterator[str]:
    """The text directly inside ``element``: before its first child and after each child."""
    yield element.text or ""
    for child in element:
        yield child.tail or ""


def _reject_text(text: str | None, where: str) -> None:
    if text is not None and text.strip():
        raise TwimlError(SCHEMA_VALIDATION, f"unexpected text {text.strip()[:40]!r} {where}")
