"""Mutual TLS with X.509-SVIDs in HTTP stacks: requests, httpx, uvicorn, gunicorn, wsgiref.

The contexts come from :meth:`spiffile.Identity.server_ssl_context` and
:meth:`~spiffile.Identity.client_ssl_context` (see :mod:`spiffile.tls`); they
already refuse a peer whose SVID or SPIFFE ID does not pass.  This module
only plugs them in where each library expects a context, and hands the
verified peer ID to the application::

    client = httpx.Client(verify=identity.client_ssl_context(allow="billing"))
    session = requests_session(identity.client_ssl_context(allow="billing"))
    config = uvicorn_config(app, identity.server_ssl_context(allow=["orders"]), port=8443)
    uvicorn.Server(config).run()
    # in the app:  asgi_peer_id(scope)  ->  SpiffeId of the verified client

WSGI apps get the verified client ID in ``environ["spiffile.peer_id"]``
(:data:`ENVIRON_KEY`, a :class:`~spiffile.SpiffeId`; read it with
:func:`wsgi_peer_id`), under gunicorn or the standard library's server::

    # gunicorn.conf.py  (gunicorn -c gunicorn.conf.py app:app)
    globals().update(gunicorn_config(Identity.from_env(), allow=["orders"]))

    server = make_wsgi_server("0.0.0.0", 8443, app, identity.server_ssl_context(allow=["orders"]))
    server.serve_forever()

The ID comes from the TLS connection the request arrived on, never from a
header: a client cannot name itself, and a value the app finds under the key
before the server set it is removed.

Imports of requests, uvicorn and gunicorn are lazy: each helper needs only
its own library (extras ``requests``; the server is the application's choice).
"""

from __future__ import annotations

import logging
import os
import socket
import socketserver
import ssl
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from spiffile.authorize import Allow
from spiffile.errors import ConfigurationError
from spiffile.spiffe_id import SpiffeId
from spiffile.tls import X509Source, peer_svid

if TYPE_CHECKING:
    import requests
    import uvicorn
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from spiffile.identity import Identity

__all__ = [
    "ENVIRON_KEY",
    "SCOPE_EXTENSION",
    "MTLSWSGIServer",
    "asgi_peer_id",
    "gunicorn_config",
    "make_wsgi_server",
    "requests_session",
    "uvicorn_config",
    "wsgi_peer_id",
]

#: The ``scope["extensions"]`` key carrying the verified peer (``{"id": "spiffe://..."}``).
SCOPE_EXTENSION: Final = "spiffile.peer"
#: The WSGI ``environ`` key carrying the verified peer's :class:`~spiffile.SpiffeId`.
ENVIRON_KEY: Final = "spiffile.peer_id"

_log = logging.getLogger("spiffile.integrations")

_Scope = MutableMapping[str, Any]
_App = Callable[[_Scope, Any, Any], Awaitable[None]]


def requests_session(context: ssl.SSLContext) -> requests.Session:
    """A :class:`requests.Session` whose HTTPS connections use *context* (mutual TLS).

    Host names are not checked (a SPIFFE ID is not one): the context checks
    the server's SPIFFE ID instead.
    """
    import requests
    from requests.adapters import HTTPAdapter

    class _Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["ssl_context"] = context
            kwargs["assert_hostname"] = False
            super().init_poolmanager(*args, **kwargs)

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            # The context carries the trust; requests must not load CA files into it.
            return None

    session = requests.Session()
    session.mount("https://", _Adapter())
    return session


def _with_peer(app: _App, extension: dict[str, Any]) -> _App:
    async def with_peer(scope: _Scope, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            extensions = scope.setdefault("extensions", {})
            extensions[SCOPE_EXTENSION] = dict(extension)
        await app(scope, receive, send)

    return with_peer


def uvicorn_config(app: Any, context: ssl.SSLContext, **options: Any) -> uvicorn.Config:
    """A :class:`uvicorn.Config` serving *app* over *context*, exposing the peer ID to it.

    Each connection's verified SPIFFE ID reaches the app as
    ``scope["extensions"]["spiffile.peer"]["id"]`` (read it with
    :func:`asgi_peer_id`).  Uses uvicorn's h11 protocol.
    """
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _PeerProtocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            svid = peer_svid(ssl_object)  # The handshake completed and passed.
            self.app = _with_peer(self.app, {"id": str(svid.id)})

    return uvicorn.Config(
        app,
        http=_PeerProtocol,
        ssl_context_factory=lambda _config, _default: context,
        **options,
    )


def asgi_peer_id(scope: _Scope) -> SpiffeId:
    """The verified SPIFFE ID of the TLS client of this request (see :func:`uvicorn_config`)."""
    peer = scope.get("extensions", {}).get(SCOPE_EXTENSION)
    if not isinstance(peer, dict) or not isinstance(peer.get("id"), str):
        raise ConfigurationError(
            "no verified TLS peer in this scope: serve the app with "
            "spiffile.integrations.mtls.uvicorn_config"
        )
    return SpiffeId.parse(peer["id"])


# -- WSGI --------------------------------------------------------------------------------


def wsgi_peer_id(environ: WSGIEnvironment | MutableMapping[str, Any]) -> SpiffeId:
    """The verified SPIFFE ID of the TLS client of this request.

    Set by :func:`gunicorn_config` and :func:`make_wsgi_server` from the
    connection's checked handshake.  Raises
    :class:`~spiffile.errors.ConfigurationError` when the request did not come
    through one of them (plain HTTP, another server): never a guess.
    """
    peer = environ.get(ENVIRON_KEY)
    if not isinstance(peer, SpiffeId):
        raise ConfigurationError(
            "no verified TLS peer in this WSGI environ: serve the app with "
            "spiffile.integrations.mtls.gunicorn_config or make_wsgi_server"
        )
    return peer


def _set_peer(environ: WSGIEnvironment | MutableMapping[str, Any], connection: object) -> None:
    """Put the verified peer of *connection* in *environ*, or take out whatever is there."""
    environ.pop(ENVIRON_KEY, None)
    try:
        environ[ENVIRON_KEY] = peer_svid(connection).id
    except ConfigurationError:
        pass  # Not one of our TLS connections: wsgi_peer_id will say so.


class _GunicornPeer:
    """Wraps gunicorn's loaded app: each request gets its connection's verified peer ID."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # gunicorn's sync and gthread workers hand the app the TLS socket they
        # read the request from; a worker class without it leaves no peer.
        _set_peer(environ, environ.get("gunicorn.socket"))
        return self.app(environ, start_response)


def gunicorn_config(
    source: Identity | X509Source,
    allow: Allow,
    *,
    post_worker_init: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """gunicorn settings that serve over *source*'s X.509-SVID and admit only *allow*.

    Returns ``certfile``, ``keyfile`` (the SVID files, which gunicorn only
    checks exist: they switch its TLS on), ``ssl_context`` (the server hook of
    gunicorn 21 and later, answering with ``source.server_ssl_context(allow)``,
    made once in each worker) and ``post_worker_init`` (wraps the loaded app so
    that ``environ["spiffile.peer_id"]`` holds each request's verified client
    ID; your own hook, if any, is passed as *post_worker_init* and runs
    first).  Put them in a configuration file with
    ``globals().update(gunicorn_config(...))`` or in a custom application's
    ``load_config``.  Works with the ``sync`` and ``gthread`` workers.

    Rotation: gunicorn asks for the context on every connection, and the
    context follows the files (see :mod:`spiffile.tls`), so new connections
    present the newest SVID without a restart.  A refused client never
    reaches the app: gunicorn sees a failed TLS handshake.
    """
    x509 = source if isinstance(source, X509Source) else source.x509
    x509.server_ssl_context(allow)  # Fail at configuration time, not per connection.
    contexts: dict[int, ssl.SSLContext] = {}

    def ssl_context(_config: Any, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        # One façade per worker process (gunicorn forks them after reading this).
        pid = os.getpid()
        context = contexts.get(pid)
        if context is None:
            contexts.clear()
            context = contexts[pid] = x509.server_ssl_context(allow)
        return context

    def wrap_app(worker: Any) -> None:
        if post_worker_init is not None:
            post_worker_init(worker)
        worker.wsgi = _GunicornPeer(worker.wsgi)

    svid_file, key_file, _ = x509.paths
    return {
        "certfile": svid_file,
        "keyfile": key_file,
        "ssl_context": ssl_context,
        "post_worker_init": wrap_app,
    }


class _PeerHandler(WSGIRequestHandler):
    """wsgiref's handler over a checked TLS socket: the environ gets the verified peer."""

    #: Seconds a connection may stall (the handshake included) before it is dropped.
    timeout = 60

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ["HTTPS"] = "on"  # wsgiref.util.guess_scheme: wsgi.url_scheme is https.
        _set_peer(environ, self.connection)
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s - %s", self.address_string(), format % args)


class MTLSWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server over a spiffile server context, one thread per connection.

    The TLS handshake runs in the connection's thread (a stalled client holds
    only its own), and a refused client is dropped before the app is called.
    """

    daemon_threads = True
    ssl_context: ssl.SSLContext

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # The handshake, and the SPIFFE check ending it, run on the first read.
        wrapped = self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A refused or vanished client is routine for a TLS server, not a traceback.
        _log.info("TLS connection from %s dropped", client_address[0], exc_info=True)


def make_wsgi_server(
    host: str,
    port: int,
    app: WSGIApplication,
    context: ssl.SSLContext,
) -> MTLSWSGIServer:
    """wsgiref's ``make_server`` over *context* (from ``server_ssl_context``).

    Each request's verified client ID is in ``environ["spiffile.peer_id"]``
    (:func:`wsgi_peer_id`).  *context* should come from
    :meth:`spiffile.Identity.server_ssl_context`: another context gives the
    app no peer ID.  Requests are logged at DEBUG and dropped connections at
    INFO on the ``spiffile.integrations`` logger.
    """
    if not isinstance(context, ssl.SSLContext):
        raise TypeError("context must be an ssl.SSLContext")
    server = MTLSWSGIServer((host, port), _PeerHandler)
    server.ssl_context = context
    server.set_app(app)
    return server
