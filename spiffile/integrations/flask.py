"""Flask: an extension that holds the identity, a decorator that names who may call a view.

Install with ``pip install 'spiffile[flask]'``::

    from flask import Flask, g
    from spiffile import Identity
    from spiffile.integrations.flask import Spiffile, require_caller

    app = Flask(__name__)
    Spiffile(app, Identity.from_env())

    @app.get("/stock")
    @require_caller(allow=["orders"])          # bare names: the identity's trust domain
    def stock():
        return {"caller": str(g.spiffile_caller.id)}

The decorator verifies the ``Authorization: Bearer`` token with the
extension's identity (or takes the caller the WSGI middleware already
verified), applies ``allow=`` (:func:`spiffile.authorize.coerce`) and stores
the :class:`~spiffile.Caller` in ``flask.g.spiffile_caller``.  Refusals are
the middleware's: ``401`` ``{"error": "missing_token"}`` or
``{"error": "invalid_token"}``, ``403`` ``{"error": "insufficient_scope"}``,
with ``WWW-Authenticate``; the reason goes to the ``spiffile.integrations``
logger.  A decorated view in an app without the extension raises
:class:`RuntimeError` (a 500): it fails closed, never runs unprotected.
:func:`optional_caller` takes a caller when a token comes and sets
``g.spiffile_caller`` to None when none does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

try:
    from flask import Flask, Response, current_app, g, request
except ImportError as exc:  # pragma: no cover - exercised in a child without the extra
    raise ImportError(
        f"spiffile.integrations.flask needs Flask: pip install 'spiffile[flask]' ({exc})",
        name=exc.name,
    ) from exc

from spiffile import authorize
from spiffile.caller import Caller
from spiffile.integrations._bearer import Rejection, admit, check_caller, parse_audience
from spiffile.integrations._rules import Access, DeferredAllow, Rule
from spiffile.integrations.wsgi import caller_from_environ
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = ["EXTENSION_KEY", "Spiffile", "current_caller", "optional_caller", "require_caller"]

#: The key of the extension in ``app.extensions``.
EXTENSION_KEY: Final = "spiffile"
_G_KEY: Final = "spiffile_caller"
_OPTIONAL: Final = Rule("<optional_caller>", Access.OPTIONAL, authorize.any_id())

View = TypeVar("View", bound=Callable[..., Any])


class Spiffile:
    """The Flask extension: binds an :class:`~spiffile.Identity` to an app.

    ``Spiffile(app, identity)`` or, with an application factory,
    ``ext = Spiffile(); ext.init_app(app, identity)``.  *audience* is what
    inbound tokens must name, by default the identity's own SPIFFE ID.
    """

    def __init__(
        self,
        app: Flask | None = None,
        identity: Identity | None = None,
        *,
        audience: str | SpiffeId | None = None,
    ) -> None:
        self.identity = identity
        self.audience = parse_audience(audience)
        if app is not None:
            self.init_app(app, identity)

    def init_app(self, app: Flask, identity: Identity | None = None) -> None:
        """Register on *app*; *identity* replaces the one given to the constructor."""
        if identity is not None:
            self.identity = identity
        if self.identity is None:
            raise TypeError("Spiffile needs an identity: Spiffile(app, Identity.from_env())")
        app.extensions[EXTENSION_KEY] = self


@overload
def require_caller(view: View, /) -> View: ...
@overload
def require_caller(*, allow: authorize.Allow = None) -> Callable[[View], View]: ...


def require_caller(
    view: View | None = None, /, *, allow: authorize.Allow = None
) -> View | Callable[[View], View]:
    """Decorate a view so that it runs only for a verified caller that *allow* admits.

    ``@require_caller`` alone admits any verified caller; ``allow`` is
    checked when the decorator is built (a bad ID fails at import) and its
    bare names resolve against the extension's identity.
    """
    deferred = DeferredAllow(allow)

    def decorate(target: View) -> View:
        pattern = f"<view {target.__qualname__}>"

        def enter() -> Response | None:
            extension = _extension()
            identity = extension.identity
            if identity is None:  # init_app refuses this; a hand-built extension might not.
                raise RuntimeError("the spiffile extension has no identity")
            rule = deferred.rule(pattern, identity.id.trust_domain)
            return _enter(extension, identity, rule)

        return _wrap(target, enter)

    return decorate if view is None else decorate(view)


def optional_caller(view: View) -> View:
    """Decorate a view that serves anyone but wants to know a verified caller when one comes.

    A request without a token runs with ``g.spiffile_caller = None``; a token
    that is there must verify (401 otherwise).
    """

    def enter() -> Response | None:
        extension = _extension()
        if extension.identity is None:
            raise RuntimeError("the spiffile extension has no identity")
        return _enter(extension, extension.identity, _OPTIONAL)

    return _wrap(view, enter)


def current_caller() -> Caller | None:
    """``g.spiffile_caller`` when a decorated view is running, else None."""
    caller = g.get(_G_KEY)
    return caller if isinstance(caller, Caller) else None


def _wrap(view: View, enter: Callable[[], Response | None]) -> View:
    if inspect.iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            refused = enter()
            return refused if refused is not None else await view(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        refused = enter()
        return refused if refused is not None else view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _extension() -> Spiffile:
    extension = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(extension, Spiffile):
        raise RuntimeError(
            "spiffile's require_caller needs the extension: Spiffile(app, Identity.from_env())"
        )
    return extension


def _enter(extension: Spiffile, identity: Identity, rule: Rule) -> Response | None:
    """Set ``g.spiffile_caller`` and return None, or return the refusal."""
    g.pop(_G_KEY, None)  # Never let a value from before this view count.
    method, path = request.method, request.path
    verified = caller_from_environ(request.environ)
    result: Caller | Rejection | None
    if verified is not None:
        result = check_caller(verified, rule, method=method, path=path)
    else:
        result = admit(
            identity,
            request.headers.getlist("Authorization"),
            rule,
            audience=extension.audience,
            method=method,
            path=path,
        )
    if isinstance(result, Rejection):
        return Response(result.body, status=result.status, headers=result.headers)
    setattr(g, _G_KEY, result)
    return None
