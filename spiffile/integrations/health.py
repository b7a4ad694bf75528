"""Ready-made health endpoints: what an operator polls, for ASGI and WSGI.

``200`` while :meth:`Identity.status` is healthy, ``503`` otherwise, with a
JSON body from :meth:`IdentityStatus.as_dict`: the SPIFFE ID, the ``kid``
this workload signs with, whether that key is bound in the bundle, the
bundle's ``spiffe_sequence`` and each file's state.  During a two-phase
rotation (PROFILE.md §8.3) an operator stages the new key, polls every
workload until it reports the new bundle sequence, and only then commits::

    app = SpiffileMiddleware(app, identity, exempt_paths=["/healthz"])
    # FastAPI / Starlette: app.routes.append(Route("/healthz", health_asgi(identity)))
    # Flask / WSGI: werkzeug's DispatcherMiddleware(app, {"/healthz": health_wsgi(identity)})

The body leaves out file paths and error messages unless ``detail=True``:
a health endpoint is usually open to anyone who can reach it.  Only ``GET``
and ``HEAD`` are answered (``405`` otherwise).  Neither framework is
imported.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from spiffile.identity import Identity

__all__ = ["health_asgi", "health_response", "health_wsgi"]

_REASONS = {200: "OK", 405: "Method Not Allowed", 503: "Service Unavailable"}


def health_response(identity: Identity, *, detail: bool = False) -> tuple[int, bytes]:
    """The status code and JSON body of one health check (``200`` healthy, ``503`` not)."""
    status = identity.status()
    body = json.dumps(status.as_dict(detail=detail), sort_keys=True).encode()
    return (200 if status.healthy else 503), body


def _answer(
    identity: Identity, method: str, detail: bool
) -> tuple[int, bytes, list[tuple[str, str]]]:
    if method not in ("GET", "HEAD"):
        body = b'{"error": "method_not_allowed"}'
        extra = [("allow", "GET, HEAD")]
        code = 405
    else:
        code, body = health_response(identity, detail=detail)
        extra = []
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("cache-control", "no-store"),
        *extra,
    ]
    return code, (b"" if method == "HEAD" else body), headers


class _HealthApp:
    # A class, not a function: Starlette's Route treats an instance as an
    # ASGI app, so Route("/healthz", ...) serves it at that exact path (a
    # mount would redirect /healthz to /healthz/).
    __slots__ = ("_detail", "_identity")

    def __init__(self, identity: Identity, detail: bool) -> None:
        self._identity = identity
        self._detail = detail

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        code, body, headers = _answer(self._identity, scope.get("method", "GET"), self._detail)
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )
        await send({"type": "http.response.body", "body": body})


def health_asgi(
    identity: Identity, *, detail: bool = False
) -> Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]:
    """An ASGI 3 app answering every HTTP request with the identity's health.

    FastAPI and Starlette: ``app.routes.append(Route("/healthz", health_asgi(identity)))``
    (``starlette.routing.Route``).
    """
    return _HealthApp(identity, detail)


def health_wsgi(identity: Identity, *, detail: bool = False) -> WSGIApplication:
    """A WSGI app answering every request with the identity's health."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        code, body, headers = _answer(identity, environ.get("REQUEST_METHOD", "GET"), detail)
        start_response(f"{code} {_REASONS[code]}", headers)
        return [body]

    return app
