"""orders calls billing (WSGI under gunicorn) over mutual TLS; billing's SVID renews live.

billing runs as its own gunicorn process under ``spiffile exec``, which
hands it billing's identity and re-issues its X.509-SVID as it passes half
its lifetime.  orders calls with ``requests``; reports, a valid workload that
billing does not admit, is refused before the app runs.  Then billing's SVID
is renewed and the next handshake presents the new certificate, with no
signal and no restart.

    pip install 'spiffile[requests]' gunicorn
    python examples/mtls_wsgi/main.py             # a temporary root; exec renews every ~2 s
    spiffile init --root ./identity --trust-domain example.org --x509
    spiffile add --root ./identity orders billing reports
    python examples/mtls_wsgi/main.py ./identity  # renewed with `spiffile x509 renew --force`
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spiffile import Identity
from spiffile.files import RECHECK_INTERVAL
from spiffile.integrations.mtls import requests_session
from spiffile.provision import add_service, init_root, open_root, service_env
from spiffile.provision.x509 import enable_x509

HERE = Path(__file__).resolve().parent


def wait_for_port(log: Path, billing: subprocess.Popen[bytes]) -> int:
    """gunicorn's "Listening at: https://127.0.0.1:PORT" line, once it is written."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and billing.poll() is None:
        found = re.search(r"Listening at: https://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    raise SystemExit(f"billing did not start:\n{log.read_text()}")


def presented(port: int, context: ssl.SSLContext) -> bytes:
    """The certificate billing presents on a new connection (DER)."""
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), 30)) as tls:
        return tls.getpeercert(binary_form=True) or b""


def on_disk(root: Path) -> bytes:
    leaf = x509.load_pem_x509_certificates((root / "services/billing/svid.pem").read_bytes())[0]
    return leaf.public_bytes(serialization.Encoding.DER)


def main(root_path: str, logs: Path, exec_renews: bool) -> int:
    root = open_root(root_path)
    log = logs / "billing.log"
    exec_cmd = [sys.executable, "-m", "spiffile", "exec", "--root", root_path, "billing"]
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "billing_wsgi:app"]
    with log.open("wb") as stderr:
        billing = subprocess.Popen(
            [*exec_cmd, "--signal", "none", "--", *gunicorn],
            cwd=HERE,
            env={k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    ok = True
    try:
        port = wait_for_port(log, billing)
        url = f"https://127.0.0.1:{port}/invoices"
        orders = Identity.from_env(service_env(root, "orders"))
        with requests_session(orders.client_ssl_context(allow="billing")) as session:
            response = session.get(url, timeout=30)
            print(f"orders -> billing: {response.status_code} {response.text}")
            ok &= response.status_code == 200
        reports = Identity.from_env(service_env(root, "reports"))
        with requests_session(reports.client_ssl_context(allow="billing")) as session:
            try:
                session.get(url, timeout=30)
                print("reports -> billing: answered (wrong)")
                ok = False
            except OSError:  # requests' ConnectionError and SSLError are OSErrors.
                print("reports -> billing: refused before the app")

        context = orders.client_ssl_context(allow="billing")
        before = presented(port, context)
        if not exec_renews:
            renew = [sys.executable, "-m", "spiffile", "x509", "renew", "--root", root_path]
            subprocess.run([*renew, "--force", "billing"], check=True, capture_output=True)
        deadline = time.monotonic() + 60
        while on_disk(root.path) == before and time.monotonic() < deadline:
            time.sleep(0.1)  # spiffile exec renews at half the SVID's lifetime.
        renewed = on_disk(root.path)
        time.sleep(RECHECK_INTERVAL)  # billing looks at its files every 50 ms (PROFILE.md §7.2).
        now_presented = presented(port, context)
        fresh = renewed != before and now_presented in (renewed, on_disk(root.path))
        print(f"billing presents its renewed SVID without a restart: {fresh}")
        ok &= fresh and billing.poll() is None
    finally:
        billing.terminate()
        billing.wait(30)
    return 0 if ok else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            sys.exit(main(sys.argv[1], Path(tmp), exec_renews=False))
        demo_root = init_root(f"{tmp}/identity", "example.org")
        # 64 s SVIDs (after a 60 s back-date): past half their life 2 s after issue.
        enable_x509(demo_root, svid_ttl=64)
        for service in ("orders", "billing", "reports"):
            add_service(demo_root, service)
        sys.exit(main(f"{tmp}/identity", Path(tmp), exec_renews=True))
