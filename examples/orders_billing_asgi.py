"""orders calls billing: FastAPI + SpiffileMiddleware under uvicorn, httpx + SpiffileAuth.

Run it with a provisioned root holding the services ``orders`` and
``billing``, or with no argument to use a temporary one::

    pip install 'spiffile[httpx]' fastapi uvicorn
    spiffile init --root ./identity --trust-domain example.org
    spiffile add --root ./identity orders billing
    python examples/orders_billing_asgi.py ./identity

Both services run in this one process for brevity, each with its own
identity loaded the way a deployed service would load it: from the
``SPIFFILE_*`` variables (here the dictionary ``service_env`` returns).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import threading
import time
from typing import Annotated

import httpx
import uvicorn
from fastapi import Depends, FastAPI

from spiffile import Caller, Identity
from spiffile.integrations.asgi import SpiffileMiddleware, require_caller
from spiffile.integrations.httpx import SpiffileAuth
from spiffile.provision import add_service, init_root, open_root, service_env


def billing_app(identity: Identity) -> FastAPI:
    """The billing service: only orders may call, and every route but /healthz needs it."""
    app = FastAPI()

    @app.get("/invoices")
    def invoices(caller: Annotated[Caller, Depends(require_caller)]) -> dict[str, object]:
        return {"caller": str(caller.id), "invoices": ["inv-1", "inv-2"]}

    @app.get("/healthz")
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    # A bare name is that service in billing's own trust domain; any other
    # verified caller gets a 403.
    app.add_middleware(
        SpiffileMiddleware, identity=identity, allow=["orders"], exempt_paths={"/healthz"}
    )
    return app


def start(app: FastAPI) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve *app* on an ephemeral port of 127.0.0.1 in a background thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("billing did not start")
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def orders_async(orders: Identity, billing_url: str, billing_id: str) -> int:
    """The same call from an httpx.AsyncClient: one auth class serves both."""
    auth = SpiffileAuth(orders, billing_id)
    async with httpx.AsyncClient(base_url=billing_url, auth=auth) as client:
        response = await client.get("/invoices")
    return response.status_code


def main(root_path: str) -> int:
    root = open_root(root_path)
    billing = Identity.from_env(service_env(root, "billing"))
    orders = Identity.from_env(service_env(root, "orders"))
    server, thread, url = start(billing_app(billing))
    try:
        # orders holds one client for billing; every request carries a fresh
        # (cached) JWT-SVID for billing's SPIFFE ID.
        with httpx.Client(base_url=url, auth=SpiffileAuth(orders, billing.id)) as client:
            accepted = client.get("/invoices")
        print(f"orders -> billing /invoices: {accepted.status_code} {accepted.json()}")
        refused = httpx.get(f"{url}/invoices")
        print(f"anonymous -> billing /invoices: {refused.status_code} {refused.json()}")
        health = httpx.get(f"{url}/healthz")
        print(f"anonymous -> billing /healthz: {health.status_code} {health.json()}")
        async_status = asyncio.run(orders_async(orders, url, str(billing.id)))
        print(f"orders (async) -> billing /invoices: {async_status}")
    finally:
        server.should_exit = True
        thread.join()
    ok = (accepted.status_code, refused.status_code, health.status_code, async_status)
    return 0 if ok == (200, 401, 200, 200) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp:
        demo_root = init_root(f"{tmp}/identity", "example.org")
        add_service(demo_root, "orders")
        add_service(demo_root, "billing")
        sys.exit(main(f"{tmp}/identity"))
