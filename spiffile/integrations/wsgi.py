"""Pure WSGI middleware: only verified callers reach the application.

Works with any WSGI server and framework (Flask, Django, Pyramid, Bottle,
...) and imports none of them::

    app.wsgi_app = SpiffileMiddleware(app.wsgi_app, Identity.from_env())  # Flask

The middleware reads the ``Authorization: Bearer`` header and calls
:meth:`Identity.verify` (audience: the identity's own SPIFFE ID unless
*audience* names another).  On success the verified :class:`~spiffile.Caller`
is stored in ``environ["spiffile.caller"]`` (read it with
:func:`caller_from_environ`; in Flask, ``request.environ``).

Refused requests get ``401`` with ``WWW-Authenticate: Bearer
error="invalid_token"`` and the body ``{"error": "invalid_token"}``, the same
for an unknown identity as for a bad token (PROFILE.md §10); a request
without a token gets ``WWW-Authenticate: Bearer`` and
``{"error": "missing_token"}`` (RFC 6750 §3.1).  The reason is logged at INFO
on the ``spiffile.integrations`` logger.

*exempt_paths* are compared exactly with ``environ["PATH_INFO"]`` (no
prefixes, no normalisation).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from spiffile.caller import Caller
from spiffile.integrations._bearer import CALLER_KEY, Rejection, authenticate, parse_audience
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from spiffile.identity import Identity

__all__ = ["CALLER_KEY", "SpiffileMiddleware", "caller_from_environ"]


class SpiffileMiddleware:
    """Verify every request's Bearer token before *app* sees it."""

    def __init__(
        self,
        app: WSGIApplication,
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

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in self.exempt_paths:
            return self.app(environ, start_response)
        header = environ.get("HTTP_AUTHORIZATION")
        result = authenticate(
            self.identity,
            [] if header is None else [header],
            audience=self.audience,
            method=environ.get("REQUEST_METHOD", ""),
            path=path,
        )
        if isinstance(result, Rejection):
            start_response(f"{result.status} {result.reason}", result.headers)
            return [result.body]
        environ[CALLER_KEY] = result
        return self.app(environ, start_response)


def caller_from_environ(environ: WSGIEnvironment | dict[str, Any]) -> Caller | None:
    """The caller :class:`SpiffileMiddleware` verified for this request, or None.

    None means the request did not pass through the middleware: an exempt
    path, or an app not wrapped at all.
    """
    caller = environ.get(CALLER_KEY)
    return caller if isinstance(caller, Caller) else None
