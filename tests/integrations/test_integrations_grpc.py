"""spiffile.integrations.grpc: real grpcio servers and clients on 127.0.0.1, sync and asyncio.

The service is defined with generic handlers over raw bytes (no generated
code): ``/demo.Billing/Invoice`` (unary), ``Stream`` (unary request,
streamed response), ``Upload`` (streamed request), ``Chat`` (both streamed),
``Refund`` (its own rule: reports only), ``Health`` (exempt) and ``Peek``
(optional).  Each handler answers with ``current_caller()``.  Channels use
local credentials, the one secure channel type that needs no certificates
and still carries call credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

import pytest

pytest.importorskip("grpc")

import grpc
import grpc.aio
from servicerealm import Realm, provision_realm

from spiffile.errors import InvalidSpiffeIdError
from spiffile.identity import Identity
from spiffile.integrations.grpc import (
    aio_server_interceptor,
    call_metadata,
    client_credentials,
    current_caller,
    server_interceptor,
)
from spiffile.provision import load_identity

ORDERS = "spiffe://example.org/orders"
REPORTS = "spiffe://example.org/reports"
BILLING = "spiffe://example.org/billing"
SERVICE = "demo.Billing"
RULES: dict[str, Any] = {
    "allow": ["orders"],
    "rules": {f"/{SERVICE}/Refund": ["reports"]},
    "exempt": [f"/{SERVICE}/Health"],
    "optional": [f"/{SERVICE}/Peek"],
}


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("grpc"))


@pytest.fixture(scope="module")
def reports(realm: Realm) -> Identity:
    return load_identity(realm.root, "reports")


def who() -> bytes:
    caller = current_caller(required=False)
    return b"-" if caller is None else str(caller.id).encode()


class Deserialised:
    """Counts what the server handed to a request deserialiser."""

    count = 0

    @classmethod
    def parse(cls, data: bytes) -> bytes:
        cls.count += 1
        return data


# -- the sync service ------------------------------------------------------------------------


def sync_handlers() -> grpc.GenericRpcHandler:
    def invoice(request: bytes, context: grpc.ServicerContext) -> bytes:
        return str(current_caller().id).encode()

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for _ in range(3):
            yield who()

    def upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return who() + b" " + str(len(list(requests))).encode()

    def chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield who() + b" " + request

    def plain(request: bytes, context: grpc.ServicerContext) -> bytes:
        return who()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Invoice": grpc.unary_unary_rpc_method_handler(
                invoice, request_deserializer=Deserialised.parse
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
            "Refund": grpc.unary_unary_rpc_method_handler(plain),
            "Health": grpc.unary_unary_rpc_method_handler(plain),
            "Peek": grpc.unary_unary_rpc_method_handler(plain),
        },
    )


@contextlib.contextmanager
def sync_server(identity: Identity) -> Iterator[str]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[server_interceptor(identity, **RULES)],
    )
    server.add_generic_rpc_handlers((sync_handlers(),))
    port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials())
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(30)


@pytest.fixture(scope="module")
def address(realm: Realm) -> Iterator[str]:
    with sync_server(realm.billing) as found:
        yield found


def channel_for(address: str, identity: Identity | None) -> grpc.Channel:
    credentials = grpc.local_channel_credentials()
    if identity is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, client_credentials(identity, BILLING)
        )
    return grpc.secure_channel(address, credentials)


def unary(channel: Any, method: str) -> Any:
    return rpc(channel, "unary_unary", method)


def rpc(channel: Any, kind: str, method: str) -> Any:
    """A multi-callable (typed as Any: the service has no generated stubs)."""
    return getattr(channel, kind)(f"/{SERVICE}/{method}")


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    error: Any = info.value
    return error.code()  # type: ignore[no-any-return]


def details_of(call: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    error: Any = info.value
    return error.details()  # type: ignore[no-any-return]


def test_every_shape_sees_the_caller(realm: Realm, address: str) -> None:
    with channel_for(address, realm.orders) as channel:
        assert unary(channel, "Invoice")(b"x", timeout=10) == ORDERS.encode()
        streamed = rpc(channel, "unary_stream", "Stream")(b"x", timeout=10)
        assert list(streamed) == [ORDERS.encode()] * 3
        upload = rpc(channel, "stream_unary", "Upload")
        assert upload(iter([b"a", b"b"]), timeout=10) == ORDERS.encode() + b" 2"
        chat = rpc(channel, "stream_stream", "Chat")
        assert list(chat(iter([b"1", b"2"]), timeout=10)) == [
            ORDERS.encode() + b" 1",
            ORDERS.encode() + b" 2",
        ]


def test_unauthenticated(realm: Realm, address: str) -> None:
    with channel_for(address, None) as channel:
        invoice = unary(channel, "Invoice")
        assert code_of(lambda: invoice(b"x", timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
        assert details_of(lambda: invoice(b"x", timeout=10)) == "missing_token"
        for metadata in (
            call_metadata(realm.ghost, BILLING),
            call_metadata(realm.orders, REPORTS),
            (("authorization", "Bearer not-a-token"),),
            (("authorization", "Basic b3JkZXJz"),),
            call_metadata(realm.orders, BILLING) * 2,
        ):
            call = lambda m=metadata: invoice(b"x", metadata=m, timeout=10)  # noqa: E731
            assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED
        stream = rpc(channel, "unary_stream", "Stream")
        assert code_of(lambda: list(stream(b"x", timeout=10))) == grpc.StatusCode.UNAUTHENTICATED
        upload = rpc(channel, "stream_unary", "Upload")
        assert code_of(lambda: upload(iter([b"1"]), timeout=10)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        chat = rpc(channel, "stream_stream", "Chat")
        assert code_of(lambda: list(chat(iter([b"1"]), timeout=10))) == (
            grpc.StatusCode.UNAUTHENTICATED
        )


def test_refused_messages_are_never_deserialised(realm: Realm, address: str) -> None:
    with channel_for(address, None) as channel:
        before = Deserialised.count
        invoice = unary(channel, "Invoice")
        assert code_of(lambda: invoice(b"x", timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
        assert Deserialised.count == before
        invoice(b"x", metadata=call_metadata(realm.orders, BILLING), timeout=10)
        assert Deserialised.count == before + 1


def test_permission_denied_and_per_method_rules(
    realm: Realm, reports: Identity, address: str
) -> None:
    with channel_for(address, reports) as channel:
        invoice = unary(channel, "Invoice")
        assert code_of(lambda: invoice(b"x", timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
        assert details_of(lambda: invoice(b"x", timeout=10)) == "insufficient_scope"
        assert unary(channel, "Refund")(b"x", timeout=10) == REPORTS.encode()
    with channel_for(address, realm.orders) as channel:
        refund = unary(channel, "Refund")
        assert code_of(lambda: refund(b"x", timeout=10)) == grpc.StatusCode.PERMISSION_DENIED


def test_exempt_and_optional_methods(realm: Realm, reports: Identity, address: str) -> None:
    with channel_for(address, None) as channel:
        assert unary(channel, "Health")(b"x", timeout=10) == b"-"
        assert unary(channel, "Peek")(b"x", timeout=10) == b"-"
        peek = unary(channel, "Peek")
        bad = call_metadata(realm.ghost, BILLING)
        assert code_of(lambda: peek(b"x", metadata=bad, timeout=10)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    with channel_for(address, reports) as channel:
        assert unary(channel, "Peek")(b"x", timeout=10) == REPORTS.encode()
        assert unary(channel, "Health")(b"x", timeout=10) == b"-"


def test_unknown_method_is_unimplemented(realm: Realm, address: str) -> None:
    with channel_for(address, realm.orders) as channel:
        missing = unary(channel, "Nope")
        assert code_of(lambda: missing(b"x", timeout=10)) == grpc.StatusCode.UNIMPLEMENTED


def test_rejections_are_logged(
    reports: Identity, address: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spiffile.integrations")
    with channel_for(address, reports) as channel:
        invoice = unary(channel, "Invoice")
        code_of(lambda: invoice(b"x", timeout=10))
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        f"403 RPC '/{SERVICE}/Invoice': not_allowed: caller {REPORTS}" in m for m in messages
    )


def test_client_credentials_error_fails_the_call(realm: Realm, address: str) -> None:
    """A token that cannot be minted (ttl above the cap) fails the call, never sends nothing."""
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(), client_credentials(realm.orders, BILLING, ttl=10**6)
    )
    with grpc.secure_channel(address, credentials) as channel:
        invoice = unary(channel, "Invoice")
        assert code_of(lambda: invoice(b"x", timeout=10)) == grpc.StatusCode.UNAVAILABLE


def test_configuration_is_checked_when_built(realm: Realm) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        server_interceptor(realm.billing, allow=["orders/"])
    with pytest.raises(ValueError):
        aio_server_interceptor(realm.billing, rules={"demo.Billing/Refund": ["ops"]})
    with pytest.raises(InvalidSpiffeIdError):
        client_credentials(realm.orders, "billing/")
    with pytest.raises(InvalidSpiffeIdError):
        call_metadata(realm.orders, "Spiffe://example.org/billing")


def test_current_caller_outside_an_rpc_fails_closed() -> None:
    with pytest.raises(LookupError):
        current_caller()
    assert current_caller(required=False) is None


# -- asyncio server and client ---------------------------------------------------------------


def aio_handlers() -> grpc.GenericRpcHandler:
    async def invoice(request: bytes, context: Any) -> bytes:
        await asyncio.sleep(0)
        return str(current_caller().id).encode()

    async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for _ in range(3):
            await asyncio.sleep(0)
            yield who()

    async def plain(request: bytes, context: Any) -> bytes:
        return who()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Invoice": grpc.unary_unary_rpc_method_handler(invoice),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Refund": grpc.unary_unary_rpc_method_handler(plain),
            "Health": grpc.unary_unary_rpc_method_handler(plain),
            "Peek": grpc.unary_unary_rpc_method_handler(plain),
        },
    )


async def aio_scenario(realm: Realm, reports: Identity, via_sync_client: bool) -> dict[str, Any]:
    server = grpc.aio.server(interceptors=[aio_server_interceptor(realm.billing, **RULES)])
    server.add_generic_rpc_handlers((aio_handlers(),))
    port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials())
    await server.start()
    address = f"127.0.0.1:{port}"
    results: dict[str, Any] = {}
    try:

        async def attempt(name: str, identity: Identity | None, method: str) -> None:
            credentials = grpc.local_channel_credentials()
            if identity is not None:
                credentials = grpc.composite_channel_credentials(
                    credentials, client_credentials(identity, BILLING)
                )
            async with grpc.aio.secure_channel(address, credentials) as channel:
                try:
                    if method == "Stream":
                        call = rpc(channel, "unary_stream", "Stream")(b"x", timeout=10)
                        results[name] = [item async for item in call]
                    else:
                        results[name] = await rpc(channel, "unary_unary", method)(b"x", timeout=10)
                except grpc.aio.AioRpcError as error:
                    results[name] = error.code()

        await asyncio.gather(
            attempt("orders", realm.orders, "Invoice"),
            attempt("orders-stream", realm.orders, "Stream"),
            attempt("reports", reports, "Invoice"),
            attempt("reports-refund", reports, "Refund"),
            attempt("anonymous", None, "Invoice"),
            attempt("anonymous-stream", None, "Stream"),
            attempt("ghost", realm.ghost, "Invoice"),
            attempt("health", None, "Health"),
            attempt("peek", reports, "Peek"),
        )
        if via_sync_client:
            # A sync client against the asyncio server, from a worker thread.
            def sync_call() -> bytes:
                with channel_for(address, realm.orders) as channel:
                    return unary(channel, "Invoice")(b"x", timeout=10)  # type: ignore[no-any-return]

            results["sync-client"] = await asyncio.to_thread(sync_call)
    finally:
        await server.stop(None)
    return results


def test_asyncio_server_and_client(realm: Realm, reports: Identity) -> None:
    results = asyncio.run(aio_scenario(realm, reports, via_sync_client=True))
    assert results == {
        "orders": ORDERS.encode(),
        "orders-stream": [ORDERS.encode()] * 3,
        "reports": grpc.StatusCode.PERMISSION_DENIED,
        "reports-refund": REPORTS.encode(),
        "anonymous": grpc.StatusCode.UNAUTHENTICATED,
        "anonymous-stream": grpc.StatusCode.UNAUTHENTICATED,
        "ghost": grpc.StatusCode.UNAUTHENTICATED,
        "health": b"-",
        "peek": REPORTS.encode(),
        "sync-client": ORDERS.encode(),
    }


def test_asyncio_client_against_the_sync_server(realm: Realm, address: str) -> None:
    async def call() -> bytes:
        credentials = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(), client_credentials(realm.orders, BILLING)
        )
        async with grpc.aio.secure_channel(address, credentials) as channel:
            answer: bytes = await rpc(channel, "unary_unary", "Invoice")(b"x", timeout=10)
            return answer

    assert asyncio.run(call()) == ORDERS.encode()
