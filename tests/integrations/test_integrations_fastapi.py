"""spiffile.integrations.fastapi: dependencies under a real uvicorn on 127.0.0.1.

Two apps: one with dependencies only (no middleware), one behind
``SpiffileMiddleware`` with the docs exempt.  ``billing`` serves; ``orders``,
``reports`` call with httpx; ``ghost`` is unknown to billing's bundle.
"""

# ruff: noqa: E402
# No `from __future__ import annotations`: FastAPI must see the route
# annotations, which name aliases local to `routes()`, as objects.

from collections.abc import Iterator
from typing import Annotated, Any

import pytest

for _framework in ("fastapi", "httpx", "uvicorn"):
    pytest.importorskip(_framework)

import httpx
from fastapi import Depends, FastAPI, Security
from liveservers import serve_asgi
from servicerealm import Realm, provision_realm

from spiffile import Caller, authorize
from spiffile.errors import InvalidSpiffeIdError
from spiffile.identity import Identity
from spiffile.integrations.asgi import SpiffileMiddleware
from spiffile.integrations.fastapi import DOCS_PATHS, optional_caller, require_caller
from spiffile.provision import load_identity

ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"
REPORTS = "spiffe://example.org/reports"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("fastapi"))


@pytest.fixture(scope="module")
def reports(realm: Realm) -> Identity:
    return load_identity(realm.root, "reports")


def routes(app: FastAPI, identity: Identity | None) -> FastAPI:
    """The same routes for both apps; *identity* None means "rely on the middleware"."""
    only_orders = Security(require_caller(identity, allow=["orders"]))
    anyone = Security(require_caller(identity))
    maybe = Depends(optional_caller(identity))

    @app.get("/invoices")
    def invoices(caller: Annotated[Caller, only_orders]) -> dict[str, str]:
        return {"caller": str(caller.id)}

    @app.get("/whoami")
    async def whoami(caller: Annotated[Caller, anyone]) -> dict[str, str]:
        return {"caller": str(caller.id)}

    @app.get("/selfcheck")  # Exempt from the middleware: the dependency verifies.
    def selfcheck(caller: Annotated[Caller, Security(require_caller(allow=["orders"]))]) -> str:
        return str(caller.id)

    @app.get("/catalog")
    def catalog(caller: Annotated[Caller | None, maybe]) -> dict[str, str | None]:
        return {"caller": None if caller is None else str(caller.id)}

    return app


@pytest.fixture(scope="module")
def plain(realm: Realm) -> Iterator[str]:
    """Dependency-only mode: no middleware at all."""
    with serve_asgi(routes(FastAPI(), realm.billing)) as url:
        yield url


@pytest.fixture(scope="module")
def wrapped(realm: Realm) -> Iterator[str]:
    """Behind the middleware, which lets orders and reports in and exempts the docs."""
    app = routes(FastAPI(), None)
    app.add_middleware(
        SpiffileMiddleware,
        identity=realm.billing,
        allow=["orders", "reports"],
        exempt_paths=[*DOCS_PATHS, "/selfcheck"],
        optional_paths=["/catalog"],
    )
    with serve_asgi(app) as url:
        yield url


@pytest.fixture(scope="module", params=["plain", "wrapped"])
def server(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def get(url: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(url + path, headers=headers, timeout=10)


def test_allowed_caller(realm: Realm, server: str) -> None:
    response = get(server, "/invoices", realm.orders.token(BILLING))
    assert (response.status_code, response.json()) == (200, {"caller": ORDERS})
    response = get(server, "/whoami", realm.orders.token(BILLING))
    assert (response.status_code, response.json()) == (200, {"caller": ORDERS})


def test_verified_but_not_allowed_is_403(reports: Identity, server: str) -> None:
    response = get(server, "/invoices", reports.token(BILLING))
    assert response.status_code == 403
    assert response.json() == {"detail": "insufficient_scope"}
    assert response.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    assert get(server, "/whoami", reports.token(BILLING)).json() == {"caller": REPORTS}


def test_no_token_and_bad_token_are_401(realm: Realm, plain: str) -> None:
    response = get(plain, "/invoices")
    assert (response.status_code, response.json()) == (401, {"detail": "missing_token"})
    assert response.headers["www-authenticate"] == "Bearer"
    for token in (realm.ghost.token(BILLING), realm.orders.token(REPORTS), "x.y.z"):
        response = get(plain, "/invoices", token)
        assert (response.status_code, response.json()) == (401, {"detail": "invalid_token"})
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_optional_caller(realm: Realm, reports: Identity, server: str) -> None:
    assert get(server, "/catalog").json() == {"caller": None}
    assert get(server, "/catalog", realm.orders.token(BILLING)).json() == {"caller": ORDERS}
    assert get(server, "/catalog", reports.token(BILLING)).json() == {"caller": REPORTS}
    assert get(server, "/catalog", realm.ghost.token(BILLING)).status_code == 401


def test_openapi_shows_a_bearer_scheme(server: str) -> None:
    """Swagger UI shows its Authorize button when the schema has a security scheme."""
    schema = get(server, "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["SPIFFE"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT-SVID",
        "description": "A JWT-SVID whose audience is this service's SPIFFE ID.",
    }
    for path in ("/invoices", "/whoami", "/catalog"):
        assert schema["paths"][path]["get"]["security"] == [{"SPIFFE": []}]
    docs = get(server, "/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text


def test_middleware_rules_still_apply_first(realm: Realm, wrapped: str) -> None:
    # The middleware's own 401 body, before any dependency runs.
    response = get(wrapped, "/whoami")
    assert (response.status_code, response.json()) == (401, {"error": "missing_token"})


def test_dependency_on_a_path_the_middleware_exempts_verifies_itself(
    realm: Realm, reports: Identity, wrapped: str
) -> None:
    """The middleware's identity is at hand even where it read no token: fail closed."""
    assert get(wrapped, "/selfcheck").status_code == 401
    assert get(wrapped, "/selfcheck", realm.ghost.token(BILLING)).status_code == 401
    assert get(wrapped, "/selfcheck", reports.token(BILLING)).status_code == 403
    assert get(wrapped, "/selfcheck", realm.orders.token(BILLING)).json() == ORDERS


def test_dependency_without_identity_or_middleware_fails_closed(realm: Realm) -> None:
    app = FastAPI()

    @app.get("/x")
    def x(caller: Annotated[Caller, Security(require_caller(allow=["orders"]))]) -> str:
        return "never"

    with serve_asgi(app) as url:
        assert get(url, "/x", realm.orders.token(BILLING)).status_code == 500


def test_allow_is_checked_when_the_dependency_is_built(realm: Realm) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        require_caller(allow=["orders/"])
    with pytest.raises(InvalidSpiffeIdError):
        require_caller(realm.billing, allow="spiffe://example.org/orders?")
    require_caller(allow=authorize.member_of("example.org"))


def test_dependencies_are_plain_async_callables(realm: Realm) -> None:
    """What FastAPI inspects: an async function whose parameters it can inject."""
    import inspect

    dependency: Any = require_caller(realm.billing)
    assert inspect.iscoroutinefunction(dependency)
    assert list(inspect.signature(dependency).parameters) == ["request", "credentials"]
