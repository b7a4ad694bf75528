"""spiffile.integrations.asgi and .httpx: a FastAPI app under uvicorn on 127.0.0.1.

Real server, real clients (httpx sync and async, websockets), real provisioned
files.  ``billing`` serves; ``orders`` calls; ``ghost`` lives in another root of
the same trust domain, so billing's bundle does not know it.
"""

# ruff: noqa: E402
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest

# The integrations are optional: without their frameworks these tests skip.
for _framework in ("fastapi", "httpx", "uvicorn", "websockets"):
    pytest.importorskip(_framework)

import httpx
import uvicorn
import websockets.exceptions
import websockets.sync.client
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends, FastAPI, Request, WebSocket
from servicerealm import Realm, provision_realm

from spiffile import svid
from spiffile.identity import Identity
from spiffile.integrations.asgi import (
    SpiffileMiddleware,
    caller_from_scope,
    require_caller,
)
from spiffile.integrations.httpx import SpiffileAuth
from spiffile.keys import kid_for, load_private_key_pem
from spiffile.provision import Root, load_identity, rotate_service

ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"
INVALID_BODY = {"error": "invalid_token"}
#: The FastAPI dependency the README recommends.
VerifiedCaller = Annotated[svid.Caller, Depends(require_caller)]


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("asgi"))


def build_app(identity: Identity) -> Any:
    """FastAPI behind SpiffileMiddleware, the way the README shows it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"started": "yes"}  # Lifespan state: scope["state"] must keep it.

    api = FastAPI(lifespan=lifespan)

    @api.get("/whoami")
    def whoami(caller: VerifiedCaller) -> dict[str, str]:
        return {"caller": str(caller.id)}

    @api.get("/state")
    def state(request: Request) -> dict[str, str]:
        return {"caller": str(request.state.spiffile_caller.id), "started": request.state.started}

    @api.get("/healthz")
    def healthz(request: Request) -> dict[str, bool]:
        return {"ok": True, "has_caller": caller_from_scope(request.scope) is not None}

    @api.get("/misconfigured")
    def misconfigured(caller: VerifiedCaller) -> dict[str, str]:
        return {"caller": str(caller.id)}  # Exempt below: must never get here.

    @api.websocket("/ws")
    async def ws(websocket: WebSocket, caller: VerifiedCaller) -> None:
        await websocket.accept()
        await websocket.send_text(str(caller.id))
        await websocket.close()

    api.add_middleware(
        SpiffileMiddleware, identity=identity, exempt_paths={"/healthz", "/misconfigured"}
    )

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        # `?plain=1` hides the websocket.http.response extension, as servers
        # without it do, to exercise the close-with-1008 path.
        if scope["type"] == "websocket" and scope.get("query_string") == b"plain=1":
            scope = {**scope, "extensions": {}}
        await api(scope, receive, send)

    return outer


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Run *app* under uvicorn in a thread on an ephemeral 127.0.0.1 port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", ws="websockets-sansio", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


@pytest.fixture(scope="module")
def server(realm: Realm) -> Iterator[str]:
    with serve_asgi(build_app(realm.billing)) as address:
        yield address


@pytest.fixture
def client(realm: Realm, server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{server}", auth=SpiffileAuth(realm.orders, BILLING)) as c:
        yield c


def service_key(root: Root, name: str) -> ec.EllipticCurvePrivateKey:
    return load_private_key_pem((root.path / "services" / name / "key.pem").read_bytes())


def get_with(server: str, path: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(f"http://{server}{path}", headers=headers)


def assert_invalid(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == INVALID_BODY


# -- accepted calls ------------------------------------------------------------


def test_sync_client_is_seen_as_its_spiffe_id(client: httpx.Client) -> None:
    response = client.get("/whoami")
    assert response.status_code == 200
    assert response.json() == {"caller": ORDERS}


def test_caller_in_request_state_next_to_lifespan_state(client: httpx.Client) -> None:
    response = client.get("/state")
    assert response.json() == {"caller": ORDERS, "started": "yes"}


def test_async_client(realm: Realm, server: str) -> None:
    async def call() -> list[httpx.Response]:
        auth = SpiffileAuth(realm.orders, BILLING)
        async with httpx.AsyncClient(base_url=f"http://{server}", auth=auth) as c:
            return list(await asyncio.gather(*(c.get("/whoami") for _ in range(5))))

    for response in asyncio.run(call()):
        assert response.status_code == 200
        assert response.json() == {"caller": ORDERS}


def test_auth_sends_the_identity_token(realm: Realm) -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    flow = SpiffileAuth(realm.orders, BILLING).sync_auth_flow(request)
    sent = next(flow)
    assert sent.headers["Authorization"] == f"Bearer {realm.orders.token(BILLING)}"
    assert realm.billing.verify(sent.headers["Authorization"][7:]).id == realm.orders.id


def test_bad_audience_is_refused_when_the_auth_is_built(realm: Realm) -> None:
    from spiffile.errors import InvalidSpiffeIdError

    with pytest.raises(InvalidSpiffeIdError):
        SpiffileAuth(realm.orders, "https://billing.example.org")


def test_scheme_is_case_insensitive(realm: Realm, server: str) -> None:
    response = get_with(server, "/whoami", f"bearer {realm.orders.token(BILLING)}")
    assert response.json() == {"caller": ORDERS}


# -- refused calls -------------------------------------------------------------


def test_missing_token(server: str) -> None:
    for authorization in (None, "Basic b3JkZXJzOnB3"):
        response = get_with(server, "/whoami", authorization)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error": "missing_token"}


def test_unknown_identity_and_invalid_tokens_get_one_answer(
    realm: Realm, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spiffile.integrations")
    ghost_key = service_key(realm.stranger_root, "ghost")
    orders_key = service_key(realm.root, "orders")
    orders_kid = kid_for(orders_key.public_key())
    now = time.time()
    good = realm.orders.token(BILLING)
    tokens = {
        "unknown_identity": realm.ghost.token(BILLING),
        "forged": svid.mint(ghost_key, kid_for(ghost_key.public_key()), ORDERS, BILLING, now=now),
        "other_domain": svid.mint(ghost_key, "k", "spiffe://other.org/orders", BILLING, now=now),
        "wrong_audience": realm.orders.token("spiffe://example.org/reports"),
        "expired": svid.mint(orders_key, orders_kid, ORDERS, BILLING, now=now - 3600),
        "garbage": "not-a-token",
        "empty": "",
    }
    bodies = set()
    for token in tokens.values():
        response = get_with(server, "/whoami", f"Bearer {token}".strip())
        assert_invalid(response)
        bodies.add(response.content)
    assert len(bodies) == 1  # Byte for byte the same answer.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for code in ("unknown_identity", "signature", "audience", "expired", "malformed"):
        assert f": {code}: " in logged
    assert good not in logged
    for token in tokens.values():
        if token:
            assert token not in logged


def test_two_authorization_headers_are_refused(realm: Realm, server: str) -> None:
    good = f"Bearer {realm.orders.token(BILLING)}"
    response = httpx.get(
        f"http://{server}/whoami", headers=[("Authorization", good), ("Authorization", good)]
    )
    assert_invalid(response)


# -- exempt paths and misconfiguration ------------------------------------------


def test_exempt_path_needs_no_token(server: str) -> None:
    response = get_with(server, "/healthz", None)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "has_caller": False}


def test_exemption_is_exact(server: str) -> None:
    for path in ("/healthz/", "/healthz/x", "/HEALTHZ", "/healthzx"):
        assert get_with(server, path, None).status_code == 401


def test_require_caller_fails_closed_on_an_exempt_path(server: str) -> None:
    assert get_with(server, "/misconfigured", None).status_code == 500


def test_require_caller_without_middleware_raises() -> None:
    class Bare:
        scope: dict[str, Any] = {"type": "http"}  # noqa: RUF012

    with pytest.raises(LookupError, match="SpiffileMiddleware"):
        require_caller(Bare())  # type: ignore[arg-type]


def test_exempt_paths_must_not_be_a_string(realm: Realm) -> None:
    with pytest.raises(TypeError):
        SpiffileMiddleware(_never, realm.billing, exempt_paths="/healthz")


# -- websockets -------------------------------------------------------------------


def test_websocket_accepted(realm: Realm, server: str) -> None:
    headers = {"Authorization": f"Bearer {realm.orders.token(BILLING)}"}
    with websockets.sync.client.connect(
        f"ws://{server}/ws", additional_headers=headers, open_timeout=10
    ) as ws:
        assert ws.recv(timeout=10) == ORDERS


def test_websocket_refused_with_the_same_401(realm: Realm, server: str) -> None:
    headers = {"Authorization": f"Bearer {realm.ghost.token(BILLING)}"}
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        websockets.sync.client.connect(
            f"ws://{server}/ws", additional_headers=headers, open_timeout=10
        )
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.body == get_with(server, "/whoami", headers["Authorization"]).content


def test_websocket_refused_by_close_without_the_extension(server: str) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        websockets.sync.client.connect(f"ws://{server}/ws?plain=1", open_timeout=10)
    assert info.value.response.status_code == 403  # The ASGI spec's answer to close 1008.


# -- pass-through and rotation ------------------------------------------------------


def test_lifespan_passes_through(realm: Realm) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = SpiffileMiddleware(app, realm.billing)
    asyncio.run(middleware({"type": "lifespan"}, _never, _never))
    assert seen == ["lifespan"]


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")


def test_rotation_is_picked_up_by_long_lived_client_and_server(realm: Realm, server: str) -> None:
    reports = load_identity(realm.root, "reports")
    auth = SpiffileAuth(reports, BILLING)
    with httpx.Client(base_url=f"http://{server}", auth=auth) as c:
        assert c.get("/whoami").json() == {"caller": "spiffe://example.org/reports"}
        old_kid, old_token = reports.kid, reports.token(BILLING)
        rotate_service(realm.root, "reports", keep_old=False)
        response = c.get("/whoami")
        assert response.json() == {"caller": "spiffe://example.org/reports"}
        assert reports.kid != old_kid
        assert response.request.headers["Authorization"] != f"Bearer {old_token}"
    # The old key left the bundle: billing refuses what it signed, unrestarted.
    assert_invalid(get_with(server, "/whoami", f"Bearer {old_token}"))
