"""orders calls billing over gRPC: per-method rules on a sync and an asyncio server.

The service has no generated code: generic handlers over JSON bytes, so the
example needs only grpcio.  billing lets orders ``Charge`` and only reports
``Refund``; ``Health`` is exempt.  Channels use local credentials (the one
secure channel type that needs no certificates); in production compose
``client_credentials`` with ``grpc.ssl_channel_credentials`` instead.

    pip install 'spiffile[grpc]'
    python examples/orders_billing_grpc.py            # a temporary identity root
    python examples/orders_billing_grpc.py ./identity # one holding orders, billing, reports
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from concurrent import futures
from typing import Any, Final

import grpc
import grpc.aio

from spiffile import Identity
from spiffile.integrations.grpc import (
    aio_server_interceptor,
    client_credentials,
    current_caller,
    server_interceptor,
)
from spiffile.provision import add_service, init_root, open_root, service_env

SERVICE = "billing.Billing"
# Each channel owns its connections, so closing it closes them before the
# server stops (no GOAWAY notices from a shared connection pool on exit).
OWN_CONNECTIONS: Final = [("grpc.use_local_subchannel_pool", 1)]
RULES: dict[str, Any] = {
    "allow": ["orders"],
    "rules": {f"/{SERVICE}/Refund": ["reports"]},
    "exempt": [f"/{SERVICE}/Health"],
}


def answer(kind: str) -> Callable[[bytes, Any], bytes]:
    def handler(request: bytes, context: Any) -> bytes:
        caller = current_caller(required=False)
        payload = {kind: json.loads(request), "caller": caller and str(caller.id)}
        return json.dumps(payload).encode()

    return handler


def handlers() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(answer(name.lower()))
            for name in ("Charge", "Refund", "Health")
        },
    )


def call(address: str, identity: Identity | None, method: str) -> str:
    """One call from a sync client; the result or the status code's name."""
    credentials = grpc.local_channel_credentials()
    if identity is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, client_credentials(identity, "billing")
        )
    with grpc.secure_channel(address, credentials, options=OWN_CONNECTIONS) as channel:
        stub: Any = channel.unary_unary(f"/{SERVICE}/{method}")
        try:
            return str(json.loads(stub(b"12", timeout=10)))
        except grpc.RpcError as error:
            failed: Any = error
            return f"{failed.code().name} {failed.details()}"


async def aio_call(address: str, identity: Identity, method: str) -> str:
    """The same from an asyncio client."""
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), client_credentials(identity, "billing")
    )
    async with grpc.aio.secure_channel(address, credentials, options=OWN_CONNECTIONS) as channel:
        stub: Any = channel.unary_unary(f"/{SERVICE}/{method}")
        try:
            return str(json.loads(await stub(b"12", timeout=10)))
        except grpc.aio.AioRpcError as error:
            return f"{error.code().name} {error.details()}"


async def asyncio_part(billing: Identity, orders: Identity, reports: Identity) -> list[str]:
    server = grpc.aio.server(interceptors=[aio_server_interceptor(billing, **RULES)])
    server.add_generic_rpc_handlers((handlers(),))
    port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials())
    await server.start()
    try:
        address = f"127.0.0.1:{port}"
        return list(
            await asyncio.gather(
                aio_call(address, orders, "Charge"), aio_call(address, reports, "Charge")
            )
        )
    finally:
        await server.stop(5)


def main(root_path: str) -> int:
    root = open_root(root_path)
    billing, orders, reports = (
        Identity.from_env(service_env(root, name)) for name in ("billing", "orders", "reports")
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[server_interceptor(billing, **RULES)],
    )
    server.add_generic_rpc_handlers((handlers(),))
    address = f"127.0.0.1:{server.add_secure_port('127.0.0.1:0', grpc.local_server_credentials())}"
    server.start()
    try:
        lines = [
            f"orders Charge: {call(address, orders, 'Charge')}",
            f"orders Refund: {call(address, orders, 'Refund')}",
            f"reports Refund: {call(address, reports, 'Refund')}",
            f"anonymous Charge: {call(address, None, 'Charge')}",
            f"anonymous Health: {call(address, None, 'Health')}",
        ]
    finally:
        server.stop(5).wait(30)
    aio_orders, aio_reports = asyncio.run(asyncio_part(billing, orders, reports))
    lines += [f"asyncio orders Charge: {aio_orders}", f"asyncio reports Charge: {aio_reports}"]
    print("\n".join(lines))
    denied = sum("PERMISSION_DENIED" in line or "UNAUTHENTICATED" in line for line in lines)
    return 0 if denied == 3 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp:
        demo_root = init_root(f"{tmp}/identity", "example.org")
        for service in ("orders", "billing", "reports"):
            add_service(demo_root, service)
        sys.exit(main(f"{tmp}/identity"))
