"""The SMPP package's exception tree (modelled on h11's: one root, local vs remote protocol errors).

- :class:`LocalProtocolError`: *we* tried to do something illegal (encode a field that is too long, send a
  submit_sm before binding, overflow the window). A bug or a misuse in the caller; nothing goes on the wire.
- :class:`RemoteProtocolError`: the *peer* sent malformed or illegal input. It carries what is needed to
  answer it: the ``command_status`` to reply with (SMPP 3.4 section 5.1.3), and the ``sequence_number`` and
  ``command_id`` of the offending PDU when the header could be read. ``fatal`` is true when the byte stream
  can no longer be framed (a bad command_length): the connection must then be closed.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "RemoteProtocolError", "SmppError"]


class SmppError(Exception):
    """Root of every error raised by :mod:`kittiwake.smpp`."""


class LocalProtocolError(SmppError):
    """The caller asked for something SMPP 3.4 does not allow in this state or with these values."""


class RemoteProtocolError(SmppError):
    """The peer sent something malformed or illegal."""

    def __init__(
        self,
        message: str,
        command_status: int,
        *,
        sequence_number: int | None = None,
        command_id: int | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.command_status = command_status
        self.sequence_number = sequence_number
        self.command_id = command_id
        self.fatal = fatal

    def __repr__(self) -> str:
        return (
            f"RemoteProtocolError({self.args[0]!r}, command_status=0x{self.command_status:08X}, "
            f"sequence_number={self.sequence_number}, command_id={self.command_id}, fatal={self.fatal})"
        )
