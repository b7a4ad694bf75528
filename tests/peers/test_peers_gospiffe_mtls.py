"""go-spiffe v2.9.0 as a live mTLS peer of spiffile's contexts, on files spiffile's producer wrote.

``x509svid.Verify`` (``spiffepeer verify-x509``) accepts our SVIDs; a Go
``tlsconfig.MTLSServerConfig``/``MTLSClientConfig`` with ``AuthorizeID``
completes mutual TLS with our client and server contexts, and each side
refuses the other when it expects another SPIFFE ID.  Skipped with the
reason without Go (``SPIFFILE_REQUIRE_PEERS=1`` turns the skip into a failure).
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from peerbuild import PeerServer, peer_json, require_peer, run_peer

from spiffile import provision
from spiffile.errors import TLSPeerRejectedError
from spiffile.provision.x509 import enable_x509
from spiffile.tls import X509Source, peer_id

pytestmark = pytest.mark.peers

TD = "example.org"
SERVER = f"spiffe://{TD}/server"
CLIENT = f"spiffe://{TD}/client"


@pytest.fixture(scope="module")
def spiffepeer() -> Path:
    return require_peer("spiffepeer")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gospiffe-mtls") / "identity"
    provision.init_root(path, trust_domain=TD)
    enable_x509(path)
    for name in ("server", "client"):
        provision.add_service(path, name)
    return path


def files(root: Path, name: str) -> dict[str, str]:
    return provision.service_env(root, name)


def go_args(root: Path, name: str, allow: str) -> list[str]:
    env = files(root, name)
    return [
        "-cert", env["SPIFFILE_X509_SVID_FILE"], "-key", env["SPIFFILE_X509_KEY_FILE"],
        "-trust-domain", TD, "-bundle", env["SPIFFILE_X509_BUNDLE_FILE"], "-allow", allow,
    ]  # fmt: skip


def source(root: Path, name: str) -> X509Source:
    env = files(root, name)
    return X509Source(
        env["SPIFFILE_X509_SVID_FILE"],
        env["SPIFFILE_X509_KEY_FILE"],
        env["SPIFFILE_X509_BUNDLE_FILE"],
    )


def test_go_spiffe_verifies_our_svids(spiffepeer: Path, root: Path) -> None:
    for name, spiffe_id in (("server", SERVER), ("client", CLIENT)):
        env = files(root, name)
        result = peer_json(
            spiffepeer, "verify-x509", "-trust-domain", TD,
            "-bundle", env["SPIFFILE_X509_BUNDLE_FILE"], "-cert", env["SPIFFILE_X509_SVID_FILE"],
        )  # fmt: skip
        assert result["spiffe_id"] == spiffe_id


def test_our_client_and_a_go_server(spiffepeer: Path, root: Path) -> None:
    with PeerServer(spiffepeer, "mtls-server", *go_args(root, "server", CLIENT)) as server:
        host, port = server.info["addr"].rsplit(":", 1)
        context = source(root, "client").client_ssl_context(allow=SERVER)
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            with context.wrap_socket(raw) as tls:
                assert str(peer_id(tls)) == SERVER
                line = tls.recv(4096)
        assert json.loads(line) == {"peer": CLIENT}
        # Expecting another server ID, our client refuses the Go server.
        wrong = source(root, "client").client_ssl_context(allow=f"spiffe://{TD}/ledger")
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            with pytest.raises(TLSPeerRejectedError):
                wrong.wrap_socket(raw)


def _serve_once(context: object, listener: socket.socket, seen: list[object]) -> None:
    conn, _ = listener.accept()
    conn.settimeout(30)
    try:
        with context.wrap_socket(conn, server_side=True) as tls:  # type: ignore[attr-defined]
            seen.append(peer_id(tls))
            tls.sendall(json.dumps({"peer": str(peer_id(tls))}).encode() + b"\n")
    except Exception as exc:
        seen.append(exc)
    finally:
        conn.close()


def test_a_go_client_and_our_server(spiffepeer: Path, root: Path) -> None:
    context = source(root, "server").server_ssl_context(allow=CLIENT)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    addr = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        seen: list[object] = []
        worker = threading.Thread(target=_serve_once, args=(context, listener, seen))
        worker.start()
        result = peer_json(
            spiffepeer, "mtls-client", *go_args(root, "client", SERVER), "-addr", addr
        )
        worker.join(60)
        assert result["server"] == SERVER
        assert json.loads(result["line"]) == {"peer": CLIENT}
        assert [str(s) for s in seen] == [CLIENT]
        # The Go client expecting another server ID refuses ours.
        seen.clear()
        worker = threading.Thread(target=_serve_once, args=(context, listener, seen))
        worker.start()
        refused = run_peer(
            spiffepeer, "mtls-client", *go_args(root, "client", f"spiffe://{TD}/ledger"),
            "-addr", addr,
        )  # fmt: skip
        worker.join(60)
        assert refused.returncode == 1 and "unexpected ID" in refused.stderr
    finally:
        listener.close()


def test_our_server_refuses_a_go_client_it_does_not_allow(spiffepeer: Path, root: Path) -> None:
    context = source(root, "server").server_ssl_context(allow=f"spiffe://{TD}/ledger")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    addr = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        seen: list[object] = []
        worker = threading.Thread(target=_serve_once, args=(context, listener, seen))
        worker.start()
        done = run_peer(spiffepeer, "mtls-client", *go_args(root, "client", SERVER), "-addr", addr)
        worker.join(60)
        # TLS 1.3: the Go client's handshake ends before ours has seen its
        # certificate; it learns of the refusal as a closed connection with
        # no reply (an error, or an empty line, depending on timing).
        assert done.returncode == 1 or json.loads(done.stdout.splitlines()[-1])["line"] == ""
        assert len(seen) == 1 and isinstance(seen[0], TLSPeerRejectedError)
    finally:
        listener.close()
