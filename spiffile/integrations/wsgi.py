"""Pure WSGI middleware: only verified callers reach the application.

Works with any WSGI server and framework (Flask, Django, Pyramid, Bottle,
...) and imports none of them::

    app = SpiffileMiddleware(
        app,
        Identity.from_env(),
        allow=["orders"],                 # bare names: the identity's trust domain
        rules={"/admin/*": ["ops"]},      # per path: exact, or a prefix ending in *
        exempt_paths=["/healthz"],        # no token read
        optional_paths=["/catalog/*"],    # a caller if a valid token comes
    )

The middleware reads the ``Authorization: Bearer`` header, calls
:meth:`Identity.verify` (audience: the identity's own SPIFFE ID unless
*audience* names another) and asks the path's rule whether that caller may
go on (:mod:`spiffile.authorize`; the most specific pattern wins).  The
verified :class:`~spiffile.Caller` is stored in ``environ["spiffile.caller"]``
(read it with :func:`caller_from_environ`).  For Flask,
``spiffile.integrations.flask`` offers an extension and a decorator.

Refused requests get ``401`` with ``WWW-Authenticate: Bearer
error="invalid_token"`` and the body ``{"error": "invalid_token"}``, the same
for an unknown identity as for a bad token (PROFILE.md §10); a request
without a token gets ``WWW-Authenticate: Bearer`` and
``{"error": "missing_token"}`` (RFC 6750 §3.1); a verified caller the rule
does not allow gets ``403`` and ``{"error": "insufficient_scope"}``.  The
reason is logged at INFO on the ``spiffile.integrations`` logger
(:func:`spiffile.integrations.log_rejections` shows it).

Patterns are compared with ``environ["PATH_INFO"]``; a path with ``//``,
``.`` or ``..`` segments gets the stricter of its own rule and its
normalised form's, so ``/healthz/../admin`` is never exempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

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
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from spiffile.identity import Identity

__all__ = ["CALLER_KEY", "SpiffileMiddleware", "caller_from_environ"]


class SpiffileMiddleware:
    """Verify each request's Bearer token and apply its path's rule before *app* sees it."""

    def __init__(
        self,
        app: WSGIApplication,
        identity: Identity,
        *,
        audience: str | SpiffeId | None = None,
        allow: authorize.Allow = None,
        rules: Mapping[str, authorize.Allow] | None = None,
        exempt_paths: Iterable[str] = (),
        optional_paths: Iterable[str] = (),
    ) -> None:
        """Compile the rules now; the parameters mean what they mean for the ASGI middleware."""
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

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        rule = self.rules.match(path)
        header = environ.get("HTTP_AUTHORIZATION")
        token = None if header is None else canonical_bearer(header)
        result: Caller | Rejection | None
        if token is not None and rule.access is not Access.EXEMPT:
            # The form every client sends: what admit() does with it.
            result = admit_token(
                self.identity,
                token,
                rule,
                audience=self.audience,
                method=environ.get("REQUEST_METHOD", ""),
                path=path,
            )
        else:
            result = admit(
                self.identity,
                [] if header is None else [header],
                rule,
                audience=self.audience,
                method=environ.get("REQUEST_METHOD", ""),
                path=path,
            )
        if result is None:
            return self.app(environ, start_response)
        if type(result) is Rejection:
            start_response(f"{result.status} {result.reason}", result.headers)
            return [result.body]
        environ[CALLER_KEY] = result
        return self.app(environ, start_response)


def caller_from_environ(environ: WSGIEnvironment | dict[str, Any]) -> Caller | None:
    """The caller :class:`SpiffileMiddleware` verified for this request, or None.

    None means no caller was verified: an exempt path, an optional path
    without a token, or an app not wrapped at all.
    """
    caller = environ.get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else None
