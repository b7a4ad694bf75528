"""httpx, requests and uvicorn over mutual TLS with X.509-SVIDs from a spiffile root."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spiffile import provision
from spiffile.errors import ConfigurationError, TLSPeerRejectedError
from spiffile.identity import Identity
from spiffile.integrations.mtls import asgi_peer_id, requests_session, uvicorn_config
from spiffile.provision.x509 import enable_x509

httpx = pytest.importorskip("httpx")
requests = pytest.importorskip("requests")
uvicorn = pytest.importorskip("uvicorn")

TD = "example.org"


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Identity]]:
    root = tmp_path_factory.mktemp("mtls") / "identity"
    provision.init_root(root, trust_domain=TD)
    enable_x509(root)
    loaded = {}
    for name in ("orders", "billing", "intruder"):
        provision.add_service(root, name)
        loaded[name] = provision.load_identity(root, name)
    yield loaded
    for identity in loaded.values():
        identity.close()


async def whoami(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    body = str(asgi_peer_id(scope)).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def billing_url(identities: dict[str, Identity]) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    context = identities["billing"].server_ssl_context(allow=["orders"])
    config = uvicorn_config(whoami, context, log_level="critical", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)


def test_httpx_client_reaches_billing_which_sees_orders(
    identities: dict[str, Identity], billing_url: str
) -> None:
    context = identities["orders"].client_ssl_context(allow="billing")
    with httpx.Client(verify=context) as client:
        response = client.get(f"{billing_url}/")
    assert response.status_code == 200
    assert response.text == f"spiffe://{TD}/orders"


def test_requests_session_reaches_billing(
    identities: dict[str, Identity], billing_url: str
) -> None:
    session = requests_session(identities["orders"].client_ssl_context(allow="billing"))
    with session:
        response = session.get(f"{billing_url}/", timeout=30)
    assert response.status_code == 200
    assert response.text == f"spiffe://{TD}/orders"


def test_billing_refuses_a_client_it_does_not_allow(
    identities: dict[str, Identity], billing_url: str
) -> None:
    context = identities["intruder"].client_ssl_context(allow="billing")
    with httpx.Client(verify=context) as client, pytest.raises(httpx.TransportError):
        client.get(f"{billing_url}/")


def test_a_client_refuses_a_server_it_does_not_expect(
    identities: dict[str, Identity], billing_url: str
) -> None:
    context = identities["orders"].client_ssl_context(allow="ledger")
    with httpx.Client(verify=context) as client, pytest.raises(httpx.ConnectError) as info:
        client.get(f"{billing_url}/")
    assert isinstance(info.value.__context__, TLSPeerRejectedError) or "peer refused" in str(
        info.value
    )


def test_plain_clients_get_nothing(billing_url: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with httpx.Client(verify=context) as client, pytest.raises(httpx.TransportError):
        client.get(f"{billing_url}/")


def test_asgi_peer_id_without_the_config_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        asgi_peer_id({"type": "http"})


def test_status_reports_the_certificate_expiry(
    identities: dict[str, Identity], tmp_path: Path
) -> None:
    status = identities["orders"].status()
    assert status.x509 is not None
    assert status.x509.expires_at > time.time() + 3000
