"""examples/: each script runs as a user would run it and does what it prints.

The scripts run as subprocesses against a root provisioned here, and once
without an argument (they provision a temporary root themselves).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from spiffile.provision import add_service, init_root, service_info

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: What each example imports beyond spiffile.
NEEDS = {
    "orders_billing_asgi.py": ("fastapi", "uvicorn", "httpx"),
    "orders_inventory_wsgi.py": ("requests",),
    "health_metrics.py": ("requests", "prometheus_client"),
    "orders_billing_grpc.py": ("grpc",),
    "two_services/run.py": ("fastapi", "uvicorn", "httpx", "flask", "gunicorn", "requests"),
    "mtls_orders_billing.py": ("uvicorn", "httpx"),
    "mtls_grpc.py": ("grpc",),
    "mtls_wsgi/main.py": ("gunicorn", "requests"),
}


def run_example(name: str, *args: str) -> str:
    for module in NEEDS[name]:
        pytest.importorskip(module)
    completed = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stderr == ""
    return completed.stdout


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "identity"
    root = init_root(path, "example.org")
    for name in ("orders", "billing", "inventory", "reports"):
        add_service(root, name)
    return path


def test_orders_billing_asgi(root: Path) -> None:
    out = run_example("orders_billing_asgi.py", str(root)).splitlines()
    assert out == [
        "orders -> billing /invoices: 200 "
        "{'caller': 'spiffe://example.org/orders', 'invoices': ['inv-1', 'inv-2']}",
        "anonymous -> billing /invoices: 401 {'error': 'missing_token'}",
        "anonymous -> billing /healthz: 200 {'ok': True}",
        "orders (async) -> billing /invoices: 200",
    ]


def test_orders_inventory_wsgi(root: Path) -> None:
    kid_before = service_info(root, "orders").kid
    out = run_example("orders_inventory_wsgi.py", str(root)).splitlines()
    kid_after = service_info(root, "orders").kid
    assert kid_before != kid_after
    caller = "{'caller': 'spiffe://example.org/orders', 'widgets': 42}"
    assert out == [
        f"orders -> inventory: 200 {caller} (kid {kid_before})",
        f"after rotation: 200 {caller} (kid {kid_after})",
        "token of the retired key: 401 {'error': 'invalid_token'}",
    ]


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_examples_run_with_a_temporary_root(name: str) -> None:
    assert run_example(name)  # Exit status 0 and no stderr: run_example checks both.


def test_health_metrics(root: Path) -> None:
    out = run_example("health_metrics.py", str(root)).splitlines()
    logs = [line for line in out if line.startswith("log: ")]
    assert logs and all("keeping the last good bundle" in line for line in logs)
    assert [line for line in out if not line.startswith("log: ")] == [
        "healthz: 200 healthy=True",
        "staged: billing serves the new bundle: True",
        "broken bundle: 503 healthy=False",
        "calls during the outage (last good bundle): 200",
        "repaired: 200",
        "metrics: verifications ok=3, bundle refused at least once=True",
    ]


def test_orders_billing_grpc(root: Path) -> None:
    out = run_example("orders_billing_grpc.py", str(root)).splitlines()
    assert out == [
        "orders Charge: {'charge': 12, 'caller': 'spiffe://example.org/orders'}",
        "orders Refund: PERMISSION_DENIED insufficient_scope",
        "reports Refund: {'refund': 12, 'caller': 'spiffe://example.org/reports'}",
        "anonymous Charge: UNAUTHENTICATED missing_token",
        "anonymous Health: {'health': 12, 'caller': None}",
        "asyncio orders Charge: {'charge': 12, 'caller': 'spiffe://example.org/orders'}",
        "asyncio reports Charge: PERMISSION_DENIED insufficient_scope",
    ]


def test_two_services_fastapi_uvicorn_and_flask_gunicorn(root: Path) -> None:
    out = run_example("two_services/run.py", str(root)).splitlines()
    orders = "spiffe://example.org/orders"
    assert out == [
        f"orders -> billing /summary: 200 {{'for': '{orders}', 'invoices': 2, 'widgets': 42}}",
        "orders -> inventory /reorder: 200 {'billed_to': 'spiffe://example.org/inventory', "
        f"'for': '{orders}', 'ordered': 10}}",
        "orders -> inventory /stock: 403 {'error': 'insufficient_scope'}",
        "anonymous -> billing /invoices: 401 {'error': 'missing_token'}",
        "anonymous -> billing /healthz: 200 {'ok': True}",
        "anonymous -> billing /openapi.json: 200 ['SPIFFE']",
        f"inventory says why: 403 GET '/stock': not_allowed: caller {orders} is not allowed "
        "by one_of(spiffe://example.org/billing) (rule '<view stock>')",
        "billing says why: 401 GET '/invoices': missing_token: no bearer token",
    ]


def test_mtls_orders_billing_survives_a_rotation(tmp_path: Path) -> None:
    from spiffile.provision.x509 import enable_x509

    path = tmp_path / "identity"
    root = init_root(path, "example.org")
    enable_x509(root)
    for name in ("orders", "billing"):
        add_service(root, name)
    out = run_example("mtls_orders_billing.py", str(path)).splitlines()
    assert out[0] == "orders -> billing: 200 billing serves spiffe://example.org/orders"
    assert out[1].endswith("answered, 0 failed")
    assert out[2] == "billing's certificate rotated without a restart: True"


def test_mtls_orders_billing_on_spiffe_helper_files(tmp_path: Path) -> None:
    """The same code on directories laid out as spiffe-helper writes them."""
    import shutil

    from spiffile.provision.x509 import enable_x509

    path = tmp_path / "identity"
    root = init_root(path, "example.org")
    enable_x509(root)
    dirs = []
    for name in ("orders", "billing"):
        add_service(root, name)
        helper_dir = tmp_path / f"{name}-certs"
        helper_dir.mkdir()
        for file in ("svid.pem", "svid_key.pem"):
            shutil.copy(path / "services" / name / file, helper_dir / file)
        shutil.copy(path / "svid_bundle.pem", helper_dir / "svid_bundle.pem")
        dirs.append(str(helper_dir))
    out = run_example("mtls_orders_billing.py", "--spiffe-helper", *dirs).splitlines()
    assert out == [
        "orders -> billing: 200 billing serves spiffe://example.org/orders",
        "calls: 11 answered, 0 failed",
    ]


def _x509_root(tmp_path: Path) -> Path:
    from spiffile.provision.x509 import enable_x509

    path = tmp_path / "identity"
    root = init_root(path, "example.org")
    enable_x509(root)
    for name in ("orders", "billing"):
        add_service(root, name)
    return path


MTLS_GRPC_CALLS = [
    "orders -> billing Invoice: billing serves spiffe://example.org/orders",
    "orders -> billing Refund: PERMISSION_DENIED insufficient_scope",
    "  billing says why: spiffile: 403 RPC '/demo.Billing/Refund': not_allowed: peer "
    "spiffe://example.org/orders is not allowed by one_of(spiffe://example.org/reports) "
    "(rule /demo.Billing/Refund)",
    "orders expecting ledger: UNAVAILABLE",
    "  orders says why: tls_peer_rejected: peer refused: spiffe://example.org/billing "
    "is not allowed",
    "asyncio orders -> billing Invoice: billing serves spiffe://example.org/orders",
]


def test_mtls_grpc_survives_a_rotation_on_one_channel(tmp_path: Path) -> None:
    out = run_example("mtls_grpc.py", str(_x509_root(tmp_path))).splitlines()
    assert out[:6] == MTLS_GRPC_CALLS
    assert out[6].endswith("answered, 0 failed")
    assert out[7:] == [
        "billing's certificate rotated without a restart: True",
        "billing saw orders' renewed SVID on the same channel: True",
    ]


def test_mtls_grpc_on_spiffe_helper_files(tmp_path: Path) -> None:
    """The same code on directories laid out as spiffe-helper writes them."""
    import shutil

    path = _x509_root(tmp_path)
    dirs = []
    for name in ("orders", "billing"):
        helper_dir = tmp_path / f"{name}-certs"
        helper_dir.mkdir()
        for file in ("svid.pem", "svid_key.pem"):
            shutil.copy(path / "services" / name / file, helper_dir / file)
        shutil.copy(path / "svid_bundle.pem", helper_dir / "svid_bundle.pem")
        dirs.append(str(helper_dir))
    out = run_example("mtls_grpc.py", "--spiffe-helper", *dirs).splitlines()
    assert out == [*MTLS_GRPC_CALLS, "calls: 10 answered, 0 failed"]


def test_mtls_wsgi_under_gunicorn_and_exec(tmp_path: Path) -> None:
    """A root of one-hour SVIDs: the example renews billing's with `spiffile x509 renew`."""
    path = _x509_root(tmp_path)
    add_service(path, "reports")
    out = run_example("mtls_wsgi/main.py", str(path)).splitlines()
    assert out == [
        "orders -> billing: 200 billing serves spiffe://example.org/orders",
        "reports -> billing: refused before the app",
        "billing presents its renewed SVID without a restart: True",
    ]
