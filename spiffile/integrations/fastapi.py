"""FastAPI dependencies: the verified caller as an argument, the bearer scheme in OpenAPI.

Install with ``pip install 'spiffile[fastapi]'``.  Two ways to use it, and
they mix:

Dependency only, no middleware (each protected route says who may call)::

    identity = Identity.from_env()
    app = FastAPI()

    @app.get("/invoices")
    def invoices(caller: Caller = Security(require_caller(identity, allow=["orders"]))):
        return {"caller": str(caller.id)}

Behind :class:`spiffile.integrations.asgi.SpiffileMiddleware` (the
middleware verifies; the dependency hands over the caller and may narrow
``allow=`` further, resolving bare names against the middleware's
identity)::

    app.add_middleware(SpiffileMiddleware, identity=identity, exempt_paths=DOCS_PATHS)

    @app.get("/invoices")
    def invoices(caller: Caller = Security(require_caller(allow=["orders"]))): ...

With ``Security(...)`` (or ``Depends``) the route is documented as needing an
HTTP bearer token, so ``/docs`` shows Swagger UI's *Authorize* button.  A
missing or bad token is a ``401`` with ``WWW-Authenticate`` and the body
``{"detail": "missing_token"}`` or ``{"detail": "invalid_token"}``; a caller
the rule does not allow is a ``403`` ``{"detail": "insufficient_scope"}``
(FastAPI's error shape; the reason goes to the log as for the middleware).
A dependency with neither an identity nor the middleware in front raises
:class:`LookupError`: a deployment mistake, answered with a 500, never with
the route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Final

try:
    from fastapi import HTTPException, Request, Security
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ImportError as exc:  # pragma: no cover - exercised in a child without the extra
    raise ImportError(
        f"spiffile.integrations.fastapi needs FastAPI: pip install 'spiffile[fastapi]' ({exc})",
        name=exc.name,
    ) from exc

from spiffile import authorize
from spiffile.caller import Caller
from spiffile.integrations._bearer import Rejection, admit, check_caller, parse_audience
from spiffile.integrations._rules import Access, DeferredAllow, Rule
from spiffile.integrations.asgi import IDENTITY_KEY, caller_from_scope
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = ["DOCS_PATHS", "SCHEME", "optional_caller", "require_caller"]

#: FastAPI's own documentation routes, to pass as the middleware's ``exempt_paths``.
DOCS_PATHS: Final = ("/docs", "/docs/*", "/redoc", "/openapi.json")

#: The security scheme OpenAPI shows.  It only documents: the token is read
#: and verified by spiffile, never by this object (``auto_error=False``).
SCHEME: Final = HTTPBearer(
    bearerFormat="JWT-SVID",
    scheme_name="SPIFFE",
    description="A JWT-SVID whose audience is this service's SPIFFE ID.",
    auto_error=False,
)

_OPTIONAL: Final = Rule("<optional_caller>", Access.OPTIONAL, authorize.any_id())


def require_caller(
    identity: Identity | None = None,
    *,
    allow: authorize.Allow = None,
    audience: str | SpiffeId | None = None,
) -> Callable[..., Awaitable[Caller]]:
    """A dependency that yields the verified :class:`~spiffile.Caller` or refuses the request.

    *identity* verifies the bearer token itself; without it the caller must
    come from :class:`~spiffile.integrations.asgi.SpiffileMiddleware`, or
    the token is verified with the middleware's identity where the path is
    exempt from it.  *allow* (see :func:`spiffile.authorize.coerce`) is
    checked on top of whatever the middleware allowed; bare names mean IDs
    in the identity's trust domain.  *audience* defaults to the identity's
    own SPIFFE ID.
    """
    deferred = DeferredAllow(allow, None if identity is None else identity.id.trust_domain)
    expected = parse_audience(audience)

    async def spiffile_caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(SCHEME)],
    ) -> Caller:
        serving = _serving_identity(request, identity)
        rule = deferred.rule(_route_pattern(request), serving.id.trust_domain)
        caller = None if identity is not None else caller_from_scope(request.scope)
        result = _admit(request, serving, rule, expected, caller)
        if result is None:  # Only an optional rule lets no caller through.
            raise LookupError("require_caller admitted no caller")
        return result

    return spiffile_caller


def optional_caller(
    identity: Identity | None = None,
    *,
    audience: str | SpiffeId | None = None,
) -> Callable[..., Awaitable[Caller | None]]:
    """A dependency that yields the verified caller, or None when the request has no token.

    A token that is there must verify (401 otherwise): a client sending a bad
    one learns it rather than being served as anonymous.  *identity* and
    *audience* as for :func:`require_caller`.
    """
    expected = parse_audience(audience)

    async def spiffile_optional_caller(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(SCHEME)],
    ) -> Caller | None:
        caller = None if identity is not None else caller_from_scope(request.scope)
        if caller is not None:
            return caller
        return _admit(request, _serving_identity(request, identity), _OPTIONAL, expected, None)

    return spiffile_optional_caller


def _serving_identity(request: Request, identity: Identity | None) -> Identity:
    if identity is not None:
        return identity
    found = request.scope.get(IDENTITY_KEY)
    if found is None:
        raise LookupError(
            "no spiffile identity for this request: pass one to require_caller(identity, ...) "
            "or wrap the app in spiffile.integrations.asgi.SpiffileMiddleware"
        )
    return found  # type: ignore[no-any-return]


def _route_pattern(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


def _admit(
    request: Request,
    identity: Identity,
    rule: Rule,
    audience: str | None,
    caller: Caller | None,
) -> Caller | None:
    path = request.url.path
    if caller is None:
        result = admit(
            identity,
            request.headers.getlist("authorization"),
            rule,
            audience=audience,
            method=request.method,
            path=path,
        )
    else:
        # Verified by the middleware: only this dependency's rule is left.
        result = check_caller(caller, rule, method=request.method, path=path)
    if isinstance(result, Rejection):
        raise HTTPException(
            status_code=result.status,
            detail=result.error,
            headers={"WWW-Authenticate": result.challenge, "Cache-Control": "no-store"},
        )
    return result
