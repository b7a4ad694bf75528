"""A private Unix socket that carries a gRPC channel's connections over checked mutual TLS.

grpcio's own TLS cannot authenticate a SPIFFE server: its channel
credentials check the target's host name against the certificate's DNS
names (or common name) and never read a URI SAN, and no Python callback can
replace that check.  So the channel speaks plaintext HTTP/2 to this bridge,
on a Unix socket in a fresh ``0700`` directory (only our user can connect),
and the bridge opens each upstream connection with a spiffile SSL context
(:mod:`spiffile.tls`): the server's chain and SPIFFE ID are checked in the
handshake, before the bridge forwards a byte either way.  A refused server
is never sent the channel's first byte, and the channel sees its connection
fail (``UNAVAILABLE``).

One asyncio loop in one daemon thread serves every connection of a bridge;
each connection is a pair of copy tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from typing import Final

from spiffile.errors import ConfigurationError

__all__ = ["TlsBridge", "split_target"]

logger: Final = logging.getLogger("spiffile.integrations")

#: Bytes read from one side before they are written to the other.
_CHUNK: Final = 64 * 1024
#: Longest path a Unix socket can be bound to (``sun_path`` less its NUL: 108 bytes on
#: Linux, 104 on the BSDs and macOS).
_MAX_SOCKET_PATH: Final = 107 if sys.platform.startswith("linux") else 103
#: Longest a TCP connect plus TLS handshake may take before the channel's connection fails.
_CONNECT_TIMEOUT: Final = 30.0


def split_target(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` (gRPC's plain target form) as ``(host, port)``."""
    if not isinstance(target, str):
        raise TypeError("a gRPC target must be a str like 'billing.internal:8443'")
    text = target.removeprefix("dns:///").removeprefix("ipv4:").removeprefix("ipv6:")
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ConfigurationError(
            f"gRPC target {target!r} is not 'host:port' (a mutual TLS channel needs one address)"
        )
    return host, int(port)


class TlsBridge:
    """Forwards each connection made to :attr:`target` to *address* over *context*.

    *context* is a client context from :meth:`spiffile.tls.X509Source.client_ssl_context`
    (it presents our SVID, and checks and authorizes the server's); each
    upstream connection is made from its newest generation, so a rotated
    SVID or bundle is used from the next connection on.
    """

    def __init__(self, context: ssl.SSLContext, address: str) -> None:
        if not hasattr(socket, "AF_UNIX"):
            raise ConfigurationError("a mutual TLS gRPC channel needs Unix domain sockets")
        self._host, self._port = split_target(address)
        self._address = address
        self._context = context
        self._context.set_alpn_protocols(["h2"])  # gRPC servers require it (RFC 7540 §3.3).
        self._directory = tempfile.mkdtemp(prefix="spiffile-grpc-")  # Created 0700.
        self._path = os.path.join(self._directory, "tls.sock")
        if len(os.fsencode(self._path)) > _MAX_SOCKET_PATH:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise ConfigurationError(
                f"the gRPC bridge socket {self._path!r} is longer than the "
                f"{_MAX_SOCKET_PATH} bytes a Unix socket path may have: set TMPDIR "
                "to a shorter directory"
            )
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="spiffile-grpc-tls", daemon=True
        )
        self._thread.start()
        try:
            future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
            future.result(_CONNECT_TIMEOUT)
        except BaseException:
            self.close()
            raise

    @property
    def target(self) -> str:
        """The gRPC target of the bridge (``unix:/...``), for the plaintext channel."""
        return f"unix:{self._path}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, path=self._path)
        os.chmod(self._path, 0o600)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            await _close(writer)  # The bridge is closing.
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await self._connect()
        except (OSError, asyncio.TimeoutError) as exc:
            # A TLSPeerRejectedError says which rule the server broke; no key material.
            logger.warning(
                "spiffile: gRPC connection to %r refused or failed: %s: %s",
                self._address,
                getattr(exc, "code", type(exc).__name__),
                exc,
                extra={"spiffile_code": getattr(exc, "code", "connect_failed")},
            )
            await _close(writer)
            return
        up_reader, up_writer = upstream
        copies = [
            asyncio.ensure_future(_copy(reader, up_writer)),
            asyncio.ensure_future(_copy(up_reader, writer)),
        ]
        try:
            # Either side closing ends the connection (HTTP/2 needs no half-close).
            await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # The TLS side is aborted at once (nothing can interrupt it): HTTP/2 frames its
            # own end, and gRPC servers send no close_notify to wait for.
            up_writer.transport.abort()
            for copy in copies:
                copy.cancel()
            await asyncio.gather(*copies, return_exceptions=True)
            await _close(writer)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The checked TLS connection upstream; never left open if we are cancelled meanwhile."""
        connect = asyncio.ensure_future(
            asyncio.open_connection(
                self._host,
                self._port,
                ssl=self._context,
                ssl_handshake_timeout=_CONNECT_TIMEOUT,
            )
        )
        try:
            done, _ = await asyncio.wait({connect}, timeout=_CONNECT_TIMEOUT)
        except asyncio.CancelledError:
            connect.cancel()
            await asyncio.wait({connect})
            if not connect.cancelled() and connect.exception() is None:
                connect.result()[1].transport.abort()
            raise
        if not done:
            connect.cancel()
            await asyncio.wait({connect})
            raise asyncio.TimeoutError("connecting took too long")
        return connect.result()

    def close(self) -> None:
        """Stop accepting, end every forwarded connection, and remove the socket."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(
                    _CONNECT_TIMEOUT
                )
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(_CONNECT_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the channel's side, letting buffered bytes out (bounded), then release it."""
    try:
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
    except (Exception, asyncio.CancelledError):
        pass
    finally:
        writer.transport.abort()


async def _copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while True:
            data = await source.read(_CHUNK)
            if not data:
                return
            sink.write(data)
            await sink.drain()
