"""Cut a TCP byte stream into whole SMPP PDUs (sans-I/O: feed bytes, pull PDUs).

SMPP 3.4 2.2.1: a PDU starts with command_length (Int4), which counts the whole PDU including itself, so
framing needs only that field. A command_length below 16 (the header) or above the configured cap cannot
be framed: the stream position is lost for good, so the error is ``fatal`` and every later call raises it
again; the session answers with generic_nack ESME_RINVCMDLEN (section 4.3) and the adapter must close the
connection. A PDU that frames correctly but whose body is malformed raises a non-fatal
:class:`RemoteProtocolError`: it has already been consumed and the next PDU can be read.
"""

from __future__ import annotations

from kittiwake.smpp.constants import CommandStatus
from kittiwake.smpp.errors import RemoteProtocolError
from kittiwake.smpp.pdu import HEADER, Pdu, decode

__all__ = ["DEFAULT_MAX_PDU_LENGTH", "Framer"]

# The largest legitimate ESME PDU is a data_sm/submit_sm with a 64 KiB message_payload TLV plus fixed fields;
# 64 KiB is also what most SMSCs accept. Anything bigger is treated as a desynchronised stream.
DEFAULT_MAX_PDU_LENGTH = 64 * 1024


class Framer:
    """Accumulates bytes and returns one decoded PDU at a time."""

    def __init__(self, max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH) -> None:
        if max_pdu_length < HEADER.size:
            raise ValueError("max_pdu_length must allow at least the 16-octet header")
        self._max = max_pdu_length
        self._buf = bytearray()
        self._pos = 0
        self._broken: RemoteProtocolError | None = None

    @property
    def broken(self) -> bool:
        """True once a framing error made the stream unusable."""
        return self._broken is not None

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a PDU."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._broken is None:
            self._buf += data

    def next_frame(self) -> bytes | None:
        """The raw octets of the next whole PDU, or None if more data is needed."""
        if self._broken is not None:
            raise self._broken
        if self.buffered < HEADER.size:
            return None
        length, command_id, _status, seq = HEADER.unpack_from(self._buf, self._pos)
        if length < HEADER.size or length > self._max:
            self._broken = RemoteProtocolError(
                f"command_length {length} is outside {HEADER.size}..{self._max}",
                CommandStatus.ESME_RINVCMDLEN,
                sequence_number=seq,
                command_id=command_id,
                fatal=True,
            )
            self._buf.clear()
            self._pos = 0
            raise self._broken
        if self.buffered < length:
            return None
        frame = bytes(self._buf[self._pos : self._pos + length])
        self._pos += length
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536 and self._pos * 2 > len(self._buf):
            # Compact now and then rather than on every PDU (del buf[:n] is O(len)).
            del self._buf[: self._pos]
            self._pos = 0
        return frame

    def next_pdu(self) -> Pdu | None:
        """The next whole PDU, or None if more data is needed. RemoteProtocolError if malformed."""
        frame = self.next_frame()
        return None if frame is None else decode(frame)
