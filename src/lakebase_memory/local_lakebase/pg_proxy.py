"""The instance's PostgreSQL port: TLS and token authentication in front of the embedded server.

The embedded server has no OpenSSL and trusts its Unix socket, so this proxy does what Lakebase's
front end does: it insists on TLS, asks for a cleartext password (the database credential),
checks it belongs to the user named in the startup packet and has not expired, then replays the
startup packet on the server's socket and relays bytes both ways. Everything after the password
(AuthenticationOk, ParameterStatus, BackendKeyData, errors such as `role "x" does not exist`)
comes from the real server unchanged. A credential is checked only at login, so a connection
outlives the credential it opened with, as on Lakebase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from lakebase_memory.local_lakebase import pg_wire
from lakebase_memory.local_lakebase.pg_wire import ProtocolError

logger = logging.getLogger(__name__)

LOGIN_TIMEOUT = 60.0  # PostgreSQL's authentication_timeout
CHUNK = 64 * 1024

# (user, password) -> may this password log in as this user?
Authenticator = Callable[[str, str], bool]


class PgProxy:
    """Listens on a bound TCP socket; `backend_socket` is the server's Unix socket file."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, backend_socket: Path, authenticate: Authenticator
    ) -> None:
        self._ssl = ssl_context
        self._backend_socket = backend_socket
        self._authenticate = authenticate
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    # --- one client -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._clients.add(writer)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass  # the client went away or stalled: nothing to tell anyone
        except ProtocolError as error:
            logger.info("local Lakebase proxy: %s", error)
            message = pg_wire.error_response(pg_wire.PROTOCOL_VIOLATION, str(error))
            await _send_and_close(writer, message)
        finally:
            self._clients.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(LOGIN_TIMEOUT):
            packet, encrypted = await self._negotiate(reader, writer)
            if packet is None:
                return
            if not encrypted:
                # Lakebase accepts TLS connections only (clients use sslmode=require).
                await _send_and_close(
                    writer,
                    pg_wire.error_response(
                        pg_wire.INVALID_AUTHORIZATION,
                        "connection is insecure: this server accepts only SSL connections "
                        "(try sslmode=require)",
                    ),
                )
                return
            parameters = pg_wire.startup_parameters(packet)
            user = parameters.get("user", "")
            if not user:
                await _send_and_close(
                    writer,
                    pg_wire.error_response(
                        pg_wire.INVALID_AUTHORIZATION,
                        "no PostgreSQL user name specified in startup packet",
                    ),
                )
                return
            writer.write(pg_wire.AUTH_CLEARTEXT_PASSWORD)
            await writer.drain()
            kind, payload = await pg_wire.read_message(reader)
            if kind != b"p":
                raise ProtocolError(f"expected a password message, got {kind!r}")
            password = payload.rstrip(b"\0").decode(errors="replace")
            if not self._authenticate(user, password):
                await _send_and_close(
                    writer,
                    pg_wire.error_response(
                        pg_wire.INVALID_PASSWORD,
                        f'password authentication failed for user "{user}"',
                    ),
                )
                return
            try:
                backend_reader, backend_writer = await asyncio.open_unix_connection(
                    str(self._backend_socket)
                )
            except OSError as error:
                logger.warning("local Lakebase proxy cannot reach PostgreSQL: %s", error)
                await _send_and_close(
                    writer,
                    pg_wire.error_response(
                        pg_wire.CANNOT_CONNECT_NOW, "the database system is not available"
                    ),
                )
                return
        # The server trusts its socket: the same startup packet logs in as the same role.
        backend_writer.write(packet)
        await _relay(reader, writer, backend_reader, backend_writer)

    async def _negotiate(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bytes | None, bool]:
        """Answer encryption requests until the StartupMessage; (packet, is it TLS)."""
        encrypted = False
        while True:
            packet = await pg_wire.read_startup_packet(reader)
            code = pg_wire.request_code(packet)
            if code == pg_wire.SSL_REQUEST and not encrypted:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self._ssl)
                encrypted = True
            elif code == pg_wire.GSSENC_REQUEST and not encrypted:
                writer.write(b"N")  # no GSSAPI: the client goes on with SSL or plain
                await writer.drain()
            elif code == pg_wire.CANCEL_REQUEST:
                await self._forward_cancel(packet)
                return None, encrypted
            elif code in (pg_wire.SSL_REQUEST, pg_wire.GSSENC_REQUEST):
                raise ProtocolError("encryption requested twice")
            else:
                return packet, encrypted

    async def _forward_cancel(self, packet: bytes) -> None:
        # The key came from the real server's BackendKeyData: it knows what to cancel.
        with contextlib.suppress(OSError):
            _, backend_writer = await asyncio.open_unix_connection(str(self._backend_socket))
            backend_writer.write(packet)
            await backend_writer.drain()
            backend_writer.close()


async def _relay(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    backend_reader: asyncio.StreamReader,
    backend_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(CHUNK):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            sink.close()  # one side ended: end the other, so the peer sees it too

    try:
        await asyncio.gather(
            pipe(client_reader, backend_writer), pipe(backend_reader, client_writer)
        )
    finally:
        backend_writer.close()


async def _send_and_close(writer: asyncio.StreamWriter, message: bytes) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        writer.write(message)
        await writer.drain()
    writer.close()
