"""A spiffe-helper identity serves its X.509-SVID: mTLS, status and rotation on the helper's files.

The files are laid out as spiffe-helper writes them (the SVID, its PKCS#8 key
and the trust domain's authorities in ``cert_dir``, rewritten in place), under
the names the configuration gives rather than the defaults.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from spiffeforge import SpiffeRealm, authority
from tokenforge import NOW

from spiffile import Identity
from spiffile.errors import ConfigurationError, TLSPeerRejectedError
from spiffile.files import RECHECK_INTERVAL
from spiffile.keys import generate_private_key, private_key_to_pem
from spiffile.provision.x509 import make_authority, make_svid
from spiffile.spiffe_helper import SpiffeHelperIdentity
from spiffile.spiffe_id import SpiffeId
from spiffile.tls import peer_id

pytest.importorskip("hcl2")

TD = "example.org"
SPIRE = SpiffeRealm(trust_domain=TD, authorities=[authority("ES256", "spire-key-1")])

#: Names as in a Kubernetes spiffe-helper deployment, not the defaults.
CONFIG = """
agent_address = "/tmp/spire-agent/public/api.sock"
cmd = ""
cert_dir = "certs"
svid_file_name = "tls.crt"
svid_key_file_name = "tls.key"
svid_bundle_file_name = "ca.pem"
jwt_bundle_file_name = "jwt_bundle.json"
daemon_mode = true
jwt_svids = [{jwt_audience = "mys3", jwt_svid_file_name = "s3.token"}]
"""


class CA:
    """A trust domain's X.509 authority, as SPIRE's would be."""

    def __init__(self, now: float) -> None:
        self.key = generate_private_key()
        self.cert = make_authority(TD, self.key, now=now, ttl=86400)

    def issue(self, name: str, now: float) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = generate_private_key()
        leaf = make_svid(SpiffeId.parse(f"spiffe://{TD}/{name}"), key, self.cert, self.key,
                         now=now, ttl=3600)  # fmt: skip
        return leaf, key


def _write_in_place(path: Path, data: bytes, mode: int = 0o644) -> None:
    # spiffe-helper rewrites its files where they are (truncate, then write).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class HelperDir:
    """What spiffe-helper leaves on disk for one workload."""

    def __init__(self, base: Path, ca: CA, name: str, now: float) -> None:
        self.ca = ca
        self.name = name
        self.certs = base / "certs"
        self.certs.mkdir(parents=True)
        self.config = base / "helper.conf"
        self.config.write_text(CONFIG)
        jwt_bundle = {TD: base64.b64encode(SPIRE.jwks_bytes()).decode()}
        (self.certs / "jwt_bundle.json").write_text(json.dumps(jwt_bundle))
        (self.certs / "s3.token").write_text(SPIRE.token(name, ["mys3"], now=int(now)))
        self.write_svid(now)

    def write_svid(self, now: float) -> x509.Certificate:
        leaf, key = self.ca.issue(self.name, now)
        _write_in_place(self.certs / "tls.key", private_key_to_pem(key), 0o600)
        _write_in_place(self.certs / "tls.crt", leaf.public_bytes(serialization.Encoding.PEM))
        bundle = self.ca.cert.public_bytes(serialization.Encoding.PEM)
        _write_in_place(self.certs / "ca.pem", bundle)
        return leaf


@pytest.fixture
def helpers(tmp_path: Path) -> dict[str, HelperDir]:
    ca = CA(time.time())
    return {
        name: HelperDir(tmp_path / name, ca, name, time.time())
        for name in ("orders", "billing", "intruder")
    }


def _handshake(
    server: ssl.SSLContext, client: ssl.SSLContext
) -> tuple[SpiffeId | BaseException, SpiffeId | BaseException, bytes]:
    """One real handshake on 127.0.0.1: what each side saw, and the server's leaf (DER)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[SpiffeId | BaseException] = []

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
        raw = socket.create_connection(listener.getsockname(), timeout=30)
        with client.wrap_socket(raw) as tls:
            leaf = tls.getpeercert(binary_form=True) or b""
            client_saw: SpiffeId | BaseException = peer_id(tls)
            try:
                tls.recv(2)
            except (OSError, ssl.SSLError) as exc:
                client_saw = exc
    finally:
        thread.join(30)
        listener.close()
    return seen[0], client_saw, leaf


def test_the_helper_identity_does_mtls_on_the_configured_files(
    helpers: dict[str, HelperDir],
) -> None:
    orders = Identity.from_spiffe_helper(helpers["orders"].config)
    billing = Identity.from_spiffe_helper(helpers["billing"].config)
    assert isinstance(orders, SpiffeHelperIdentity)
    certs = helpers["orders"].certs
    assert orders.x509.paths == tuple(
        os.fspath(certs / n) for n in ("tls.crt", "tls.key", "ca.pem")
    )
    assert str(orders.id) == f"spiffe://{TD}/orders"
    server_saw, client_saw, _ = _handshake(
        billing.server_ssl_context(allow=["orders"]), orders.client_ssl_context(allow="billing")
    )
    assert server_saw == SpiffeId.parse(f"spiffe://{TD}/orders")
    assert client_saw == SpiffeId.parse(f"spiffe://{TD}/billing")


def test_the_helper_identity_refuses_a_peer_it_does_not_allow(
    helpers: dict[str, HelperDir],
) -> None:
    intruder = Identity.from_spiffe_helper(helpers["intruder"].config)
    billing = Identity.from_spiffe_helper(helpers["billing"].config)
    server_saw, _, _ = _handshake(
        billing.server_ssl_context(allow=["orders"]), intruder.client_ssl_context(allow="billing")
    )
    assert isinstance(server_saw, TLSPeerRejectedError)
    assert server_saw.peer == SpiffeId.parse(f"spiffe://{TD}/intruder")


def test_status_reports_the_certificate_and_follows_the_helpers_renewal(
    helpers: dict[str, HelperDir],
) -> None:
    orders = Identity.from_spiffe_helper(helpers["orders"].config)
    billing = Identity.from_spiffe_helper(helpers["billing"].config)
    first = x509.load_pem_x509_certificate((helpers["billing"].certs / "tls.crt").read_bytes())
    status = billing.status()
    assert status.healthy and status.x509 is not None
    assert status.x509.expires_at == first.not_valid_after_utc.timestamp()

    server = billing.server_ssl_context(allow=["orders"])
    client = orders.client_ssl_context(allow="billing")
    # The helper renews billing's SVID later (a later validity window), in place.
    renewed = helpers["billing"].write_svid(time.time() + 30)
    assert renewed.serial_number != first.serial_number
    time.sleep(RECHECK_INTERVAL)  # The helper is another process: seen within 50 ms.
    server_saw, _, leaf = _handshake(server, client)
    assert server_saw == SpiffeId.parse(f"spiffe://{TD}/orders")
    assert leaf == renewed.public_bytes(serialization.Encoding.DER)
    x509_status = billing.status().x509
    assert x509_status is not None
    assert x509_status.expires_at == renewed.not_valid_after_utc.timestamp()


def test_before_the_helper_wrote_an_svid_the_identity_has_no_x509(tmp_path: Path) -> None:
    base = tmp_path / "early"
    (base / "certs").mkdir(parents=True)
    (base / "helper.conf").write_text(CONFIG)
    jwt_bundle = {TD: base64.b64encode(SPIRE.jwks_bytes()).decode()}
    (base / "certs" / "jwt_bundle.json").write_text(json.dumps(jwt_bundle))
    (base / "certs" / "s3.token").write_text(SPIRE.token("myservice", ["mys3"], now=NOW))
    identity = Identity.from_spiffe_helper(base / "helper.conf", clock=lambda: NOW)
    assert str(identity.id) == f"spiffe://{TD}/myservice"
    assert identity.status().x509 is None
    with pytest.raises(ConfigurationError, match=r"no X\.509-SVID files"):
        identity.server_ssl_context(allow=["orders"])


def test_an_svid_without_its_key_is_a_configuration_error(helpers: dict[str, HelperDir]) -> None:
    (helpers["orders"].certs / "tls.key").unlink()
    with pytest.raises(ConfigurationError, match="key"):
        Identity.from_spiffe_helper(helpers["orders"].config)


def test_from_env_gives_the_helper_identity_its_x509(helpers: dict[str, HelperDir]) -> None:
    config = os.fspath(helpers["orders"].config)
    with Identity.from_env({"SPIFFILE_SPIFFE_HELPER_CONFIG": config}) as identity:
        assert identity.x509.id == identity.id
        assert identity.watch() is identity  # The X.509 files are watched with the rest.
