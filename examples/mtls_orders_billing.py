"""orders calls billing over mutual TLS with X.509-SVIDs, through a rotation of everything.

Run it with a provisioned root holding an X.509 CA and the services
``orders`` and ``billing``, or with no argument to use a temporary one::

    pip install 'spiffile[httpx]' uvicorn
    spiffile init --root ./identity --trust-domain example.org --x509
    spiffile add --root ./identity orders billing
    python examples/mtls_orders_billing.py ./identity

Or point it at two directories laid out by spiffe-helper (``svid.pem``,
``svid_key.pem``, ``svid_bundle.pem``): the same code serves them::

    python examples/mtls_orders_billing.py --spiffe-helper ./orders-certs ./billing-certs

billing admits only orders; orders talks only to billing.  While orders
keeps calling, the root's CA is rotated and both services get new SVIDs
(with a root), and no request fails: new connections pick up the new files.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from typing import Any

import httpx
import uvicorn

from spiffile.integrations.mtls import asgi_peer_id, uvicorn_config
from spiffile.provision import add_service, init_root, open_root, service_env
from spiffile.provision.x509 import enable_x509, renew_svids, rotate_ca
from spiffile.tls import X509Source


async def billing_app(scope: Any, receive: Any, send: Any) -> None:
    """billing: answers with the verified SPIFFE ID of its TLS client."""
    if scope["type"] != "http":
        return
    caller = asgi_peer_id(scope)
    body = f"billing serves {caller}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def start_billing(billing: X509Source, allow: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve billing on an ephemeral port of 127.0.0.1, admitting only *allow*."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn_config(
        billing_app, billing.server_ssl_context(allow=allow), log_level="critical", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("billing did not start")
        time.sleep(0.01)
    return server, thread, f"https://127.0.0.1:{sock.getsockname()[1]}"


def run(orders: X509Source, billing: X509Source, rotate: Any = None) -> int:
    """orders calls billing until *rotate* (if any) has run and been seen; count failures."""
    server, thread, url = start_billing(billing, allow=str(orders.id))
    failures = 0
    answers: list[str] = []
    try:
        context = orders.client_ssl_context(allow=str(billing.id))
        first_serial = billing.svid.leaf.serial_number
        # A new client per call: each call is a new TLS connection, as across restarts.
        for i in range(400):
            try:
                with httpx.Client(verify=context) as client:
                    response = client.get(f"{url}/invoices")
                answers.append(f"{response.status_code} {response.text}")
            except httpx.HTTPError as exc:
                failures += 1
                print(f"call {i} failed: {exc}")
            if rotate is not None and i == 5:
                rotate()
            if i >= 10 and (rotate is None or billing.svid.leaf.serial_number != first_serial):
                break
        print(f"orders -> billing: {answers[0]}")
        print(f"calls: {len(answers)} answered, {failures} failed")
        if rotate is not None:
            rotated = billing.svid.leaf.serial_number != first_serial
            print(f"billing's certificate rotated without a restart: {rotated}")
            failures += 0 if rotated else 1
    finally:
        server.should_exit = True
        thread.join()
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
