"""billing with a health endpoint and Prometheus metrics, through a two-phase rotation.

What an operator sees: ``/healthz`` (200 or 503, the kid and the bundle
sequence) and ``/metrics`` (verifications by result, mints, cache hits,
reloads), served beside a protected ``/invoices``.  The script stages a new
key for ``orders``, polls billing's ``/healthz`` until billing serves the new
bundle sequence, and only then commits, which is the order PROFILE.md §8.3
asks for.  A bundle that a broken tool writes turns ``/healthz`` to 503
while the last good one keeps serving.

Run it with a provisioned root holding ``orders`` and ``billing`` (the
example rotates ``orders``' key in it and rewrites the bundle), or with no
argument to use a temporary one::

    pip install 'spiffile[prometheus,requests]'
    python examples/health_metrics.py ./identity
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import requests
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

from spiffile import Identity
from spiffile.integrations.health import health_wsgi
from spiffile.integrations.prometheus import PrometheusMetrics
from spiffile.integrations.requests import SpiffileAuth
from spiffile.integrations.wsgi import SpiffileMiddleware, caller_from_environ
from spiffile.provision import (
    add_service,
    commit_rotation,
    init_root,
    open_root,
    service_env,
    stage_rotation,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def invoices(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """billing's application: runs only for callers the middleware verified."""
    caller = caller_from_environ(environ)
    body = json.dumps({"caller": str(caller.id) if caller else None})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


def billing_app(identity: Identity, registry: CollectorRegistry) -> WSGIApplication:
    """/healthz and /metrics for operators (no token), everything else behind the middleware."""
    routes = {
        "/healthz": health_wsgi(identity),
        "/metrics": make_wsgi_app(registry),
    }
    protected = SpiffileMiddleware(invoices, identity, exempt_paths=list(routes))

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return routes.get(environ.get("PATH_INFO", ""), protected)(environ, start_response)

    return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wait_for_sequence(url: str, sequence: int) -> dict[str, Any]:
    """Poll /healthz until billing serves *sequence*: what a rollout script does."""
    deadline = time.monotonic() + 30
    while True:
        health: dict[str, Any] = requests.get(url, timeout=10).json()
        if health["bundle_sequence"] >= sequence or time.monotonic() > deadline:
            return health
        time.sleep(0.05)


def scrape(url: str) -> dict[tuple[str, str], float]:
    """The samples of a /metrics page, keyed by name and their one label value."""
    samples = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=10).text):
        for sample in family.samples:
            samples[(sample.name, ",".join(sample.labels.values()))] = sample.value
    return samples


def main(root_path: str) -> int:
    # The library's warnings (a refused bundle) go where the example's output goes.
    logging.basicConfig(stream=sys.stdout, format="log: %(message)s", level=logging.WARNING)
    root = open_root(root_path)
    registry = CollectorRegistry()
    billing = Identity.from_env(service_env(root, "billing"), metrics=PrometheusMetrics(registry))
    billing.watch()  # Reloads are counted as they happen, off the request path.
    orders = Identity.from_env(service_env(root, "orders"))
    server = make_server("127.0.0.1", 0, billing_app(billing, registry), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    ok = True
    try:
        with requests.Session() as session:
            session.auth = SpiffileAuth(orders, billing.id)
            ok &= session.get(f"{base}/invoices", timeout=10).status_code == 200
            ok &= session.get(f"{base}/invoices", timeout=10).status_code == 200
        ok &= requests.get(f"{base}/invoices", timeout=10).status_code == 401
        health = requests.get(f"{base}/healthz", timeout=10)
        print(f"healthz: {health.status_code} healthy={health.json()['healthy']}")
        before = health.json()["bundle_sequence"]

        stage_rotation(root, "orders")  # New key published, not yet signing.
        staged = wait_for_sequence(f"{base}/healthz", before + 1)
        print(f"staged: billing serves the new bundle: {staged['bundle_sequence'] > before}")
        commit_rotation(root, "orders")  # Only now does orders sign with it.
        ok &= orders.verify(orders.token(orders.id)).id == orders.id

        bundle = Path(root.path) / "bundle.json"
        good = bundle.read_bytes()
        bundle.write_bytes(b"{ truncated by a broken tool")
        broken = requests.get(f"{base}/healthz", timeout=10)
        print(f"broken bundle: {broken.status_code} healthy={broken.json()['healthy']}")
        with requests.Session() as session:
            session.auth = SpiffileAuth(orders, billing.id)
            still = session.get(f"{base}/invoices", timeout=10).status_code
        print(f"calls during the outage (last good bundle): {still}")
        bundle.write_bytes(good)
        print(f"repaired: {requests.get(f'{base}/healthz', timeout=10).status_code}")

        samples = scrape(f"{base}/metrics")
        verified = samples[("spiffile_verifications_total", "ok")]
        refused = samples[("spiffile_reload_failures_total", "bundle")]
        print(
            f"metrics: verifications ok={verified:g}, bundle refused at least once={refused >= 1}"
        )
        ok &= still == 200 and broken.status_code == 503
    finally:
        server.shutdown()
        server.server_close()
        billing.close()
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(sys.argv[1]))
    with tempfile.TemporaryDirectory() as tmp:
        demo_root = init_root(f"{tmp}/identity", "example.org")
        add_service(demo_root, "orders")
        add_service(demo_root, "billing")
        sys.exit(main(f"{tmp}/identity"))
