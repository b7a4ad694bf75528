"""The trivial applications the end-to-end benchmark serves: ``asgi`` and ``wsgi``.

Imported by the server processes (``uvicorn benchmarks._e2e_app:asgi``,
``gunicorn benchmarks._e2e_app:wsgi``), each worker on its own.  The
endpoint does no work at all, so a request costs the server and, when
``SPIFFILE_BENCH_IDENTITY_DIR`` names an identity directory, the
middleware's token check: the hardest case for the ratio to the
unauthenticated rate.  Without that variable the same endpoint is served
bare.  Raw ASGI and WSGI callables (no framework) for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from spiffile.identity import Identity
from spiffile.integrations import asgi as asgi_middleware
from spiffile.integrations import wsgi as wsgi_middleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["BODY", "IDENTITY_ENV", "WATCH_ENV", "asgi", "wsgi"]

#: The identity directory of the receiving workload; unset or empty: no authentication.
IDENTITY_ENV: Final = "SPIFFILE_BENCH_IDENTITY_DIR"
#: What the endpoint answers.
BODY: Final = b"ok\n"

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_ASGI = Callable[
    [_Scope, Callable[[], Awaitable[_Message]], Callable[[_Message], Awaitable[None]]],
    Awaitable[None],
]
_HEADERS: Final = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def _endpoint(
    scope: _Scope,
    receive: Callable[[], Awaitable[_Message]],
    send: Callable[[_Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def _wsgi_endpoint(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


#: Set to 1: the identity runs ``watch()`` (no per-call ``stat`` of its files).
WATCH_ENV: Final = "SPIFFILE_BENCH_WATCH"


def _identity() -> Identity | None:
    directory = os.environ.get(IDENTITY_ENV, "")
    if not directory:
        return None
    identity = Identity.from_dir(directory)
    return identity.watch() if os.environ.get(WATCH_ENV) == "1" else identity


def _build_asgi() -> _ASGI:
    identity = _identity()
    if identity is None:
        return _endpoint
    return asgi_middleware.SpiffileMiddleware(_endpoint, identity)


def _build_wsgi() -> WSGIApplication:
    identity = _identity()
    if identity is None:
        return _wsgi_endpoint
    return wsgi_middleware.SpiffileMiddleware(_wsgi_endpoint, identity)


asgi: Final = _build_asgi()
wsgi: Final = _build_wsgi()
