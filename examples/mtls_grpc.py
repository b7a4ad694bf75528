"""orders calls billing over gRPC with mutual TLS (X.509-SVIDs), through a rotation of everything.

Run it with a provisioned root holding an X.509 CA and the services
``orders`` and ``billing``, or with no argument to use a temporary one::

    pip install 'spiffile[grpc]'
    spiffile init --root ./identity --trust-domain example.org --x509
    spiffile add --root ./identity orders billing
    python examples/mtls_grpc.py ./identity

Or point it at two directories laid out by spiffe-helper (``svid.pem``,
``svid_key.pem``, ``svid_bundle.pem``): the same code serves them::

    python examples/mtls_grpc.py --spiffe-helper ./orders-certs ./billing-certs

billing (a grpcio server, no generated code) admits orders to every method
but ``Refund`` (reports only); orders' channel talks only to billing.  One
long-lived channel keeps calling while the root's CA is rotated and both
services get new SVIDs (with a root): no call fails, billing serves its new
certificate to new connections, and, as billing recycles connections
(``grpc.max_connection_age_ms``), it sees orders' new certificate on the
same channel.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from concurrent import futures
from typing import Any

import grpc

from spiffile.integrations.grpc import (
    aio_secure_channel,
    current_peer,
    mtls_server_interceptor,
    secure_channel,
    server_credentials,
)
from spiffile.provision import add_service, init_root, open_root, service_env
from spiffile.provision.x509 import enable_x509, renew_svids, rotate_ca
from spiffile.tls import X509Source

SERVICE = "demo.Billing"


def billing_handlers() -> grpc.GenericRpcHandler:
    def invoice(request: bytes, context: grpc.ServicerContext) -> bytes:
        return f"billing serves {current_peer().id}".encode()

    def serial(request: bytes, context: grpc.ServicerContext) -> bytes:
        """The serial number of the certificate this call's client presented."""
        return str(current_peer().leaf.serial_number).encode()

    def refund(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"refunded"

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Invoice": grpc.unary_unary_rpc_method_handler(invoice),
            "Serial": grpc.unary_unary_rpc_method_handler(serial),
            "Refund": grpc.unary_unary_rpc_method_handler(refund),
        },
    )


def start_billing(billing: X509Source, orders_id: str) -> tuple[grpc.Server, str]:
    trust_domain = billing.id.trust_domain
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[
            mtls_server_interceptor(
                billing,
                allow=[orders_id],
                rules={f"/{SERVICE}/Refund": [f"spiffe://{trust_domain}/reports"]},
            )
        ],
        # Connections end gracefully after a second here (ten minutes in production,
        # well below the SVID lifetime): clients reconnect with their newest SVID.
        options=[("grpc.max_connection_age_ms", 1000), ("grpc.max_connection_age_grace_ms", 30000)],
    )
    server.add_generic_rpc_handlers((billing_handlers(),))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(billing))
    server.start()
    return server, f"127.0.0.1:{port}"


class Why(logging.Handler):
    """Keeps the first reason spiffile logged for each refusal code."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.first: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        code = str(getattr(record, "spiffile_code", ""))
        self.first.setdefault(code, record.getMessage())


def status(call: Any) -> str:
    try:
        answer: bytes = call()
        return answer.decode()
    except grpc.RpcError as error:
        return f"{error.code().name} {error.details()}"


def run(orders: X509Source, billing: X509Source, rotate: Any = None) -> int:
    why = Why()
    logger = logging.getLogger("spiffile.integrations")
    logger.addHandler(why)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    server, address = start_billing(billing, str(orders.id))
    failures = 0
    try:
        with secure_channel(orders, address, allow=str(billing.id)) as channel:
            # Typed as Any: the service has no generated stubs.
            invoice: Any = channel.unary_unary(f"/{SERVICE}/Invoice")
            refund: Any = channel.unary_unary(f"/{SERVICE}/Refund")
            print(f"orders -> billing Invoice: {status(lambda: invoice(b'', timeout=30))}")
            print(f"orders -> billing Refund: {status(lambda: refund(b'', timeout=30))}")
            print(f"  billing says why: {why.first['not_allowed']}")

        # A channel that expects another server refuses billing in the TLS handshake.
        with secure_channel(orders, address, allow="ledger") as wrong:
            nowhere: Any = wrong.unary_unary(f"/{SERVICE}/Invoice")
            answer = status(lambda: nowhere(b"", timeout=30))
            print(f"orders expecting ledger: {answer.split(' ')[0]}")
            reason = why.first["tls_peer_rejected"].split("refused or failed: ", 1)[1]
            print(f"  orders says why: {reason}")

        async def aio_call() -> bytes:
            async with aio_secure_channel(orders, address, allow=str(billing.id)) as channel:
                invoice: Any = channel.unary_unary(f"/{SERVICE}/Invoice")
                answer: bytes = await invoice(b"", timeout=30)
                return answer

        print(f"asyncio orders -> billing Invoice: {asyncio.run(aio_call()).decode()}")

        # One long-lived channel through a rotation of the CA and both SVIDs.
        with secure_channel(orders, address, allow=str(billing.id)) as channel:
            serial: Any = channel.unary_unary(f"/{SERVICE}/Serial")
            answered = 0
            first_billing = billing.svid.leaf.serial_number
            seen_by_billing = {int(serial(b"", timeout=30))}
            if rotate is not None:
                rotate()
            deadline = time.monotonic() + 30
            while answered < 10 or (
                rotate is not None
                and orders.svid.leaf.serial_number not in seen_by_billing
                and time.monotonic() < deadline
            ):
                try:
                    seen_by_billing.add(int(serial(b"", timeout=30)))
                    answered += 1
                except grpc.RpcError as error:
                    failures += 1
                    print(f"call failed: {error.code()}")
                time.sleep(0.05)
            print(f"calls: {answered} answered, {failures} failed")
            if rotate is not None:
                rotated = billing.svid.leaf.serial_number != first_billing
                renewed_seen = orders.svid.leaf.serial_number in seen_by_billing
                print(f"billing's certificate rotated without a restart: {rotated}")
                print(f"billing saw orders' renewed SVID on the same channel: {renewed_seen}")
                failures += (not rotated) + (not renewed_seen)
    finally:
        server.stop(None).wait(30)
        logger.removeHandler(why)
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--spiffe-helper"]:
        orders_dir, billing_dir = argv[1:3]
        return run(X509Source.from_dir(orders_dir), X509Source.from_dir(billing_dir))
    root = open_root(argv[0])

    def source(name: str) -> X509Source:
        env = service_env(root, name)
        return X509Source(
            env["SPIFFILE_X509_SVID_FILE"],
            env["SPIFFILE_X509_KEY_FILE"],
            env["SPIFFILE_X509_BUNDLE_FILE"],
        )

    def rotate() -> None:
        rotate_ca(root)  # The new CA is published beside the old one first...
        renew_svids(root, force=True)  # ...then both services get SVIDs from it.

    return run(source("orders"), source("billing"), rotate)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1:]))
    with tempfile.TemporaryDirectory() as tmp:
        demo_root = init_root(f"{tmp}/identity", "example.org")
        enable_x509(demo_root)
        add_service(demo_root, "orders")
        add_service(demo_root, "billing")
        sys.exit(main([f"{tmp}/identity"]))
