"""The X.509 subcommands of the go-spiffe peer work (X.509-SVID §4, §5), for the mTLS tests.

Certificates here come from a throwaway CA built with cryptography, so these
tests check the peer program itself (``verify-x509``, ``mtls-server``,
``mtls-client``): the tests of spiffile's own X.509-SVIDs and TLS contexts
drive the same subcommands against spiffile's files.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from peerbuild import PeerServer, peer_json, require_peer, run_peer

pytestmark = pytest.mark.peers

TD = "example.org"
SERVER = f"spiffe://{TD}/server"
CLIENT = f"spiffe://{TD}/client"
NOW = datetime.datetime.now(datetime.timezone.utc)


@pytest.fixture(scope="module")
def spiffepeer() -> Path:
    return require_peer("spiffepeer")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """bundle.pem, and <name>.pem / <name>.key (PKCS#8) for server and client SVIDs."""
    base = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5))
        .not_valid_after(NOW + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"bundle": base / "bundle.pem"}
    paths["bundle"].write_bytes(_pem(ca))
    for name, spiffe_id in (("server", SERVER), ("client", CLIENT)):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(minutes=5))
            .not_valid_after(NOW + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                critical=True,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        paths[name] = base / f"{name}.pem"
        paths[name].write_bytes(_pem(leaf))
        paths[f"{name}.key"] = base / f"{name}.key"
        paths[f"{name}.key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def test_verify_x509_names_the_spiffe_id(spiffepeer: Path, pki: dict[str, Path]) -> None:
    args = ["verify-x509", "-trust-domain", TD, "-bundle", str(pki["bundle"])]
    assert peer_json(spiffepeer, *args, "-cert", str(pki["server"]))["spiffe_id"] == SERVER
    later = int((NOW + datetime.timedelta(hours=2)).timestamp())
    done = run_peer(spiffepeer, *args, "-cert", str(pki["server"]), "-at", str(later))
    assert done.returncode == 1


def mtls_args(pki: dict[str, Path], name: str, allow: str) -> list[str]:
    return [
        "-cert", str(pki[name]), "-key", str(pki[f"{name}.key"]),
        "-trust-domain", TD, "-bundle", str(pki["bundle"]), "-allow", allow,
    ]  # fmt: skip


def test_mtls_server_and_client_authorize_each_other(
    spiffepeer: Path, pki: dict[str, Path]
) -> None:
    server = PeerServer(spiffepeer, "mtls-server", *mtls_args(pki, "server", CLIENT))
    try:
        addr = server.info["addr"]
        result = peer_json(
            spiffepeer, "mtls-client", *mtls_args(pki, "client", SERVER), "-addr", addr
        )
        assert result["server"] == SERVER
        assert json.loads(result["line"]) == {"peer": CLIENT}
        # A client that expects another server ID refuses the handshake.
        refused = run_peer(
            spiffepeer, "mtls-client", *mtls_args(pki, "client", CLIENT), "-addr", addr
        )
        assert refused.returncode == 1
        assert "unexpected ID" in refused.stderr
    finally:
        printed = server.close()
    assert {"peer": CLIENT} in [json.loads(line) for line in printed.splitlines()]
