"""spiffile.integrations.flask: the extension and decorators under werkzeug's real server.

``billing`` serves; ``orders`` and ``reports`` call with requests; ``ghost`` is
unknown to billing's bundle.  Gunicorn runs the same kind of app in
``test_integrations_logging.py``.
"""

# ruff: noqa: E402
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

for _framework in ("flask", "requests"):
    pytest.importorskip(_framework)

import requests
from flask import Flask, g
from servicerealm import Realm, provision_realm
from werkzeug.serving import BaseWSGIServer, make_server

from spiffile import authorize
from spiffile.errors import InvalidSpiffeIdError
from spiffile.identity import Identity
from spiffile.integrations.flask import Spiffile, current_caller, optional_caller, require_caller
from spiffile.integrations.requests import SpiffileAuth
from spiffile.integrations.wsgi import SpiffileMiddleware
from spiffile.provision import load_identity

ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"
REPORTS = "spiffe://example.org/reports"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("flask"))


@pytest.fixture(scope="module")
def reports(realm: Realm) -> Identity:
    return load_identity(realm.root, "reports")


def build_app(identity: Identity | None) -> Flask:
    app = Flask(__name__)
    if identity is not None:
        Spiffile(app, identity)

    @app.get("/invoices")
    @require_caller(allow=["orders"])
    def invoices() -> dict[str, Any]:
        return {"caller": str(g.spiffile_caller.id)}

    @app.get("/whoami")
    @require_caller
    def whoami() -> dict[str, Any]:
        caller = current_caller()
        return {"caller": caller and str(caller.id)}

    @app.get("/domain")
    @require_caller(allow=authorize.member_of("example.org"))
    def domain() -> dict[str, Any]:
        return {"caller": str(g.spiffile_caller.id)}

    @app.get("/catalog")
    @optional_caller
    def catalog() -> dict[str, Any]:
        return {"caller": g.spiffile_caller and str(g.spiffile_caller.id)}

    return app


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture(scope="module")
def server(realm: Realm) -> Iterator[str]:
    with serve(build_app(realm.billing)) as url:
        yield url


def get(url: str, token: str | None = None) -> requests.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return requests.get(url, headers=headers, timeout=10)


def test_allowed_caller_with_a_session(realm: Realm, server: str) -> None:
    with requests.Session() as session:
        session.auth = SpiffileAuth(realm.orders, BILLING)
        for path in ("/invoices", "/whoami", "/domain", "/catalog"):
            response = session.get(server + path, timeout=10)
            assert (response.status_code, response.json()) == (200, {"caller": ORDERS})


def test_verified_but_not_allowed_is_403(reports: Identity, server: str) -> None:
    response = get(server + "/invoices", reports.token(BILLING))
    assert (response.status_code, response.json()) == (403, {"error": "insufficient_scope"})
    assert response.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope"'
    assert get(server + "/whoami", reports.token(BILLING)).json() == {"caller": REPORTS}


def test_missing_and_invalid_tokens_are_401(realm: Realm, server: str) -> None:
    response = get(server + "/invoices")
    assert (response.status_code, response.json()) == (401, {"error": "missing_token"})
    assert response.headers["WWW-Authenticate"] == "Bearer"
    for token in (realm.ghost.token(BILLING), realm.orders.token(REPORTS), "a.b.c"):
        response = get(server + "/invoices", token)
        assert (response.status_code, response.json()) == (401, {"error": "invalid_token"})


def test_optional_caller(realm: Realm, reports: Identity, server: str) -> None:
    assert get(server + "/catalog").json() == {"caller": None}
    assert get(server + "/catalog", reports.token(BILLING)).json() == {"caller": REPORTS}
    assert get(server + "/catalog", realm.ghost.token(BILLING)).status_code == 401


def test_without_the_extension_views_fail_closed(realm: Realm) -> None:
    with serve(build_app(None)) as url:
        for path in ("/invoices", "/whoami", "/catalog"):
            assert get(url + path, realm.orders.token(BILLING)).status_code == 500


def test_behind_the_wsgi_middleware_the_decorator_narrows(realm: Realm, reports: Identity) -> None:
    app = build_app(realm.billing)
    app.wsgi_app = SpiffileMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, realm.billing, allow=["orders", "reports"], optional_paths=["/catalog"]
    )
    with serve(app) as url:
        assert get(url + "/invoices", realm.orders.token(BILLING)).status_code == 200
        assert get(url + "/invoices", reports.token(BILLING)).status_code == 403
        assert get(url + "/whoami", reports.token(BILLING)).json() == {"caller": REPORTS}
        assert get(url + "/whoami").json() == {"error": "missing_token"}
        assert get(url + "/catalog").json() == {"caller": None}


def test_factory_pattern(realm: Realm) -> None:
    extension = Spiffile()
    app = build_app(None)
    extension.init_app(app, realm.billing)
    with serve(app) as url:
        assert get(url + "/invoices", realm.orders.token(BILLING)).status_code == 200
    with pytest.raises(TypeError):
        Spiffile().init_app(Flask(__name__))


def test_g_never_carries_a_caller_into_a_refused_view(realm: Realm) -> None:
    """A refusal answers before the view; g holds nothing from another request."""
    app = Flask(__name__)
    Spiffile(app, realm.billing)
    seen: list[Any] = []

    @app.before_request
    def plant() -> None:
        g.spiffile_caller = "planted"

    @app.get("/x")
    @require_caller(allow=["orders"])
    def x() -> str:
        seen.append(g.spiffile_caller)
        return "ok"

    with serve(app) as url:
        assert get(url + "/x").status_code == 401
        assert get(url + "/x", realm.orders.token(BILLING)).status_code == 200
    assert [str(caller.id) for caller in seen] == [ORDERS]


def test_allow_is_checked_at_decoration() -> None:
    with pytest.raises(InvalidSpiffeIdError):
        require_caller(allow=["orders/"])


def test_async_view(realm: Realm) -> None:
    pytest.importorskip("asgiref")  # Flask runs async views only with flask[async].
    app = Flask(__name__)
    Spiffile(app, realm.billing)

    @app.get("/a")
    @require_caller(allow="orders")
    async def a() -> dict[str, str]:
        return {"caller": str(g.spiffile_caller.id)}

    with serve(app) as url:
        assert get(url + "/a", realm.orders.token(BILLING)).json() == {"caller": ORDERS}
        assert get(url + "/a").status_code == 401
