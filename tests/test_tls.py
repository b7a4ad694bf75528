"""Real mutual TLS handshakes on 127.0.0.1 with Python's ssl on both sides.

Each test writes X.509-SVID files (spiffe-helper layout), builds contexts with
:class:`spiffile.tls.X509Source` and runs a real server thread and client.
A refused peer must fail the connection before the refusing application
reads or writes a byte.
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from spiffile.errors import (
    ConfigurationError,
    PeerNotAllowedError,
    TLSPeerRejectedError,
    X509LeafCaError,
    X509UntrustedError,
    X509UriSanError,
)
from spiffile.files import atomic_write
from spiffile.spiffe_id import SpiffeId
from spiffile.tls import X509Source, peer_id, peer_svid

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance._x509 import CertForge, Issued, pem  # noqa: E402

TD = "example.org"
OTHER = "other.example"
SERVER = f"spiffe://{TD}/server"
CLIENT = f"spiffe://{TD}/client"


def write_svid(
    directory: Path, leaf: Issued, bundle: list[x509.Certificate], extra: tuple[Issued, ...] = ()
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / "svid.pem", leaf.pem + b"".join(i.pem for i in extra))
    atomic_write(directory / "svid_key.pem", leaf.key_pem, mode=0o600)
    atomic_write(directory / "svid_bundle.pem", pem(*bundle))
    return directory


@dataclass
class Realm:
    forge: CertForge
    root: Issued
    other_root: Issued
    stranger: Issued
    tmp: Path

    def svid(self, name: str, spiffe_id: str, issuer: Issued | None = None, **kw: Any) -> Path:
        leaf = self.forge.leaf(f"tls/{name}", issuer or self.root, spiffe_id, **kw)
        return write_svid(self.tmp / name, leaf, [self.root.cert])

    def source(self, directory: Path, **kw: Any) -> X509Source:
        kw.setdefault("federated", {OTHER: [self.other_root.cert]})
        return X509Source.from_dir(directory, **kw)


@pytest.fixture
def realm(tmp_path: Path) -> Realm:
    forge = CertForge(int(time.time()))
    return Realm(
        forge,
        forge.authority("tls/root", TD),
        forge.authority("tls/other-root", OTHER),
        forge.authority("tls/stranger", TD),
        tmp_path,
    )


@dataclass
class ServerResult:
    peer: SpiffeId | None = None
    data: bytes | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Server:
    """A TLS echo server on 127.0.0.1 serving one connection per accept."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(20)
        self.address = self.listener.getsockname()
        self.results: list[ServerResult] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            result = ServerResult()
            self.results.append(result)
            threading.Thread(target=self._serve, args=(conn, result), daemon=True).start()

    def _serve(self, conn: socket.socket, result: ServerResult) -> None:
        try:
            conn.settimeout(20)
            with self.context.wrap_socket(conn, server_side=True) as tls:
                result.peer = peer_id(tls)
                result.data = tls.recv(1024)
                tls.sendall(b"pong:" + result.data)
        except BaseException as exc:
            result.error = exc
        finally:
            conn.close()
            result.done.set()

    def wait(self, count: int = 1) -> list[ServerResult]:
        deadline = time.monotonic() + 30
        while len(self.results) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        for result in self.results[:count]:
            assert result.done.wait(30)
        return self.results[:count]

    def close(self) -> None:
        self._stop = True
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[ssl.SSLContext], Server]]:
    servers: list[Server] = []

    def start(context: ssl.SSLContext) -> Server:
        server = Server(context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def call(context: ssl.SSLContext, server: Server) -> tuple[SpiffeId, bytes]:
    with socket.create_connection(server.address, timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            seen = peer_id(tls)
            tls.sendall(b"ping")
            return seen, tls.recv(1024)


def only(spiffe_id: str) -> Callable[[SpiffeId], bool]:
    return lambda peer: str(peer) == spiffe_id


def test_allowed_peers_talk_and_know_each_other(realm: Realm, serve: Any) -> None:
    server_src = realm.source(realm.svid("server", SERVER))
    client_src = realm.source(realm.svid("client", CLIENT))
    server = serve(server_src.server_ssl_context(allow=only(CLIENT)))
    seen, reply = call(client_src.client_ssl_context(allow=only(SERVER)), server)
    assert str(seen) == SERVER
    assert reply == b"pong:ping"
    (result,) = server.wait()
    assert str(result.peer) == CLIENT and result.error is None


def test_server_refuses_a_client_it_does_not_allow(realm: Realm, serve: Any) -> None:
    server_src = realm.source(realm.svid("server", SERVER))
    client_src = realm.source(realm.svid("client", f"spiffe://{TD}/intruder"))
    server = serve(server_src.server_ssl_context(allow=only(CLIENT)))
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        _, reply = call(client_src.client_ssl_context(allow=only(SERVER)), server)
        # TLS 1.3: the client's handshake ends before the server saw its
        # certificate; the refusal shows as a closed connection.
        assert reply == b"pong:ping"
    (result,) = server.wait()
    assert isinstance(result.error, TLSPeerRejectedError)
    assert isinstance(result.error.error, PeerNotAllowedError)
    assert str(result.error.peer) == f"spiffe://{TD}/intruder"
    assert not result.data and result.peer is None


def test_client_refuses_a_server_it_does_not_allow(realm: Realm, serve: Any) -> None:
    server_src = realm.source(realm.svid("server", f"spiffe://{TD}/impostor"))
    client_src = realm.source(realm.svid("client", CLIENT))
    server = serve(server_src.server_ssl_context(allow=only(CLIENT)))
    with pytest.raises(TLSPeerRejectedError) as info:
        call(client_src.client_ssl_context(allow=only(SERVER)), server)
    assert info.value.code == "tls_peer_rejected"
    assert isinstance(info.value, ssl.SSLCertVerificationError)
    (result,) = server.wait()
    assert not result.data  # The client never sent its request.


def refused_client(realm: Realm, serve: Any, client_dir: Path) -> ServerResult:
    """Run one handshake with a bad client SVID; return what the server saw."""
    server_src = realm.source(realm.svid("server", SERVER))
    server = serve(server_src.server_ssl_context(allow=lambda _id: True))
    client_ctx = _raw_client_context(client_dir, realm)
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        with socket.create_connection(server.address, timeout=20) as raw:
            with client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"ping")
                assert tls.recv(1024) == b"pong:ping"
    (result,) = server.wait()
    assert result.error is not None
    assert not result.data and result.peer is None
    refused: ServerResult = result
    return refused


def _raw_client_context(client_dir: Path, realm: Realm) -> ssl.SSLContext:
    """A plain ssl client presenting whatever the files hold (no SPIFFE checks of its own)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(client_dir / "svid.pem", client_dir / "svid_key.pem")
    return context


def test_wrong_trust_domain_is_refused(realm: Realm, serve: Any) -> None:
    """An other.example ID signed by example.org's root: OpenSSL alone would accept it."""
    client = realm.svid("cross", f"spiffe://{OTHER}/client")
    result = refused_client(realm, serve, client)
    assert isinstance(result.error, TLSPeerRejectedError)
    assert isinstance(result.error.error, X509UntrustedError)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("expired", {"not_before": -7200, "not_after": -60}),
        ("not-yet-valid", {"not_before": 3600, "not_after": 7200}),
    ],
)
def test_certificates_outside_their_window_are_refused(
    realm: Realm, serve: Any, name: str, options: dict[str, Any]
) -> None:
    result = refused_client(realm, serve, realm.svid(name, CLIENT, **options))
    assert isinstance(result.error, ssl.SSLError)


def test_ca_as_leaf_is_refused(realm: Realm, serve: Any) -> None:
    ca_leaf = realm.forge.certificate(
        "tls/ca-leaf",
        issuer=realm.root,
        uris=[CLIENT],
        ca=True,
        usage=frozenset({"digital_signature", "key_cert_sign"}),
    )
    client = write_svid(realm.tmp / "ca-leaf", ca_leaf, [realm.root.cert])
    result = refused_client(realm, serve, client)
    assert isinstance(result.error, TLSPeerRejectedError)
    assert isinstance(result.error.error, X509LeafCaError)


def test_two_uri_sans_are_refused(realm: Realm, serve: Any) -> None:
    client = realm.svid("two-sans", CLIENT, uris=[CLIENT, f"spiffe://{TD}/admin"])
    result = refused_client(realm, serve, client)
    assert isinstance(result.error, TLSPeerRejectedError)
    assert isinstance(result.error.error, X509UriSanError)


def test_unknown_authority_is_refused(realm: Realm, serve: Any) -> None:
    client = realm.svid("stranger", CLIENT, issuer=realm.stranger)
    result = refused_client(realm, serve, client)
    assert isinstance(result.error, ssl.SSLCertVerificationError)


def test_intermediates_are_sent_and_checked(realm: Realm, serve: Any) -> None:
    inter = realm.forge.intermediate("tls/inter", realm.root, TD)
    leaf = realm.forge.leaf("tls/via-inter", inter, CLIENT)
    client_dir = write_svid(realm.tmp / "via-inter", leaf, [realm.root.cert], extra=(inter,))
    server_src = realm.source(realm.svid("server", SERVER))
    server = serve(server_src.server_ssl_context(allow=only(CLIENT)))
    client_src = realm.source(client_dir)
    seen, reply = call(client_src.client_ssl_context(allow=only(SERVER)), server)
    assert str(seen) == SERVER and reply == b"pong:ping"
    (result,) = server.wait()
    assert result.peer is not None


def test_unhandshaken_socket_cannot_exchange_data_unchecked(realm: Realm, serve: Any) -> None:
    """do_handshake_on_connect=False: the first send runs the checked handshake."""
    server_src = realm.source(realm.svid("server", f"spiffe://{TD}/impostor"))
    client_src = realm.source(realm.svid("client", CLIENT))
    server = serve(server_src.server_ssl_context(allow=lambda _id: True))
    context = client_src.client_ssl_context(allow=only(SERVER))
    with socket.create_connection(server.address, timeout=20) as raw:
        tls = context.wrap_socket(raw, do_handshake_on_connect=False)
        with pytest.raises(TLSPeerRejectedError):
            tls.sendall(b"ping")
        tls.close()
    (result,) = server.wait()
    assert not result.data


def test_peer_id_of_a_plain_socket_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        peer_id(object())


def test_rotation_mid_traffic_fails_no_connection(realm: Realm, serve: Any) -> None:
    """New leaf, new key and a new authority while clients connect in a loop."""
    server_dir = realm.svid("server", SERVER)
    server_src = realm.source(server_dir)
    client_src = realm.source(realm.svid("client", CLIENT))
    server = serve(server_src.server_ssl_context(allow=only(CLIENT)))
    client_ctx = client_src.client_ssl_context(allow=only(SERVER))
    serials: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()
    rotated = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(server.address, timeout=20) as raw:
                    with client_ctx.wrap_socket(raw) as tls:
                        tls.sendall(b"ping")
                        assert tls.recv(1024) == b"pong:ping"
                        serials.append(peer_svid(tls).leaf.serial_number)
            except BaseException as exc:
                failures.append(exc)
            if rotated.is_set() and len(serials) > 3 and serials[-1] == new_serial:
                stop.set()

    new_root = realm.forge.authority("tls/root-2", TD)
    new_leaf = realm.forge.leaf("tls/server-2", new_root, SERVER)
    new_serial = new_leaf.cert.serial_number
    worker = threading.Thread(target=traffic)
    worker.start()
    while len(serials) < 5 and not failures:
        time.sleep(0.01)
    # Overlap: both sides trust the new authority before anything is issued with it.
    both = [realm.root.cert, new_root.cert]
    atomic_write(realm.tmp / "client" / "svid_bundle.pem", pem(*both))
    atomic_write(server_dir / "svid_bundle.pem", pem(*both))
    # Then the server's SVID is replaced; key before certificate, as a producer
    # that is not atomic across two files may do.
    atomic_write(server_dir / "svid_key.pem", new_leaf.key_pem, mode=0o600)
    atomic_write(server_dir / "svid.pem", new_leaf.pem)
    rotated.set()
    worker.join(60)
    stop.set()
    assert not failures, failures[:3]
    assert serials[-1] == new_serial
    assert serials[0] != new_serial
    assert server_src.status().healthy


def test_status_reports_expiry(realm: Realm) -> None:
    source = realm.source(realm.svid("status", CLIENT, not_after=1800))
    status = source.status()
    assert status.healthy and str(status.id) == CLIENT
    assert status.expires_at == realm.forge.now + 1800


def test_mismatched_key_is_refused_at_load_and_kept_during_rotation(realm: Realm) -> None:
    directory = realm.svid("mismatch", CLIENT)
    source = realm.source(directory)
    served = source.svid.leaf.serial_number
    other = realm.forge.leaf("tls/mismatch-2", realm.root, CLIENT)
    atomic_write(directory / "svid.pem", other.pem)  # The key still is the old one.
    assert source.svid.leaf.serial_number == served
    status = source.status()
    assert not status.healthy and status.error is not None
    atomic_write(directory / "svid_key.pem", other.key_pem, mode=0o600)
    assert source.svid.leaf.serial_number == other.cert.serial_number
    assert source.status().healthy


def test_a_remembered_chain_is_checked_again_once_it_expires(realm: Realm, serve: Any) -> None:
    """Verified chains are remembered per context, but never past their validity window."""
    now = [float(realm.forge.now)]
    server_src = realm.source(realm.svid("server", SERVER), clock=lambda: now[0])
    client_src = realm.source(realm.svid("client", CLIENT))
    server = serve(server_src.server_ssl_context(allow=only(CLIENT)))
    client_ctx = client_src.client_ssl_context(allow=only(SERVER))
    assert call(client_ctx, server)[1] == b"pong:ping"
    assert call(client_ctx, server)[1] == b"pong:ping"
    now[0] += 7200  # The client's SVID (one hour) has expired for the server.
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        assert call(client_ctx, server)[1] == b"pong:ping"
    results = server.wait(3)
    assert [r.error is None for r in results] == [True, True, False]
    assert isinstance(results[2].error, TLSPeerRejectedError)
    assert results[2].error.error.code == "x509_expired"


def test_federated_authorities_from_a_trust_directory(realm: Realm, serve: Any) -> None:
    """other.example's authorities come from its SPIFFE bundle (x5c) in the trust directory."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization

    trust = realm.tmp / "trust"
    trust.mkdir()
    server_src = X509Source.from_dir(realm.svid("server", SERVER), trust_dir=trust)
    server = serve(server_src.server_ssl_context(allow=f"spiffe://{OTHER}/client"))
    foreign = realm.forge.leaf("tls/foreign", realm.other_root, f"spiffe://{OTHER}/client")
    client_dir = write_svid(realm.tmp / "foreign", foreign, [realm.other_root.cert])
    client_src = X509Source.from_dir(client_dir, federated={TD: [realm.root.cert]})
    client_ctx = client_src.client_ssl_context(allow=SERVER)
    # Before other.example's document exists, its peers are unknown.
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        assert call(client_ctx, server)[1] == b"pong:ping"
    der = realm.other_root.cert.public_bytes(serialization.Encoding.DER)
    document = {
        "keys": [{"use": "x509-svid", "kty": "EC", "x5c": [base64.b64encode(der).decode()]}]
    }
    atomic_write(trust / f"{OTHER}.json", json.dumps(document).encode())
    seen, reply = call(client_ctx, server)
    assert reply == b"pong:ping" and str(seen) == SERVER
    results = server.wait(2)
    assert results[0].error is not None and str(results[1].peer) == f"spiffe://{OTHER}/client"
