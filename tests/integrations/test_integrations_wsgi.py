"""spiffile.integrations.wsgi and .requests: a WSGI app under wsgiref on 127.0.0.1.

Real server (``wsgiref.simple_server`` in a thread), real ``requests`` client,
real provisioned files.  ``billing`` serves; ``orders`` calls; ``ghost`` lives
in another root of the same trust domain, so billing's bundle does not know it.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

# The integration is optional: without requests these tests skip.
pytest.importorskip("requests")

import requests
from liveservers import serve_wsgi
from servicerealm import Realm, provision_realm

from spiffile import svid
from spiffile.integrations.requests import SpiffileAuth
from spiffile.integrations.wsgi import CALLER_KEY, SpiffileMiddleware, caller_from_environ
from spiffile.keys import kid_for, load_private_key_pem
from spiffile.provision import Root, load_identity, rotate_service

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"
GATEWAY = "spiffe://example.org/gateway"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("wsgi"))


def whoami(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The application: tells the caller who it was verified as (or that nobody was)."""
    caller = caller_from_environ(environ)
    body = json.dumps({"caller": None if caller is None else str(caller.id)}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture(scope="module")
def server(realm: Realm) -> Iterator[str]:
    app = SpiffileMiddleware(whoami, realm.billing, exempt_paths=["/healthz"])
    with serve_wsgi(app) as url:
        yield url


@pytest.fixture
def session(realm: Realm) -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.auth = SpiffileAuth(realm.orders, BILLING)
        yield s


def get_with(url: str, authorization: str | None) -> requests.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return requests.get(url, headers=headers, timeout=10)


def assert_invalid(response: requests.Response) -> None:
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {"error": "invalid_token"}


def service_key(root: Root, name: str) -> Any:
    return load_private_key_pem((root.path / "services" / name / "key.pem").read_bytes())


def test_session_is_seen_as_its_spiffe_id(session: requests.Session, server: str) -> None:
    for _ in range(3):
        response = session.get(f"{server}/whoami", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"caller": ORDERS}


def test_auth_sets_the_identity_token(realm: Realm) -> None:
    prepared = requests.Request(
        "GET", "http://127.0.0.1/", auth=SpiffileAuth(realm.orders, BILLING)
    ).prepare()
    assert prepared.headers["Authorization"] == f"Bearer {realm.orders.token(BILLING)}"


def test_missing_token(server: str) -> None:
    for authorization in (None, "Basic b3JkZXJzOnB3", "Token abc"):
        response = get_with(f"{server}/whoami", authorization)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json() == {"error": "missing_token"}


def test_unknown_identity_and_invalid_tokens_get_one_answer(
    realm: Realm, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spiffile.integrations")
    ghost_key = service_key(realm.stranger_root, "ghost")
    now = time.time()
    tokens = [
        realm.ghost.token(BILLING),  # Well signed, but billing does not know ghost.
        svid.mint(ghost_key, kid_for(ghost_key.public_key()), ORDERS, BILLING, now=now),
        realm.orders.token("spiffe://example.org/reports"),
        realm.orders.token(BILLING)[:-2],
    ]
    bodies = set()
    for token in tokens:
        response = get_with(f"{server}/whoami", f"Bearer {token}")
        assert_invalid(response)
        bodies.add(response.content)
    assert len(bodies) == 1
    codes = [getattr(r, "spiffile_code", None) for r in caplog.records]
    assert codes == ["unknown_identity", "signature", "audience", "malformed"]
    assert not any(token in r.getMessage() for token in tokens for r in caplog.records)


def test_repeated_authorization_headers_are_refused(realm: Realm, server: str) -> None:
    # wsgiref joins repeated headers with ",": that is never one valid token.
    good = f"Bearer {realm.orders.token(BILLING)}"
    connection = http.client.HTTPConnection(server.removeprefix("http://"), timeout=10)
    try:
        connection.putrequest("GET", "/whoami")
        connection.putheader("Authorization", good)
        connection.putheader("Authorization", good)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 401
        assert json.loads(response.read()) == {"error": "invalid_token"}
    finally:
        connection.close()


def test_exempt_path_needs_no_token_and_is_exact(server: str) -> None:
    response = get_with(f"{server}/healthz", None)
    assert response.status_code == 200
    assert response.json() == {"caller": None}
    for path in ("/healthz/", "/healthz/x", "/Healthz"):
        assert get_with(f"{server}{path}", None).status_code == 401


def test_audience_other_than_own_id(realm: Realm) -> None:
    # A gateway that terminates for a name other than its own identity.
    app = SpiffileMiddleware(whoami, realm.billing, audience=GATEWAY)
    with serve_wsgi(app) as url:
        with requests.Session() as s:
            s.auth = SpiffileAuth(realm.orders, GATEWAY)
            assert s.get(url, timeout=10).json() == {"caller": ORDERS}
        assert_invalid(get_with(url, f"Bearer {realm.orders.token(BILLING)}"))


def test_the_app_iterable_is_passed_through(realm: Realm) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"ok"

        def close(self) -> None:
            closed.append(True)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    with serve_wsgi(SpiffileMiddleware(app, realm.billing)) as url:
        response = get_with(url, f"Bearer {realm.orders.token(BILLING)}")
        assert response.text == "ok"
    assert closed == [True]  # The server saw the app's own iterable and closed it.


def test_caller_key_is_the_pep_3333_style_name() -> None:
    assert CALLER_KEY == "spiffile.caller"
    assert caller_from_environ({"spiffile.caller": "forged"}) is None


def test_rotation_is_picked_up_by_long_lived_session_and_server(realm: Realm, server: str) -> None:
    reports = load_identity(realm.root, "reports")
    with requests.Session() as s:
        s.auth = SpiffileAuth(reports, BILLING)
        assert s.get(f"{server}/whoami", timeout=10).json() == {
            "caller": "spiffe://example.org/reports"
        }
        old_kid, old_token = reports.kid, reports.token(BILLING)
        rotate_service(realm.root, "reports", keep_old=False)
        response = s.get(f"{server}/whoami", timeout=10)
        assert response.json() == {"caller": "spiffe://example.org/reports"}
        assert reports.kid != old_kid
        assert response.request.headers["Authorization"] != f"Bearer {old_token}"
    assert_invalid(get_with(f"{server}/whoami", f"Bearer {old_token}"))
