"""Pure ASGI middleware: only verified callers reach the application.

Works with any ASGI 3 server and framework (Starlette, FastAPI, Django,
Quart, ...) and imports none of them::

    app = SpiffileMiddleware(app, Identity.from_env(), exempt_paths={"/healthz"})

For ``http`` and ``websocket`` scopes the middleware reads the
``Authorization: Bearer`` header and calls :meth:`Identity.verify` (audience:
the identity's own SPIFFE ID unless *audience* names another).  On success
the verified :class:`~spiffile.Caller` is stored in the scope twice, under
``scope["spiffile.caller"]`` (read it with :func:`caller_from_scope`) and
under ``scope["state"]["spiffile_caller"]``, which Starlette and FastAPI show
as ``request.state.spiffile_caller``.

Refused HTTP requests get ``401`` with ``WWW-Authenticate: Bearer
error="invalid_token"`` and the body ``{"error": "invalid_token"}``, the same
for an unknown identity as for a bad token (PROFILE.md §10); a request
without a token gets ``WWW-Authenticate: Bearer`` and
``{"error": "missing_token"}`` (RFC 6750 §3.1).  The reason is logged at INFO
on the ``spiffile.integrations`` logger.  A refused websocket handshake gets
the same 401 where the server supports the ``websocket.http.response``
extension, and otherwise is closed with code 1008 (policy violation), which
servers answer with HTTP 403.  Lifespan and other scopes pass through.

*exempt_paths* are compared exactly with ``scope["path"]`` (no prefixes, no
normalisation), so ``/healthz`` exempts that path and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from spiffile.caller import Caller
from spiffile.integrations._bearer import CALLER_KEY, Rejection, authenticate, parse_audience
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from spiffile.identity import Identity
else:
    # FastAPI injects a dependency's argument by its annotation: with
    # Starlette present, `Depends(require_caller)` receives the request.
    # Without it, require_caller still takes anything with a `.scope`.
    try:
        from starlette.requests import HTTPConnection
    except ImportError:  # pragma: no cover - exercised only without starlette
        HTTPConnection = Any

__all__ = [
    "CALLER_KEY",
    "STATE_KEY",
    "SpiffileMiddleware",
    "caller_from_scope",
    "require_caller",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Key of the caller in ``scope["state"]`` (``request.state.spiffile_caller``).
STATE_KEY: Final = "spiffile_caller"
#: The close code of a refused websocket handshake (RFC 6455 §7.4.1).
POLICY_VIOLATION: Final = 1008


class SpiffileMiddleware:
    """Verify every ``http`` and ``websocket`` request's Bearer token before *app* sees it."""

    def __init__(
        self,
        app: ASGIApp,
        identity: Identity,
        *,
        audience: str | SpiffeId | None = None,
        exempt_paths: Iterable[str] = (),
    ) -> None:
        if isinstance(exempt_paths, str):
            raise TypeError("exempt_paths must be a collection of paths, not one string")
        self.app = app
        self.identity = identity
        self.audience = parse_audience(audience)
        self.exempt_paths = frozenset(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope.get("path") in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        authorization = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name.lower() == b"authorization"
        ]
        result = authenticate(
            self.identity,
            authorization,
            audience=self.audience,
            method=scope.get("method", "WEBSOCKET"),
            path=scope.get("path", ""),
        )
        if isinstance(result, Rejection):
            if kind == "http":
                await _reject_http(send, result)
            else:
                await _reject_websocket(scope, send, result)
            return
        # Mutated in place, as Starlette's own AuthenticationMiddleware does,
        # so outer middleware holding this scope see the caller too.
        scope[CALLER_KEY] = result
        scope.setdefault("state", {})[STATE_KEY] = result
        await self.app(scope, receive, send)


def _response_headers(rejection: Rejection) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in rejection.headers]


async def _reject_http(send: Send, rejection: Rejection) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": rejection.status,
            "headers": _response_headers(rejection),
        }
    )
    await send({"type": "http.response.body", "body": rejection.body})


async def _reject_websocket(scope: Scope, send: Send, rejection: Rejection) -> None:
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": rejection.status,
                "headers": _response_headers(rejection),
            }
        )
        await send({"type": "websocket.http.response.body", "body": rejection.body})
    else:
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})


def caller_from_scope(scope: Scope) -> Caller | None:
    """The caller :class:`SpiffileMiddleware` verified for this scope, or None.

    None means the request did not pass through the middleware: an exempt
    path, a scope type it does not check, or an app not wrapped at all.
    """
    caller = scope.get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else None


def require_caller(request: HTTPConnection) -> Caller:
    """The verified caller of *request* (a Starlette/FastAPI request or websocket).

    Usable as a FastAPI dependency: ``caller: Caller = Depends(require_caller)``.
    Raises :class:`LookupError` when there is none, which is a deployment
    mistake (middleware missing, or the path exempt) and must fail closed:
    frameworks answer an unhandled exception with a 500, never with the route.
    """
    caller = caller_from_scope(request.scope)
    if caller is None:
        raise LookupError(
            "no verified spiffile caller: wrap the app in "
            "spiffile.integrations.asgi.SpiffileMiddleware and do not exempt this path"
        )
    return caller
