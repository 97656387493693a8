"""The few PostgreSQL wire-protocol messages the proxy reads or writes itself."""

from __future__ import annotations

import asyncio
import struct

# Request codes sent in place of a protocol version in the first packet.
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP_PACKET = 10_000  # PostgreSQL's own limit

AUTH_CLEARTEXT_PASSWORD = b"R" + struct.pack("!ii", 8, 3)

# SQLSTATEs
INVALID_AUTHORIZATION = "28000"
INVALID_PASSWORD = "28P01"
PROTOCOL_VIOLATION = "08P01"
CANNOT_CONNECT_NOW = "57P03"


class ProtocolError(Exception):
    """The client sent something that is not PostgreSQL."""


async def read_startup_packet(reader: asyncio.StreamReader) -> bytes:
    """A whole untyped first-phase packet (StartupMessage, SSLRequest, CancelRequest...),
    length prefix included."""
    head = await reader.readexactly(4)
    (length,) = struct.unpack("!i", head)
    if not 8 <= length <= MAX_STARTUP_PACKET:
        raise ProtocolError(f"invalid startup packet length {length}")
    return head + await reader.readexactly(length - 4)


def request_code(packet: bytes) -> int:
    return int(struct.unpack("!i", packet[4:8])[0])


def startup_parameters(packet: bytes) -> dict[str, str]:
    """The name/value pairs of a StartupMessage."""
    fields = packet[8:].split(b"\0")
    # The list ends with the terminating empty name and the split's empty tail.
    names, values = fields[0:-2:2], fields[1:-2:2]
    pairs = zip(names, values, strict=False)
    return {n.decode(errors="replace"): v.decode(errors="replace") for n, v in pairs}


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One typed message: (type byte, payload)."""
    kind = await reader.readexactly(1)
    (length,) = struct.unpack("!i", await reader.readexactly(4))
    if not 4 <= length <= MAX_STARTUP_PACKET:
        raise ProtocolError(f"invalid message length {length}")
    return kind, await reader.readexactly(length - 4)


def error_response(code: str, message: str, severity: str = "FATAL") -> bytes:
    """An ErrorResponse as the server sends it (localized and non-localized severity)."""
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body
