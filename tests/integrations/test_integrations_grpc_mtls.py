"""gRPC over mutual TLS with X.509-SVIDs: real grpcio servers and clients on 127.0.0.1.

Identities come from a spiffile root with an X.509 CA (``enable_x509``);
hostile clients and servers get certificates forged with the root's own CA,
another trust domain's CA, or a CA nobody trusts.  The service uses generic
handlers over raw bytes (no generated code): ``/demo.Billing/Invoice``
(unary), ``Stream``, ``Upload``, ``Chat``, ``Refund`` (its own rule: reports
only), ``Health`` (exempt) and ``Peek`` (optional).  Each handler answers
with the peer it sees and counts its runs, so a refused call is shown never
to reach the application.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("grpc")

import grpc
import grpc.aio
from cryptography import x509

from spiffile import authorize, provision
from spiffile.errors import ConfigurationError, InvalidSpiffeIdError
from spiffile.files import atomic_write
from spiffile.identity import Identity
from spiffile.integrations.grpc import (
    aio_mtls_server_interceptor,
    aio_secure_channel,
    client_credentials,
    current_caller,
    current_peer,
    current_peer_id,
    mtls_server_interceptor,
    secure_channel,
    server_credentials,
    server_interceptor,
)
from spiffile.provision import x509 as px
from spiffile.provision.root import as_root
from spiffile.svid.x509 import load_certificates
from spiffile.tls import X509Source, peer_svid

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance._x509 import CertForge, Issued, pem  # noqa: E402

TD = "example.org"
OTHER = "other.example"
ORDERS = f"spiffe://{TD}/orders"
REPORTS = f"spiffe://{TD}/reports"
INTRUDER = f"spiffe://{TD}/intruder"
BILLING = f"spiffe://{TD}/billing"
SERVICE = "demo.Billing"
RULES: dict[str, Any] = {
    "allow": ["orders"],
    "rules": {f"/{SERVICE}/Refund": ["reports"]},
    "exempt": [f"/{SERVICE}/Health"],
    "optional": [f"/{SERVICE}/Peek"],
}
#: How many times each handler ran (a refused call must not move these).
RUNS: Counter[str] = Counter()


# -- the world -------------------------------------------------------------------------------


@dataclass
class World:
    root: Path
    identities: dict[str, Identity]
    ca: Issued
    other_ca: Issued
    stranger_ca: Issued
    forge: CertForge
    tmp: Path

    def source(self, name: str, leaf: Issued, *, federated: bool = False) -> X509Source:
        """An X509Source over files holding *leaf*, trusting example.org (and other.example).

        A leaf of other.example gets other.example's CA as its own bundle, and
        example.org's authorities as a federated domain.
        """
        directory = self.tmp / name
        directory.mkdir(parents=True, exist_ok=True)
        ours = (self.root / "svid_bundle.pem").read_bytes()
        extra: dict[str, list[x509.Certificate]] = {}
        if federated:
            extra[OTHER] = [self.other_ca.cert]
        own = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        if own.value.get_values_for_type(x509.UniformResourceIdentifier)[0].startswith(
            f"spiffe://{OTHER}/"
        ):
            extra[TD] = list(load_certificates(ours))
            ours = self.other_ca.pem
        atomic_write(directory / "svid.pem", leaf.pem)
        atomic_write(directory / "svid_key.pem", leaf.key_pem, mode=0o600)
        atomic_write(directory / "svid_bundle.pem", ours)
        return X509Source.from_dir(directory, federated=extra)

    def service_source(self, name: str, *, federated: bool = False) -> X509Source:
        """The service's own X.509 files in the root, optionally trusting other.example too."""
        paths = px.x509_env(self.root, name)
        extra = {OTHER: [self.other_ca.cert]} if federated else None
        return X509Source(
            paths["SPIFFILE_X509_SVID_FILE"],
            paths["SPIFFILE_X509_KEY_FILE"],
            paths["SPIFFILE_X509_BUNDLE_FILE"],
            federated=extra,
        )


def make_root(base: Path, names: tuple[str, ...]) -> tuple[Path, dict[str, Identity]]:
    root = base / "identity"
    provision.init_root(root, trust_domain=TD)
    px.enable_x509(root)
    identities = {}
    for name in names:
        provision.add_service(root, name)
        identities[name] = provision.load_identity(root, name)
    return root, identities


def root_ca(root: Path) -> Issued:
    cert, key = px._read_ca(as_root(root))
    return Issued(cert, key)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("grpc-mtls")
    root, identities = make_root(base, ("orders", "billing", "reports", "intruder"))
    forge = CertForge(int(time.time()))
    yield World(
        root,
        identities,
        root_ca(root),
        forge.authority("grpc/other-ca", OTHER),
        forge.authority("grpc/stranger-ca", TD),
        forge,
        base / "forged",
    )
    for identity in identities.values():
        identity.close()


# -- the service -----------------------------------------------------------------------------


def seen() -> bytes:
    peer = current_peer(required=False)
    return b"-" if peer is None else str(peer.id).encode()


class Deserialised:
    """Counts what the server handed to a request deserialiser."""

    count = 0

    @classmethod
    def parse(cls, data: bytes) -> bytes:
        cls.count += 1
        return data


def broken(data: bytes) -> bytes:
    raise ValueError("not a message")


def sync_handlers() -> grpc.GenericRpcHandler:
    def invoice(request: bytes, context: grpc.ServicerContext) -> bytes:
        RUNS["Invoice"] += 1
        return str(current_peer_id()).encode()

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        RUNS["Stream"] += 1
        for _ in range(3):
            yield seen()

    def upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return seen() + b" " + str(len(list(requests))).encode()

    def chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield seen() + b" " + request

    def serial(request: bytes, context: grpc.ServicerContext) -> bytes:
        return str(current_peer().leaf.serial_number).encode()

    def plain(request: bytes, context: grpc.ServicerContext) -> bytes:
        return seen()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Invoice": grpc.unary_unary_rpc_method_handler(
                invoice, request_deserializer=Deserialised.parse
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Serial": grpc.unary_unary_rpc_method_handler(serial),
            "Broken": grpc.unary_unary_rpc_method_handler(plain, request_deserializer=broken),
            "BrokenUpload": grpc.stream_unary_rpc_method_handler(
                upload, request_deserializer=broken
            ),
            "Refund": grpc.unary_unary_rpc_method_handler(plain),
            "Health": grpc.unary_unary_rpc_method_handler(plain),
            "Peek": grpc.unary_unary_rpc_method_handler(plain),
        },
    )


@contextlib.contextmanager
def sync_server(
    source: Identity | X509Source,
    *,
    credentials: grpc.ServerCredentials | None = None,
    options: tuple[tuple[str, Any], ...] = (),
    **rules: Any,
) -> Iterator[str]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[mtls_server_interceptor(source, **(rules or RULES))],
        options=options,
    )
    server.add_generic_rpc_handlers((sync_handlers(),))
    port = server.add_secure_port(
        "127.0.0.1:0", credentials if credentials is not None else server_credentials(source)
    )
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(30)


@pytest.fixture(scope="module")
def address(world: World) -> Iterator[str]:
    """billing, trusting other.example's CA too (so gRPC's TLS admits its chains)."""
    with sync_server(world.service_source("billing", federated=True)) as found:
        yield found


def rpc(channel: Any, kind: str, method: str) -> Any:
    """A multi-callable (typed as Any: the service has no generated stubs)."""
    return getattr(channel, kind)(f"/{SERVICE}/{method}")


def call(source: Identity | X509Source, address: str, method: str, allow: Any = BILLING) -> Any:
    """One unary call on a fresh channel: the answer, or the status code it failed with."""
    with secure_channel(source, address, allow) as channel:
        try:
            return rpc(channel, "unary_unary", method)(b"x", timeout=20)
        except grpc.RpcError as error:
            return error.code()


# -- admitted peers and per-method rules -----------------------------------------------------


def test_every_shape_sees_the_verified_peer(world: World, address: str) -> None:
    with secure_channel(world.identities["orders"], address, "billing") as channel:
        assert rpc(channel, "unary_unary", "Invoice")(b"x", timeout=20) == ORDERS.encode()
        streamed = list(rpc(channel, "unary_stream", "Stream")(b"x", timeout=20))
        assert streamed == [ORDERS.encode()] * 3
        uploaded = rpc(channel, "stream_unary", "Upload")(iter([b"a", b"b"]), timeout=20)
        assert uploaded == ORDERS.encode() + b" 2"
        chat = list(rpc(channel, "stream_stream", "Chat")(iter([b"1", b"2"]), timeout=20))
        assert chat == [ORDERS.encode() + b" 1", ORDERS.encode() + b" 2"]


def test_per_method_rules(world: World, address: str) -> None:
    ids = world.identities
    denied = grpc.StatusCode.PERMISSION_DENIED
    assert call(ids["intruder"], address, "Invoice") == denied
    assert call(ids["reports"], address, "Invoice") == denied
    assert call(ids["reports"], address, "Refund") == REPORTS.encode()
    assert call(ids["orders"], address, "Refund") == denied
    assert call(ids["intruder"], address, "Health") == b"-"  # Exempt: no peer attached.
    assert call(ids["intruder"], address, "Peek") == INTRUDER.encode()  # Optional: attached.


def test_refused_calls_never_reach_a_deserialiser_or_handler(world: World, address: str) -> None:
    before, runs = Deserialised.count, RUNS["Invoice"]
    assert call(world.identities["intruder"], address, "Invoice") == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert (Deserialised.count, RUNS["Invoice"]) == (before, runs)
    assert call(world.identities["orders"], address, "Invoice") == ORDERS.encode()
    assert (Deserialised.count, RUNS["Invoice"]) == (before + 1, runs + 1)


@pytest.mark.parametrize(
    ("kind", "method"), [("unary_unary", "Broken"), ("stream_unary", "BrokenUpload")]
)
def test_a_message_that_does_not_parse_is_an_internal_error(
    world: World, address: str, kind: str, method: str
) -> None:
    """Parsed only once the peer passed, a bad message gets what grpcio itself answers."""
    with secure_channel(world.identities["orders"], address, BILLING) as channel:
        request: Any = b"x" if kind == "unary_unary" else iter([b"x"])
        with pytest.raises(grpc.RpcError) as info:
            rpc(channel, kind, method)(request, timeout=20)
    error: Any = info.value
    assert error.code() == grpc.StatusCode.INTERNAL


def test_another_trust_domain_is_not_allowed(world: World, address: str) -> None:
    """A valid other.example SVID passes verification, then the rule (example.org) refuses it."""
    ghost = world.forge.leaf("grpc/ghost", world.other_ca, f"spiffe://{OTHER}/ghost")
    assert call(world.source("ghost", ghost), address, "Invoice") == (
        grpc.StatusCode.PERMISSION_DENIED
    )


def test_an_id_signed_by_another_trust_domain_is_unauthenticated(
    world: World, address: str, caplog: pytest.LogCaptureFixture
) -> None:
    """other.example's CA claiming example.org/orders: gRPC's pooled roots accept it, we do not."""
    forged = world.forge.leaf("grpc/forged-orders", world.other_ca, ORDERS)
    runs = RUNS["Invoice"]
    with caplog.at_level(logging.INFO, logger="spiffile.integrations"):
        answer = call(world.source("forged-orders", forged), address, "Invoice")
    assert answer == grpc.StatusCode.UNAUTHENTICATED
    assert RUNS["Invoice"] == runs
    assert any("x509_untrusted" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        assert "BEGIN" not in record.getMessage()  # No certificate or key text in a log line.


@pytest.mark.parametrize(
    ("name", "issuer", "options"),
    [
        ("unknown-authority", "stranger", {}),
        ("expired", "root", {"not_before": -7200, "not_after": -60}),
        ("not-yet-valid", "root", {"not_before": 3600, "not_after": 7200}),
    ],
)
def test_bad_client_chains_are_refused_in_the_handshake(
    world: World, address: str, name: str, issuer: str, options: dict[str, Any]
) -> None:
    """gRPC's TLS refuses these before any call: the channel cannot connect."""
    ca = world.stranger_ca if issuer == "stranger" else world.ca
    leaf = world.forge.leaf(f"grpc/{name}", ca, ORDERS, **options)
    runs = RUNS["Invoice"]
    assert call(world.source(name, leaf), address, "Invoice") == grpc.StatusCode.UNAVAILABLE
    assert RUNS["Invoice"] == runs


def test_a_client_without_a_certificate_gets_no_http2(world: World, address: str) -> None:
    """A TLS client presenting no certificate: the server ends the handshake, never speaks h2."""
    context = ssl.create_default_context(cadata=(world.root / "svid_bundle.pem").read_text())
    context.check_hostname = False
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00" * 1)
                tls.sendall(b"\x00\x00\x00\x00")
                # TLS 1.3: the refusal arrives as an alert on the first read.
                if not tls.recv(1024):
                    raise ConnectionError("closed without a byte")


def test_the_interceptor_alone_refuses_calls_without_tls(world: World) -> None:
    """On a port without TLS (local credentials) there is no certificate: UNAUTHENTICATED."""
    with sync_server(
        world.identities["billing"], credentials=grpc.local_server_credentials()
    ) as local:
        with grpc.secure_channel(local, grpc.local_channel_credentials()) as channel:
            with pytest.raises(grpc.RpcError) as info:
                rpc(channel, "unary_unary", "Invoice")(b"x", timeout=20)
            error: Any = info.value
            assert (error.code(), error.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "missing_certificate",
            )
            # An exempt method still works, with no peer.
            assert rpc(channel, "unary_unary", "Health")(b"x", timeout=20) == b"-"
            # An optional one too: no certificate, no peer, the call goes on.
            assert rpc(channel, "unary_unary", "Peek")(b"x", timeout=20) == b"-"


# -- what the client checks ------------------------------------------------------------------


def test_the_client_refuses_a_server_it_does_not_allow(
    world: World, address: str, caplog: pytest.LogCaptureFixture
) -> None:
    runs = RUNS["Invoice"]
    with caplog.at_level(logging.WARNING, logger="spiffile.integrations"):
        answer = call(world.identities["orders"], address, "Invoice", allow="ledger")
    assert answer == grpc.StatusCode.UNAVAILABLE
    assert RUNS["Invoice"] == runs  # Not one byte of the call reached billing.
    assert any(
        "tls_peer_rejected" in r.getMessage() and "billing is not allowed" in r.getMessage()
        for r in caplog.records
    )
    # Any verified server, said explicitly, is accepted.
    assert call(world.identities["orders"], address, "Invoice", allow=None) == ORDERS.encode()
    assert (
        call(world.identities["orders"], address, "Invoice", allow=authorize.member_of(TD))
        == ORDERS.encode()
    )


@pytest.mark.parametrize("override", [None, BILLING, "billing"])
def test_grpc_channel_tls_alone_cannot_reach_a_spiffe_server(
    world: World, address: str, override: str | None
) -> None:
    """Why secure_channel bridges: grpcio's channel TLS checks host names, never a URI SAN.

    With our own authorities, key and SVID, and whatever target name, grpcio
    refuses a server whose SVID names it only in a URI SAN (as every SPIFFE
    X.509-SVID does), so it cannot authenticate a SPIFFE server at all.  If
    a grpcio release changes this, this test says to look again.
    """
    paths = px.x509_env(world.root, "orders")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(paths["SPIFFILE_X509_BUNDLE_FILE"]).read_bytes(),
        private_key=Path(paths["SPIFFILE_X509_KEY_FILE"]).read_bytes(),
        certificate_chain=Path(paths["SPIFFILE_X509_SVID_FILE"]).read_bytes(),
    )
    options = [] if override is None else [("grpc.ssl_target_name_override", override)]
    with grpc.secure_channel(address, credentials, options=options) as channel:
        with pytest.raises(grpc.RpcError) as info:
            rpc(channel, "unary_unary", "Invoice")(b"x", timeout=20)
    error: Any = info.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_the_client_refuses_a_server_id_signed_by_another_trust_domain(world: World) -> None:
    """A server naming example.org/billing under other.example's CA, which the client trusts."""
    forged = world.forge.leaf("grpc/forged-billing", world.other_ca, f"spiffe://{TD}/billing")
    impostor = world.source("forged-billing", forged, federated=True)
    orders = world.service_source("orders", federated=True)
    with sync_server(impostor, allow=None) as address:
        runs = RUNS["Invoice"]
        assert call(orders, address, "Invoice") == grpc.StatusCode.UNAVAILABLE
        assert RUNS["Invoice"] == runs
        # The same server with an ID of its own domain is checked against the rule.
        assert call(orders, address, "Invoice", allow=f"spiffe://{TD}/billing") == (
            grpc.StatusCode.UNAVAILABLE
        )


def test_tokens_ride_on_a_mutual_tls_channel(world: World) -> None:
    """JWT call credentials compose with secure_channel; both interceptors check each call."""
    billing = world.identities["billing"]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        interceptors=[
            mtls_server_interceptor(billing, allow=["orders"]),
            server_interceptor(billing, allow=["orders"]),
        ],
    )

    def both(request: bytes, context: grpc.ServicerContext) -> bytes:
        return f"{current_peer_id()} {current_caller().id}".encode()

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Both": grpc.unary_unary_rpc_method_handler(both)}
            ),
        )
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials(billing))
    server.start()
    try:
        orders = world.identities["orders"]
        token = client_credentials(orders, "billing")
        with secure_channel(orders, f"127.0.0.1:{port}", "billing", call_credentials=token) as ch:
            assert rpc(ch, "unary_unary", "Both")(b"x", timeout=20) == f"{ORDERS} {ORDERS}".encode()
        # The right certificate without a token is still refused by the token interceptor.
        with secure_channel(orders, f"127.0.0.1:{port}", "billing") as channel:
            with pytest.raises(grpc.RpcError) as info:
                rpc(channel, "unary_unary", "Both")(b"x", timeout=20)
        error: Any = info.value
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop(None).wait(30)


def test_configuration_is_checked_when_built(world: World, tmp_path: Path) -> None:
    orders = world.identities["orders"]
    with pytest.raises(ConfigurationError):
        secure_channel(orders, "unix:/tmp/socket", "billing")
    with pytest.raises(ConfigurationError):
        secure_channel(orders, "billing", "billing")
    with pytest.raises(InvalidSpiffeIdError):
        secure_channel(orders, "127.0.0.1:1", "spiffe://Bad/billing")
    with pytest.raises(InvalidSpiffeIdError):
        mtls_server_interceptor(orders, allow="spiffe://Bad/orders")
    with pytest.raises(ValueError):
        mtls_server_interceptor(orders, rules={"no-slash": ["orders"]})
    root = tmp_path / "plain"
    provision.init_root(root, trust_domain=TD)
    provision.add_service(root, "plain")
    plain = provision.load_identity(root, "plain")
    with pytest.raises(ConfigurationError):
        server_credentials(plain)
    with pytest.raises(ConfigurationError):
        secure_channel(plain, "127.0.0.1:1", "billing")


def test_current_peer_outside_an_rpc_fails_closed() -> None:
    with pytest.raises(LookupError):
        current_peer()
    with pytest.raises(LookupError):
        current_peer_id()
    assert current_peer(required=False) is None


def test_closing_a_channel_removes_its_bridge(world: World, address: str) -> None:
    channel = secure_channel(world.identities["orders"], address, "billing")
    bridge: Any = channel._bridge  # type: ignore[attr-defined]
    socket_path = Path(bridge.target.removeprefix("unix:"))
    assert socket_path.exists()
    assert (socket_path.parent.stat().st_mode & 0o777) == 0o700
    assert rpc(channel, "unary_unary", "Invoice")(b"x", timeout=20) == ORDERS.encode()
    channel.close()
    assert not socket_path.parent.exists()


# -- asyncio ---------------------------------------------------------------------------------


def aio_handlers() -> grpc.GenericRpcHandler:
    async def invoice(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(0)
        return str(current_peer_id()).encode()

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield seen()

    async def upload(requests: AsyncIterator[bytes], context: Any) -> bytes:
        count = 0
        async for _ in requests:
            count += 1
        return seen() + b" " + str(count).encode()

    async def plain(request: bytes, context: Any) -> bytes:
        return seen()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Invoice": grpc.unary_unary_rpc_method_handler(invoice),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
            "Refund": grpc.unary_unary_rpc_method_handler(plain),
            "Health": grpc.unary_unary_rpc_method_handler(plain),
            "Peek": grpc.unary_unary_rpc_method_handler(plain),
        },
    )


async def aio_scenario(world: World) -> dict[str, Any]:
    billing = world.identities["billing"]
    server = grpc.aio.server(interceptors=[aio_mtls_server_interceptor(billing, **RULES)])
    server.add_generic_rpc_handlers((aio_handlers(),))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(billing))
    await server.start()
    address = f"127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:

        async def attempt(label: str, name: str, method: str, allow: Any = "billing") -> None:
            async with aio_secure_channel(world.identities[name], address, allow) as channel:
                try:
                    if method == "Stream":
                        responses = rpc(channel, "unary_stream", "Stream")(b"x", timeout=20)
                        results[label] = [item async for item in responses]
                    elif method == "Upload":
                        results[label] = await rpc(channel, "stream_unary", "Upload")(
                            iter([b"a", b"b", b"c"]), timeout=20
                        )
                    else:
                        answer = rpc(channel, "unary_unary", method)(b"x", timeout=20)
                        results[label] = await answer
                except grpc.aio.AioRpcError as error:
                    results[label] = error.code()

        await asyncio.gather(
            attempt("orders", "orders", "Invoice"),
            attempt("orders-stream", "orders", "Stream"),
            attempt("orders-upload", "orders", "Upload"),
            attempt("intruder", "intruder", "Invoice"),
            attempt("intruder-stream", "intruder", "Stream"),
            attempt("reports-refund", "reports", "Refund"),
            attempt("health", "intruder", "Health"),
            attempt("peek", "reports", "Peek"),
            attempt("wrong-server", "orders", "Invoice", allow="ledger"),
        )
        # A sync client against the asyncio server, from a worker thread.
        results["sync-client"] = await asyncio.to_thread(
            call, world.identities["orders"], address, "Invoice"
        )
    finally:
        await server.stop(None)
    return results


def test_asyncio_server_and_client(world: World) -> None:
    assert asyncio.run(aio_scenario(world)) == {
        "orders": ORDERS.encode(),
        "orders-stream": [ORDERS.encode()] * 3,
        "orders-upload": ORDERS.encode() + b" 3",
        "intruder": grpc.StatusCode.PERMISSION_DENIED,
        "intruder-stream": grpc.StatusCode.PERMISSION_DENIED,
        "reports-refund": REPORTS.encode(),
        "health": b"-",
        "peek": REPORTS.encode(),
        "wrong-server": grpc.StatusCode.UNAVAILABLE,
        "sync-client": ORDERS.encode(),
    }


# -- rotation --------------------------------------------------------------------------------


class Traffic:
    """Calls ``Serial`` on one long-lived channel in a loop; every call must succeed."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._call = rpc(channel, "unary_unary", "Serial")
        self.calls = 0
        self.failures: list[str] = []
        self.serials: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.serials.add(int(self._call(b"x", timeout=30)))
            except grpc.RpcError as error:
                self.failures.append(f"{error.code()}: {error.details()}")
            self.calls += 1

    def wait_for(self, serial: int, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while serial not in self.serials and time.monotonic() < deadline:
            time.sleep(0.02)
        return serial in self.serials

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def leaf_of(root: Path, name: str) -> x509.Certificate:
    path = Path(px.x509_env(root, name)["SPIFFILE_X509_SVID_FILE"])
    return load_certificates(path.read_bytes())[0]


def served_leaf(client: Identity, address: str) -> x509.Certificate:
    """The certificate a new TLS connection to *address* is served (checked by spiffile.tls)."""
    context = client.client_ssl_context(allow="billing")
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            return peer_svid(tls).leaf


def test_server_rotation_is_picked_up_with_no_failed_call(tmp_path: Path) -> None:
    """A CA rotation and re-issued SVIDs while a channel calls: no restart, no failed call."""
    root, ids = make_root(tmp_path, ("orders", "billing"))
    with sync_server(ids["billing"]) as address:
        with secure_channel(ids["orders"], address, "billing") as channel:
            traffic = Traffic(channel)
            try:
                assert traffic.wait_for(leaf_of(root, "orders").serial_number)
                old_ca = root_ca(root).cert
                px.rotate_ca(root)
                px.renew_svids(root, force=True)
                new_billing = leaf_of(root, "billing")
                new_billing.verify_directly_issued_by(root_ca(root).cert)  # Raises if not.
                # A new handshake is served the new SVID, from the new CA: no restart.
                assert served_leaf(ids["orders"], address) == new_billing
                assert root_ca(root).cert != old_ca
                # A new channel presents orders' new SVID and the server admits it.
                new_orders = leaf_of(root, "orders").serial_number
                with secure_channel(ids["orders"], address, "billing") as fresh:
                    serial = rpc(fresh, "unary_unary", "Serial")(b"x", timeout=20)
                    assert int(serial) == new_orders
                calls = traffic.calls
                deadline = time.monotonic() + 60
                while traffic.calls < calls + 20 and time.monotonic() < deadline:
                    time.sleep(0.02)
            finally:
                traffic.stop()
    assert traffic.failures == []
    assert traffic.calls >= calls + 20
    for identity in ids.values():
        identity.close()


def test_client_rotation_reaches_the_server_when_connections_are_recycled(
    tmp_path: Path,
) -> None:
    """A long-lived channel presents a renewed SVID once the server recycles its connection.

    ``grpc.max_connection_age_ms`` makes the server end connections gracefully
    (GOAWAY): calls in flight finish, the next ones go over a new connection,
    whose handshake the bridge makes with the newest files.
    """
    root, ids = make_root(tmp_path, ("orders", "billing"))
    options = (("grpc.max_connection_age_ms", 300), ("grpc.max_connection_age_grace_ms", 30000))
    with sync_server(ids["billing"], options=options) as address:
        with secure_channel(ids["orders"], address, "billing") as channel:
            traffic = Traffic(channel)
            try:
                assert traffic.wait_for(leaf_of(root, "orders").serial_number)
                px.issue_svid(root, "orders")
                assert traffic.wait_for(leaf_of(root, "orders").serial_number)
            finally:
                traffic.stop()
    assert traffic.failures == []
    for identity in ids.values():
        identity.close()


def test_forged_helper_writes_usable_pem(world: World) -> None:
    """The helper's files hold exactly the forged leaf (guards the tests above)."""
    leaf = world.forge.leaf("grpc/check", world.ca, ORDERS)
    source = world.source("check", leaf)
    assert source.svid.leaf == leaf.cert
    assert pem(leaf.cert) == leaf.pem


def test_a_retired_authority_is_refused_on_new_and_open_connections(tmp_path: Path) -> None:
    """Once the bundle drops a CA, its SVIDs are refused: per call on an open connection
    (the interceptor), and in the handshake of a new one (gRPC, with the refetched roots)."""
    root, ids = make_root(tmp_path, ("orders", "billing"))
    paths = px.x509_env(root, "orders")
    old = tmp_path / "old-orders"
    old.mkdir()
    for variable, name in (
        ("SPIFFILE_X509_SVID_FILE", "svid.pem"),
        ("SPIFFILE_X509_KEY_FILE", "svid_key.pem"),
        ("SPIFFILE_X509_BUNDLE_FILE", "svid_bundle.pem"),
    ):
        atomic_write(old / name, Path(paths[variable]).read_bytes(), mode=0o600)
    old_orders = X509Source.from_dir(old)
    with sync_server(ids["billing"]) as address:
        with secure_channel(old_orders, address, "billing") as channel:
            serial = rpc(channel, "unary_unary", "Serial")
            assert int(serial(b"x", timeout=20)) == old_orders.svid.leaf.serial_number
            px.rotate_ca(root)
            px.renew_svids(root, force=True)
            # Still published beside the new one: the old SVID keeps working.
            assert int(serial(b"x", timeout=20)) == old_orders.svid.leaf.serial_number
            # The producer drops the old CA (as renew does once its SVIDs expired).
            new_ca = root_ca(root).cert
            atomic_write(root / "svid_bundle.pem", pem(new_ca))
            atomic_write(old / "svid_bundle.pem", pem(new_ca))  # The client trusts billing's.
            with pytest.raises(grpc.RpcError) as info:
                serial(b"x", timeout=20)
            error: Any = info.value
            assert (error.code(), error.details()) == (
                grpc.StatusCode.UNAUTHENTICATED,
                "invalid_certificate",
            )
        assert call(old_orders, address, "Serial") == grpc.StatusCode.UNAVAILABLE
        renewed = call(ids["orders"], address, "Serial")
        assert int(renewed) == leaf_of(root, "orders").serial_number
    for identity in ids.values():
        identity.close()


# -- review findings (one test each, named for the finding) ----------------------------------


def test_aio_mtls_interceptor_drops_sync_response_streams(world: World) -> None:
    """A grpc.aio server runs a sync generator handler itself; behind the mutual TLS
    interceptor its stream came back empty with status OK and the handler never ran."""
    ran: list[bytes] = []

    def stream(request: bytes, context: Any) -> Iterator[bytes]:
        for _ in range(3):
            ran.append(seen())
            yield seen()

    handlers = grpc.method_handlers_generic_handler(
        SERVICE, {"Stream": grpc.unary_stream_rpc_method_handler(stream)}
    )

    async def scenario() -> list[bytes]:
        billing = world.identities["billing"]
        server = grpc.aio.server(
            interceptors=[aio_mtls_server_interceptor(billing, **RULES)],
            migration_thread_pool=futures.ThreadPoolExecutor(max_workers=2),
        )
        server.add_generic_rpc_handlers((handlers,))
        port = server.add_secure_port("127.0.0.1:0", server_credentials(billing))
        await server.start()
        try:
            address = f"127.0.0.1:{port}"
            async with aio_secure_channel(world.identities["orders"], address, "billing") as ch:
                return [item async for item in rpc(ch, "unary_stream", "Stream")(b"x", timeout=20)]
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == [ORDERS.encode()] * 3
    assert ran == [ORDERS.encode()] * 3


def test_bridge_socket_path_too_long_is_a_configuration_error(
    world: World, address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TMPDIR too long for a Unix socket path made secure_channel fail with a bare
    OSError ("AF_UNIX path too long"), not a SpiffileError, and left its directory."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with pytest.raises(ConfigurationError, match="TMPDIR"):
        secure_channel(world.identities["orders"], address, "billing")
    assert list(deep.iterdir()) == []


def test_aio_mtls_interceptor_runs_sync_handlers_on_the_event_loop(world: World) -> None:
    """grpc.aio runs a sync handler in a thread; behind the mutual TLS interceptor it ran
    on the event loop, so one blocking handler stalled every other call of the server."""
    loop_threads: list[bool] = []
    loop_thread: list[threading.Thread] = []

    def invoice(request: bytes, context: Any) -> bytes:
        loop_threads.append(threading.current_thread() is loop_thread[0])
        return seen()

    handlers = grpc.method_handlers_generic_handler(
        SERVICE, {"Invoice": grpc.unary_unary_rpc_method_handler(invoice)}
    )

    async def scenario() -> bytes:
        loop_thread.append(threading.current_thread())
        billing = world.identities["billing"]
        server = grpc.aio.server(interceptors=[aio_mtls_server_interceptor(billing, **RULES)])
        server.add_generic_rpc_handlers((handlers,))
        port = server.add_secure_port("127.0.0.1:0", server_credentials(billing))
        await server.start()
        try:
            address = f"127.0.0.1:{port}"
            async with aio_secure_channel(world.identities["orders"], address, "billing") as ch:
                answer: bytes = await rpc(ch, "unary_unary", "Invoice")(b"x", timeout=20)
                return answer
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == ORDERS.encode()
    assert loop_threads == [False]
