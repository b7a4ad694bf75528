"""Per-path rules in the ASGI and WSGI middleware: one contract, run against both.

Each case goes over a real socket: the ASGI middleware under uvicorn, the
WSGI middleware under wsgiref, both on 127.0.0.1, with ``http.client`` so
the request path reaches the server byte for byte (dot segments included).
``billing`` serves; ``orders`` and ``reports`` call.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import pytest
from liveservers import serve_asgi, serve_wsgi
from servicerealm import Realm, provision_realm

from spiffile.errors import ConfigurationError, InvalidSpiffeIdError
from spiffile.identity import Identity
from spiffile.integrations import asgi, wsgi
from spiffile.integrations._rules import Access, Rules
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ORDERS = "spiffe://example.org/orders"
REPORTS = "spiffe://example.org/team/reports"
BILLING = "spiffe://example.org/billing"

#: The rules under test: the README's shape.
CONFIG: dict[str, Any] = {
    "allow": ["orders"],
    "rules": {"/reports/*": ["team/reports"], "/reports/summary": None},
    "exempt_paths": ["/healthz", "/docs/*"],
    "optional_paths": ["/catalog/*"],
}


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    realm = provision_realm(tmp_path_factory.mktemp("rules"))
    from spiffile.provision import add_service

    add_service(realm.root, "team/reports")
    return realm


@pytest.fixture(scope="module")
def reports(realm: Realm) -> Identity:
    from spiffile.provision import load_identity

    return load_identity(realm.root, "team/reports")


async def asgi_echo(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    caller = asgi.caller_from_scope(scope)
    await _send_json(send, {"path": scope["path"], "caller": caller and str(caller.id)})


async def _send_json(send: Any, data: dict[str, Any]) -> None:
    body = json.dumps(data).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi_echo(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    caller = wsgi.caller_from_environ(environ)
    body = json.dumps({"path": environ["PATH_INFO"], "caller": caller and str(caller.id)})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


def asgi_server(identity: Identity) -> AbstractContextManager[str]:
    return serve_asgi(asgi.SpiffileMiddleware(asgi_echo, identity, **CONFIG))


def wsgi_server(identity: Identity) -> AbstractContextManager[str]:
    return serve_wsgi(wsgi.SpiffileMiddleware(wsgi_echo, identity, **CONFIG))


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def server(request: pytest.FixtureRequest, realm: Realm) -> Iterator[str]:
    pytest.importorskip("uvicorn") if request.param == "asgi" else None
    start: Callable[[Identity], AbstractContextManager[str]] = (
        asgi_server if request.param == "asgi" else wsgi_server
    )
    with start(realm.billing) as url:
        yield url


def call(url: str, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """GET *path* exactly as written (no client-side normalisation)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# -- the contract ------------------------------------------------------------------------------


def test_default_rule_allows_only_the_listed_callers(
    realm: Realm, reports: Identity, server: str
) -> None:
    assert call(server, "/invoices", realm.orders.token(BILLING)) == (
        200,
        {"path": "/invoices", "caller": ORDERS},
    )
    assert call(server, "/invoices", reports.token(BILLING)) == (
        403,
        {"error": "insufficient_scope"},
    )
    assert call(server, "/invoices") == (401, {"error": "missing_token"})
    assert call(server, "/invoices", realm.ghost.token(BILLING)) == (
        401,
        {"error": "invalid_token"},
    )


def test_prefix_rule_and_exact_over_prefix(realm: Realm, reports: Identity, server: str) -> None:
    orders, team = realm.orders.token(BILLING), reports.token(BILLING)
    assert call(server, "/reports/q3", team)[0] == 200
    assert call(server, "/reports/q3", orders)[0] == 403
    assert call(server, "/reports/summary", orders)[0] == 200  # Exact wins: any caller.
    assert call(server, "/reports/summary", team)[0] == 200
    assert call(server, "/reports", team)[0] == 403  # "/reports/*" needs the slash.


def test_exempt_paths_read_no_token(realm: Realm, server: str) -> None:
    assert call(server, "/healthz") == (200, {"path": "/healthz", "caller": None})
    assert call(server, "/docs/index.html")[0] == 200
    # Even a good token attaches no caller on an exempt path.
    assert call(server, "/healthz", realm.orders.token(BILLING))[1]["caller"] is None
    assert call(server, "/healthz/")[0] == 401
    assert call(server, "/docs")[0] == 401


def test_optional_paths(realm: Realm, reports: Identity, server: str) -> None:
    assert call(server, "/catalog/a") == (200, {"path": "/catalog/a", "caller": None})
    assert call(server, "/catalog/a", realm.orders.token(BILLING))[1]["caller"] == ORDERS
    # Optional paths take any verified caller, not only the default allow-list.
    assert call(server, "/catalog/a", reports.token(BILLING))[1]["caller"] == REPORTS
    # A token that is there must verify.
    assert call(server, "/catalog/a", realm.ghost.token(BILLING)) == (
        401,
        {"error": "invalid_token"},
    )


@pytest.mark.parametrize(
    "path",
    ["/healthz/../invoices", "/docs/../invoices", "/catalog/../invoices", "//healthz/../invoices"],
)
def test_dot_segments_never_borrow_a_looser_rule(realm: Realm, server: str, path: str) -> None:
    assert call(server, path)[0] == 401
    # The normal form's rule applies too: reports is not on the default allow-list.
    assert call(server, path, realm.orders.token(BILLING))[0] == 200


def test_dot_segments_need_both_rules(realm: Realm, reports: Identity, server: str) -> None:
    path = "/docs/../reports/q3"  # Exempt as written, reports-only once normalised.
    assert call(server, path)[0] == 401
    assert call(server, path, realm.orders.token(BILLING))[0] == 403
    assert call(server, path, reports.token(BILLING))[0] == 200
    path = "/reports/q3/../../invoices"  # Reports-only as written, orders-only normalised.
    assert call(server, path, realm.orders.token(BILLING))[0] == 403
    assert call(server, path, reports.token(BILLING))[0] == 403


def test_403_is_explained_in_the_log(
    reports: Identity, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spiffile.integrations")
    token = reports.token(BILLING)
    assert call(server, "/reports/summary/x", token)[0] == 200
    assert call(server, "/invoices", token)[0] == 403
    [record] = [r for r in caplog.records if getattr(r, "spiffile_status", None) == 403]
    message = record.getMessage()
    assert REPORTS in message
    assert "one_of(spiffe://example.org/orders)" in message
    assert "<default>" in message
    assert token not in message
    assert record.spiffile_code == "not_allowed"  # type: ignore[attr-defined]


# -- construction ------------------------------------------------------------------------------


@pytest.mark.parametrize("middleware", [asgi.SpiffileMiddleware, wsgi.SpiffileMiddleware])
def test_bad_configuration_fails_at_start_up(realm: Realm, middleware: Any) -> None:
    cases: list[tuple[dict[str, Any], type[Exception]]] = [
        ({"exempt_paths": "/healthz"}, TypeError),
        ({"optional_paths": "/x"}, TypeError),
        ({"exempt_paths": ["healthz"]}, ValueError),
        ({"exempt_paths": ["/a*/b"]}, ValueError),
        ({"exempt_paths": ["/a"], "optional_paths": ["/a"]}, ValueError),
        ({"allow": ["orders/"]}, InvalidSpiffeIdError),
        ({"allow": []}, ConfigurationError),
        ({"rules": {"/x": ["SPIFFE://example.org/a"]}}, InvalidSpiffeIdError),
    ]
    for bad, error in cases:
        with pytest.raises(error):
            middleware(asgi_echo, realm.billing, **bad)


# -- the rule table, directly ------------------------------------------------------------------


def test_most_specific_pattern_wins() -> None:
    rules = Rules(
        allow=["a"],
        rules={"/x/*": ["b"], "/x/y/*": ["c"], "/x/y/z": ["d"]},
        exempt=["/x/y/z/*"],
        trust_domain="example.org",
    )

    def who(path: str) -> set[str]:
        rule = rules.match(path)
        if rule.access is Access.EXEMPT:
            return {"exempt"}
        return {n for n in "abcd" if rule.allows(SpiffeId(f"spiffe://example.org/{n}"))}

    assert who("/elsewhere") == {"a"}
    assert who("/x/1") == {"b"}
    assert who("/x/y/1") == {"c"}
    assert who("/x/y/z") == {"d"}
    assert who("/x/y/z/1") == {"exempt"}
    assert who("/x") == {"a"}


def test_rule_table_without_trust_domain_needs_full_ids() -> None:
    with pytest.raises(ConfigurationError):
        Rules(allow=["orders"])
    rules = Rules(rules={"/m": [ORDERS]})
    assert rules.match("/m").allows(SpiffeId(ORDERS))
    assert rules.match("/other").allows(SpiffeId(REPORTS))  # Default: any verified caller.
