"""go-spiffe's gRPC credentials (grpc-go) as live peers of spiffile's gRPC mutual TLS.

``grpcpeer`` serves and calls the standard health service
(``/grpc.health.v1.Health/Check``) with go-spiffe's
``grpccredentials.MTLSServerCredentials`` / ``MTLSClientCredentials`` and
``tlsconfig.AuthorizeID``, on files spiffile's producer wrote.  Both ways
work, and each side refuses the other when it expects another SPIFFE ID.
Skipped with the reason without Go (``SPIFFILE_REQUIRE_PEERS=1`` turns the
skip into a failure).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from peerbuild import PeerServer, require_peer, run_peer

pytest.importorskip("grpc")

import grpc

from spiffile import provision
from spiffile.identity import Identity
from spiffile.integrations.grpc import (
    current_peer_id,
    mtls_server_interceptor,
    secure_channel,
    server_credentials,
)
from spiffile.provision.x509 import enable_x509

pytestmark = pytest.mark.peers

TD = "example.org"
CHECK = "/grpc.health.v1.Health/Check"
#: HealthCheckResponse{status: SERVING} in protobuf wire format (field 1, varint 1).
SERVING = b"\x08\x01"


@pytest.fixture(scope="module")
def grpcpeer() -> Path:
    return require_peer("grpcpeer")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("grpc-peers") / "identity"
    provision.init_root(path, trust_domain=TD)
    enable_x509(path)
    for name in ("orders", "billing", "intruder"):
        provision.add_service(path, name)
    yield path


def identity(root: Path, name: str) -> Identity:
    return provision.load_identity(root, name)


def go_args(root: Path, name: str, allow: str) -> list[str]:
    env = provision.service_env(root, name)
    return [
        "-cert", env["SPIFFILE_X509_SVID_FILE"], "-key", env["SPIFFILE_X509_KEY_FILE"],
        "-trust-domain", TD, "-bundle", env["SPIFFILE_X509_BUNDLE_FILE"],
        "-allow", f"spiffe://{TD}/{allow}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def python_billing(root: Path) -> Iterator[tuple[str, list[str]]]:
    """spiffile's server admitting orders; the peers each Check saw."""
    billing = identity(root, "billing")
    seen: list[str] = []

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(str(current_peer_id()))
        return SERVING

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        interceptors=[mtls_server_interceptor(billing, allow=["orders"])],
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
            ),
        )
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials(billing))
    server.start()
    yield f"127.0.0.1:{port}", seen
    server.stop(None).wait(30)
    billing.close()


def test_go_client_calls_spiffile_server(
    grpcpeer: Path, root: Path, python_billing: tuple[str, list[str]]
) -> None:
    address, seen = python_billing
    done = run_peer(grpcpeer, "check", *go_args(root, "orders", "billing"), "-addr", address)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"status": "SERVING"}
    assert seen[-1] == f"spiffe://{TD}/orders"


def test_spiffile_server_refuses_a_go_client_it_does_not_allow(
    grpcpeer: Path, root: Path, python_billing: tuple[str, list[str]]
) -> None:
    address, seen = python_billing
    before = len(seen)
    done = run_peer(grpcpeer, "check", *go_args(root, "intruder", "billing"), "-addr", address)
    assert done.returncode == 1
    assert "PermissionDenied" in done.stderr and "insufficient_scope" in done.stderr
    assert len(seen) == before


def test_go_client_refuses_a_spiffile_server_it_does_not_expect(
    grpcpeer: Path, root: Path, python_billing: tuple[str, list[str]]
) -> None:
    address, seen = python_billing
    before = len(seen)
    done = run_peer(grpcpeer, "check", *go_args(root, "orders", "ledger"), "-addr", address)
    assert done.returncode == 1
    assert "Unavailable" in done.stderr
    assert len(seen) == before


@pytest.fixture(scope="module")
def go_billing(grpcpeer: Path, root: Path) -> Iterator[PeerServer]:
    with PeerServer(grpcpeer, "serve", *go_args(root, "billing", "orders")) as server:
        yield server


def check(root: Path, name: str, address: str, allow: str) -> Any:
    with secure_channel(identity(root, name), address, allow) as channel:
        health: Any = channel.unary_unary(CHECK)  # No generated stubs: raw bytes.
        try:
            return health(b"", timeout=20)
        except grpc.RpcError as error:
            return error.code()


def test_spiffile_client_calls_go_server(root: Path, go_billing: PeerServer) -> None:
    assert check(root, "orders", go_billing.info["addr"], "billing") == SERVING


def test_spiffile_client_refuses_a_go_server_it_does_not_expect(
    root: Path, go_billing: PeerServer
) -> None:
    assert check(root, "orders", go_billing.info["addr"], "ledger") == (grpc.StatusCode.UNAVAILABLE)


def test_go_server_refuses_a_spiffile_client_it_does_not_allow(
    root: Path, go_billing: PeerServer
) -> None:
    # go-spiffe authorizes in the handshake: the channel cannot connect.
    assert check(root, "intruder", go_billing.info["addr"], "billing") == (
        grpc.StatusCode.UNAVAILABLE
    )


def test_go_server_saw_only_orders(root: Path, grpcpeer: Path) -> None:
    """A server of its own, so its output is this test's alone."""
    with PeerServer(grpcpeer, "serve", *go_args(root, "billing", "orders")) as server:
        address = server.info["addr"]
        assert check(root, "orders", address, "billing") == SERVING
        assert check(root, "intruder", address, "billing") == grpc.StatusCode.UNAVAILABLE
        out = server.close()
    peers = [json.loads(line)["peer"] for line in out.splitlines() if line.strip()]
    assert peers == [f"spiffe://{TD}/orders"]
