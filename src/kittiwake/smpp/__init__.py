"""SMPP 3.4 for an ESME, sans-I/O: codec (``pdu``, ``tlv``), framing, session state machine, receipts, segments.

Nothing in this package reads a clock, a socket or the environment; the asyncio adapter lives in
``kittiwake.carriers``. Errors: :class:`SmppError` and its two children, :class:`LocalProtocolError` (our
misuse) and :class:`RemoteProtocolError` (the peer's malformed or illegal input).
"""

from kittiwake.smpp.errors import LocalProtocolError, RemoteProtocolError, SmppError

__all__ = ["LocalProtocolError", "RemoteProtocolError", "SmppError"]
