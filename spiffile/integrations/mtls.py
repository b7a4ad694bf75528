"""Mutual TLS with X.509-SVIDs in HTTP stacks: requests, httpx, uvicorn and ASGI apps.

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

Imports of requests and uvicorn are lazy: each helper needs only its own
library (extras ``requests``; uvicorn is the application's choice).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from spiffile.errors import ConfigurationError
from spiffile.spiffe_id import SpiffeId
from spiffile.tls import peer_svid

if TYPE_CHECKING:
    import requests
    import uvicorn

__all__ = ["SCOPE_EXTENSION", "asgi_peer_id", "requests_session", "uvicorn_config"]

#: The ``scope["extensions"]`` key carrying the verified peer (``{"id": "spiffe://..."}``).
SCOPE_EXTENSION: Final = "spiffile.peer"

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
