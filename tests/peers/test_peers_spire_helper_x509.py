"""SPIRE-issued X.509-SVIDs behind a spiffe-helper configuration: mTLS from SPIRE's own files.

A real SPIRE v1.13.3 server and agent (``pytest -m spire``) issue an
X.509-SVID; ``spire-agent api fetch x509 -write`` puts it on disk as
``svid.0.pem``, ``svid.0.key`` and ``bundle.0.pem``.  A spiffe-helper
configuration naming those files (not the defaults) gives an identity that
does mutual TLS with them, checks the chain against SPIRE's authority and
reports the certificate's expiry.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from peerbuild import require_peer
from spirerealm import SpireDeployment

from spiffile import Identity
from spiffile.errors import TLSPeerRejectedError
from spiffile.spiffe_id import SpiffeId
from spiffile.tls import peer_id

pytestmark = pytest.mark.spire
pytest.importorskip("hcl2")


@pytest.fixture(scope="module")
def spire() -> Iterator[SpireDeployment]:
    bin_dir = require_peer("spire").parent
    with SpireDeployment(bin_dir) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def helper_config(spire: SpireDeployment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("spire-helper")
    certs = spire.fetch_x509(base / "certs")
    _, bundles = spire.fetch_jwt("warm-up")
    helper_map = {td: base64.b64encode(jwks).decode() for td, jwks in bundles.items()}
    (certs / "jwt_bundle.json").write_text(json.dumps(helper_map))
    config = base / "helper.conf"
    config.write_text(
        f"""
agent_address = "{spire.agent_socket}"
cmd = ""
cert_dir = "{certs}"
svid_file_name = "svid.0.pem"
svid_key_file_name = "svid.0.key"
svid_bundle_file_name = "bundle.0.pem"
jwt_bundle_file_name = "jwt_bundle.json"
daemon_mode = false
"""
    )
    return config


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> list[object]:
    """What the server side saw of one real handshake on 127.0.0.1, then the client side."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[object] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                seen.append(peer_id(tls))
                tls.sendall(b"ok")
        except (OSError, ssl.SSLError) as exc:
            seen.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(socket.create_connection(listener.getsockname(), 30)) as tls:
            client_saw: object = peer_id(tls)
            try:
                tls.recv(2)
            except (OSError, ssl.SSLError) as exc:
                client_saw = exc
    finally:
        thread.join(30)
        listener.close()
    return [*seen, client_saw]


def test_spire_x509_svid_through_a_helper_config_does_mtls(
    spire: SpireDeployment, helper_config: Path
) -> None:
    identity = Identity.from_spiffe_helper(helper_config)
    workload = SpiffeId.parse(spire.workload_id)
    assert identity.id == workload
    leaf = x509.load_pem_x509_certificates(
        (helper_config.parent / "certs" / "svid.0.pem").read_bytes()
    )[0]
    status = identity.status().x509
    assert status is not None and status.healthy
    assert status.expires_at == leaf.not_valid_after_utc.timestamp()
    server_saw, client_saw = _handshake(
        identity.server_ssl_context(allow=[spire.workload_id]),
        identity.client_ssl_context(allow=spire.workload_id),
    )
    assert server_saw == workload and client_saw == workload


def test_a_spire_peer_the_server_does_not_allow_is_refused(
    spire: SpireDeployment, helper_config: Path
) -> None:
    identity = Identity.from_spiffe_helper(helper_config)
    server_saw, _ = _handshake(
        identity.server_ssl_context(allow=[f"spiffe://{spire.trust_domain}/someone-else"]),
        identity.client_ssl_context(allow=spire.workload_id),
    )
    assert isinstance(server_saw, TLSPeerRejectedError)
    assert server_saw.peer == SpiffeId.parse(spire.workload_id)
