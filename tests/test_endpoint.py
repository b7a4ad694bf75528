"""Bundle endpoints (spiffile.endpoint, ``spiffile bundle``): real HTTPS on 127.0.0.1.

A test CA (trustme) issues the server certificates; clients trust it with
``ca_file``/``--ca-file``. Every failure must leave the destination file as
it was (SPIFFE Federation §5: keep the last good document).
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from spiffile.bundle import SpiffeBundle
from spiffile.endpoint import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    BundleServer,
    BundleSync,
    Endpoint,
    fetch_bundle,
    fetch_to_file,
)
from spiffile.errors import BundleFetchError, InvalidBundleError
from spiffile.provision import Root, add_service, init_root, rotate_service, service_info

TD = "example.org"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server cert chain, server key) for 127.0.0.1."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, chain, key = tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return ca_file, chain, key


@pytest.fixture
def root(tmp_path: Path) -> Root:
    root = init_root(tmp_path / "identity", TD)
    add_service(root, "orders")
    add_service(root, "billing")
    return root


@pytest.fixture
def server(root: Root, tls_files: tuple[Path, Path, Path]) -> Iterator[BundleServer]:
    _, chain, key = tls_files
    with BundleServer(root.bundle_path, certfile=chain, keyfile=key, refresh_hint=7) as server:
        yield server


class RawServer:
    """An HTTPS server answering every GET with fixed status and bytes (hostile endpoints)."""

    def __init__(self, chain: Path, key: Path, status: int, body: bytes) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(chain, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# --- serve and fetch ---------------------------------------------------------------------------


def test_fetch_from_our_server_gets_one_identity(
    server: BundleServer, root: Root, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "trust" / f"{TD}.json"
    out.parent.mkdir()
    result = fetch_to_file(server.url + "orders", TD, out, ca_file=tls_files[0])
    document = json.loads(out.read_bytes())
    assert [key["kid"] for key in document["keys"]] == [service_info(root, "orders").kid]
    assert all(key["use"] == "jwt-svid" for key in document["keys"])
    assert result.refresh_hint == 7 == document["spiffe_refresh_hint"]
    assert isinstance(result.document, SpiffeBundle)
    assert result.sequence == document["spiffe_sequence"]


def test_our_server_has_no_domain_wide_document(
    server: BundleServer, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "kept.json"
    out.write_bytes(b"last good")
    for path in ("", "nobody", "orders/../billing", "a//b"):
        with pytest.raises(BundleFetchError, match="HTTP 404"):
            fetch_to_file(server.url + path, TD, out, ca_file=tls_files[0])
    assert out.read_bytes() == b"last good"


def test_a_rotation_shows_on_the_next_fetch(
    server: BundleServer, root: Root, tls_files: tuple[Path, Path, Path]
) -> None:
    rotate_service(root, "orders", keep_old=False)
    result = fetch_bundle(server.url + "orders", TD, ca_file=tls_files[0])
    assert isinstance(result.document, SpiffeBundle)
    assert [a.kid for a in result.document] == [service_info(root, "orders").kid]


def test_fetch_refuses_an_endpoint_the_ca_does_not_vouch_for(
    server: BundleServer, tmp_path: Path
) -> None:
    out = tmp_path / "kept.json"
    out.write_bytes(b"last good")
    with pytest.raises(BundleFetchError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_to_file(server.url + "orders", TD, out)  # System CAs: not our test CA.
    other = trustme.CA()
    other_ca = tmp_path / "other.pem"
    other.cert_pem.write_to_path(str(other_ca))
    with pytest.raises(BundleFetchError):
        fetch_to_file(server.url + "orders", TD, out, ca_file=other_ca)
    assert out.read_bytes() == b"last good"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1/x", "https://user:pw@127.0.0.1/x", "file:///etc/passwd", "x"]
)
def test_fetch_takes_only_https_urls_without_credentials(url: str) -> None:
    with pytest.raises(BundleFetchError, match="not an https URL"):
        fetch_bundle(url, TD)


def test_fetch_reports_a_closed_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # A port nothing listens on (bound, never listening).
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(BundleFetchError, match="cannot fetch"):
            fetch_bundle(f"https://127.0.0.1:{port}/", TD, timeout=5)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, b"not json", InvalidBundleError),
        (200, b'{"keys": "nope"}', InvalidBundleError),
        (200, b"[]", InvalidBundleError),
        (500, b"{}", BundleFetchError),
        (302, b"", BundleFetchError),
    ],
)
def test_a_bad_answer_keeps_the_last_good_document(
    tls_files: tuple[Path, Path, Path], tmp_path: Path, status: int, body: bytes, error: type
) -> None:
    ca_file, chain, key = tls_files
    raw = RawServer(chain, key, status, body)
    out = tmp_path / "kept.json"
    out.write_bytes(b"last good")
    try:
        with pytest.raises(error):
            fetch_to_file(raw.url, TD, out, ca_file=ca_file)
    finally:
        raw.close()
    assert out.read_bytes() == b"last good"


def test_fetch_refuses_a_rollback(tls_files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    ca_file, chain, key = tls_files
    older = json.dumps({"keys": [], "spiffe_sequence": 3}).encode()
    raw = RawServer(chain, key, 200, older)
    out = tmp_path / "kept.json"
    newer = json.dumps({"keys": [], "spiffe_sequence": 4}).encode()
    out.write_bytes(newer)
    try:
        with pytest.raises(BundleFetchError, match="older"):
            fetch_to_file(raw.url, TD, out, ca_file=ca_file)
    finally:
        raw.close()
    assert out.read_bytes() == newer


# --- sync schedule -----------------------------------------------------------------------------


def test_sync_follows_the_refresh_hint_and_backs_off(
    server: BundleServer, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    now = [1000.0]
    good = Endpoint(TD, server.url + "orders", str(tmp_path / "good.json"))
    bad = Endpoint("other.test", server.url + "nobody", str(tmp_path / "bad.json"))
    syncer = BundleSync([good, bad], ca_file=tls_files[0], clock=lambda: now[0])
    assert syncer.sync_one(good) is not None
    assert syncer.next_delay() == 0.0  # bad has not been tried yet
    delays = []
    for _ in range(12):
        assert syncer.sync_one(bad) is None
        delays.append(syncer._due["other.test"] - now[0])
    # Doubling from 1 s, bounded by the regular interval (300 s without a hint).
    assert delays[:4] == [FIRST_BACKOFF, 2.0, 4.0, 8.0]
    assert max(delays) == min(MAX_BACKOFF, 300.0)
    assert syncer._due[TD] - now[0] == 7.0  # the server's refresh hint
    assert isinstance(syncer.errors["other.test"], BundleFetchError)
    assert syncer.errors[TD] is None


# --- command line ------------------------------------------------------------------------------


def spiffile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spiffile", *args], capture_output=True, text=True, timeout=60
    )


def test_cli_fetch_and_its_errors(
    server: BundleServer, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / f"{TD}.json"
    ca = str(tls_files[0])
    done = spiffile(
        "bundle",
        "fetch",
        server.url + "orders",
        "--trust-domain",
        TD,
        "--out",
        str(out),
        "--ca-file",
        ca,
    )
    assert done.returncode == 0, done.stderr
    good = out.read_bytes()
    done = spiffile(
        "bundle",
        "fetch",
        server.url + "nobody",
        "--trust-domain",
        TD,
        "--out",
        str(out),
        "--ca-file",
        ca,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error:") and "404" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == good


def test_cli_sync_once(
    server: BundleServer, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    args = ["bundle", "sync", "--trust-dir", str(trust), "--ca-file", str(tls_files[0]), "--once"]
    done = spiffile(*args, "--endpoint", f"{TD}={server.url}orders")
    assert done.returncode == 0, done.stderr
    assert json.loads((trust / f"{TD}.json").read_bytes())["keys"]
    done = spiffile(
        *args, "--endpoint", f"{TD}={server.url}orders", "--endpoint", f"b.test={server.url}x"
    )
    assert done.returncode == 1
    assert "b.test" in done.stderr
    assert not (trust / "b.test.json").exists()


def test_cli_serve_help_states_the_receivers_sub_check() -> None:
    done = spiffile("bundle", "serve", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "THE RECEIVER MUST CHECK `sub`" in text
    assert "no domain-wide document" in text


def test_cli_serve_publishes_and_stops_on_sigterm(
    root: Root, tls_files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ca_file, chain, key = tls_files
    proc = subprocess.Popen(
        [sys.executable, "-m", "spiffile", "bundle", "serve", "--root", str(root.path),
         "--cert", str(chain), "--key", str(key), "--port", "0", "--refresh-hint", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # "serving https://127.0.0.1:PORT/<service path> ..."
        url = line.split()[1].removesuffix("<service")
        assert url.startswith("https://127.0.0.1:"), line
        result = fetch_bundle(url + "orders", TD, ca_file=ca_file)
        assert result.refresh_hint == 30
        with pytest.raises(BundleFetchError, match="HTTP 404"):
            fetch_bundle(url, TD, ca_file=ca_file)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
