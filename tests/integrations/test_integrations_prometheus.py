"""spiffile.integrations.prometheus: scraped over HTTP from prometheus-client's own server."""

from __future__ import annotations

import math
import queue
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from spiffile import InvalidTokenError
from spiffile.changes import Change
from spiffile.files import atomic_write
from spiffile.integrations.prometheus import PrometheusMetrics
from spiffile.provision import Root, add_service, init_root, load_identity, rotate_service


@pytest.fixture
def root(tmp_path: Path) -> Root:
    root = init_root(tmp_path / "identity", "example.org")
    add_service(root, "orders")
    add_service(root, "billing")
    return root


@pytest.fixture
def exposition() -> Iterator[tuple[CollectorRegistry, str]]:
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield registry, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_counters_and_gauges_over_http(
    root: Root, exposition: tuple[CollectorRegistry, str]
) -> None:
    registry, url = exposition
    metrics = PrometheusMetrics(registry)
    orders = load_identity(root, "orders")
    billing = load_identity(root, "billing", metrics=metrics)
    # billing mints once and serves its cache twice; verifies 2 good, 1 bad.
    for _ in range(3):
        billing.token(orders.id)
    token = orders.token(billing.id)
    billing.verify(token)
    billing.verify(token)
    with pytest.raises(InvalidTokenError):
        billing.verify(orders.token("spiffe://example.org/other"))
    samples = scrape(url)
    assert samples[("spiffile_verifications_total", (("result", "ok"),))] == 2
    assert samples[("spiffile_verifications_total", (("result", "audience"),))] == 1
    assert samples[("spiffile_tokens_minted_total", ())] == 1
    assert samples[("spiffile_token_cache_hits_total", ())] == 2
    assert samples[("spiffile_bundle_sequence", ())] == billing.bundle.sequence
    assert samples[("spiffile_healthy", ())] == 1
    assert samples[("spiffile_key_bound", ())] == 1
    assert samples[("spiffile_reloads_total", (("file", "key"),))] == 0
    assert samples[("spiffile_serving_last_good", (("file", "bundle"),))] == 0


def test_reloads_failures_and_last_good_over_http(
    root: Root, exposition: tuple[CollectorRegistry, str]
) -> None:
    registry, url = exposition
    with load_identity(root, "orders", metrics=PrometheusMetrics(registry)) as orders:
        changes: queue.Queue[Change] = queue.Queue()
        orders.on_change(changes.put)  # Push reload on, as a service would run.
        bundle = Path(root.path) / "bundle.json"
        # Each rewrite is read by the next status() at the latest: no need to
        # wait for the watcher (a scrape-time status() would do the same).
        new_kid = rotate_service(root, "orders")
        orders.status()
        samples = scrape(url)
        assert samples[("spiffile_reloads_total", (("file", "key"),))] == 1
        assert samples[("spiffile_reloads_total", (("file", "bundle"),))] >= 1
        assert samples[("spiffile_bundle_sequence", ())] == orders.bundle.sequence
        assert orders.kid == new_kid
        atomic_write(bundle, b"not a bundle")
        orders.status()
        samples = scrape(url)
        assert samples[("spiffile_reload_failures_total", (("file", "bundle"),))] == 1
        assert samples[("spiffile_serving_last_good", (("file", "bundle"),))] == 1
        assert samples[("spiffile_healthy", ())] == 0


def test_a_bundle_without_sequence_is_nan(root: Root) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry, namespace="svc")
    status = load_identity(root, "orders").status()
    metrics.state(replace(status, bundle_sequence=None))
    value = registry.get_sample_value("svc_bundle_sequence")
    assert value is not None and math.isnan(value)
