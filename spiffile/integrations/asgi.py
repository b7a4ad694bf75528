"""Pure ASGI middleware: only verified callers reach the application.

Works with any ASGI 3 server and framework (Starlette, FastAPI, Django,
Quart, ...) and imports none of them::

    app = SpiffileMiddleware(
        app,
        Identity.from_env(),
        allow=["orders", "reports"],          # bare names: the identity's trust domain
        rules={"/admin/*": ["ops"]},          # per path: exact, or a prefix ending in *
        exempt_paths=["/healthz"],            # no token read
        optional_paths=["/catalog/*"],        # a caller if a valid token comes
    )

For ``http`` and ``websocket`` scopes the middleware reads the
``Authorization: Bearer`` header and calls :meth:`Identity.verify` (audience:
the identity's own SPIFFE ID unless *audience* names another), then asks the
path's rule whether that caller may go on (:mod:`spiffile.authorize`; the
most specific pattern wins, see ``spiffile.integrations._rules``).  The
verified :class:`~spiffile.Caller` is stored in the scope twice, under
``scope["spiffile.caller"]`` (read it with :func:`caller_from_scope`) and
under ``scope["state"]["spiffile_caller"]``, which Starlette and FastAPI show
as ``request.state.spiffile_caller``.

Refused HTTP requests get ``401`` with ``WWW-Authenticate: Bearer
error="invalid_token"`` and the body ``{"error": "invalid_token"}``, the same
for an unknown identity as for a bad token (PROFILE.md §10); a request
without a token gets ``WWW-Authenticate: Bearer`` and
``{"error": "missing_token"}`` (RFC 6750 §3.1); a verified caller the rule
does not allow gets ``403`` and ``{"error": "insufficient_scope"}``.  The
reason is logged at INFO on the ``spiffile.integrations`` logger
(:func:`spiffile.integrations.log_rejections` shows it).  A refused websocket
handshake gets the same answer where the server supports the
``websocket.http.response`` extension, and otherwise is closed with code
1008 (policy violation), which servers answer with HTTP 403.  Lifespan and
other scopes pass through.

Patterns are compared with ``scope["path"]`` as the server decoded it; a
path with ``//``, ``.`` or ``..`` segments gets the stricter of its own rule
and its normalised form's, so ``/healthz/../admin`` is never exempt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from spiffile import authorize
from spiffile.caller import Caller
from spiffile.integrations._bearer import (
    CALLER_KEY,
    Rejection,
    admit,
    admit_token,
    canonical_bearer,
    parse_audience,
)
from spiffile.integrations._rules import Access, Rules
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
    "IDENTITY_KEY",
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
#: Where the middleware leaves its :class:`~spiffile.Identity`, so that
#: dependencies (``spiffile.integrations.fastapi``) resolve bare names in
#: ``allow=`` against its trust domain.
IDENTITY_KEY: Final = "spiffile.identity"
#: The close code of a refused websocket handshake (RFC 6455 §7.4.1).
POLICY_VIOLATION: Final = 1008
_AUTHORIZATION: Final = b"authorization"


class SpiffileMiddleware:
    """Verify each ``http`` and ``websocket`` request's Bearer token and apply its path's rule."""

    def __init__(
        self,
        app: ASGIApp,
        identity: Identity,
        *,
        audience: str | SpiffeId | None = None,
        allow: authorize.Allow = None,
        rules: Mapping[str, authorize.Allow] | None = None,
        exempt_paths: Iterable[str] = (),
        optional_paths: Iterable[str] = (),
    ) -> None:
        """Compile the rules now, so that a typo in a pattern or an ID fails at start-up.

        *allow* applies to every path no pattern names (default: any caller
        the bundle verifies); *rules* maps patterns to their own ``allow=``;
        *exempt_paths* need no token; *optional_paths* take a caller if one
        comes.  See :func:`spiffile.authorize.coerce` for what ``allow=``
        accepts; bare names are IDs in *identity*'s trust domain.
        """
        self.app = app
        self.identity = identity
        self.audience = parse_audience(audience)
        self.rules = Rules(
            allow=allow,
            rules=rules,
            exempt=exempt_paths,
            optional=optional_paths,
            trust_domain=identity.id.trust_domain,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        scope[IDENTITY_KEY] = self.identity
        rule = self.rules.match(path)
        if rule.access is Access.EXEMPT:
            await self.app(scope, receive, send)
            return
        # One pass over the headers, building nothing: names as servers hand
        # them over (lower case) compare equal at once; any other spelling
        # is lower-cased first (ASGI does not require lower-case names).
        header: bytes | None = None
        several = False
        for name, value in scope.get("headers", ()):
            if name == _AUTHORIZATION or (len(name) == 13 and name.lower() == _AUTHORIZATION):
                several = header is not None
                header = value
                if several:
                    break
        token = None if header is None or several else canonical_bearer(header.decode("latin-1"))
        result: Caller | Rejection | None
        if token is not None:
            # The form every client sends, once: what admit() does with it.
            result = admit_token(
                self.identity,
                token,
                rule,
                audience=self.audience,
                method=scope.get("method", "WEBSOCKET"),
                path=path,
            )
        else:
            result = admit(
                self.identity,
                [
                    value.decode("latin-1")
                    for name, value in scope.get("headers", ())
                    if name.lower() == _AUTHORIZATION
                ],
                rule,
                audience=self.audience,
                method=scope.get("method", "WEBSOCKET"),
                path=path,
            )
        if result is None:
            await self.app(scope, receive, send)
        elif type(result) is Rejection:
            if kind == "http":
                await _reject_http(send, result)
            else:
                await _reject_websocket(scope, send, result)
        else:
            # Mutated in place, as Starlette's own AuthenticationMiddleware
            # does, so outer middleware holding this scope see the caller too.
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

    None means no caller was verified: an exempt path, an optional path
    without a token, a scope type the middleware does not check, or an app
    not wrapped at all.
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
