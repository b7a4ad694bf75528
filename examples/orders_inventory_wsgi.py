"""orders calls inventory: a WSGI app behind SpiffileMiddleware, requests + SpiffileAuth.

Standard library server (wsgiref), one long-lived ``requests.Session``, and a
key rotation of ``orders`` in the middle: neither side restarts, and the
token signed by the retired key stops working at once.

Run it with a provisioned root holding the services ``orders`` and
``inventory`` (the example rotates ``orders``' key in it), or with no
argument to use a temporary one::

    pip install 'spiffile[requests]'
    spiffile init --root ./identity --trust-domain example.org
    spiffile add --root ./identity orders inventory
    python examples/orders_inventory_wsgi.py ./identity
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import requests

from spiffile import Identity
from spiffile.integrations.requests import SpiffileAuth
from spiffile.integrations.wsgi import SpiffileMiddleware, caller_from_environ
from spiffile.provision import add_service, init_root, open_root, rotate_service, service_env

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def stock(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The inventory application; it only runs for callers the middleware verified."""
    caller = caller_from_environ(environ)
    body = json.dumps({"caller": str(caller.id) if caller else None, "widgets": 42})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(root_path: str) -> int:
    root = open_root(root_path)
    inventory = Identity.from_env(service_env(root, "inventory"))
    orders = Identity.from_env(service_env(root, "orders"))
    app = SpiffileMiddleware(stock, inventory)
    server = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/stock"
    results = []
    try:
        with requests.Session() as session:
            session.auth = SpiffileAuth(orders, inventory.id)
            first = session.get(url, timeout=10)
            print(f"orders -> inventory: {first.status_code} {first.json()} (kid {orders.kid})")
            old_token = orders.token(inventory.id)

            rotate_service(root, "orders", keep_old=False)  # What `spiffile rotate` does.
            second = session.get(url, timeout=10)
            print(f"after rotation: {second.status_code} {second.json()} (kid {orders.kid})")

        replay = requests.get(url, headers={"Authorization": f"Bearer {old_token}"}, timeout=10)
        print(f"token of the retired key: {replay.status_code} {replay.json()}")
        results = [first.status_code, second.status_code, replay.status_code]
    finally:
        server.shutdown()
        server.server_close()
    return 0 if results == [200, 200, 401] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp:
        demo_root = init_root(f"{tmp}/identity", "example.org")
        add_service(demo_root, "orders")
        add_service(demo_root, "inventory")
        sys.exit(main(f"{tmp}/identity"))
