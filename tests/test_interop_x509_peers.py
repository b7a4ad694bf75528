"""Other X.509 implementations accept our X.509-SVIDs: py-spiffe's parser and Debian's openssl.

py-spiffe (PyPI ``spiffe``, in a venv of its own) parses every valid
conformance vector and rejects every vector that breaks a leaf or
intermediate rule; ``openssl verify`` accepts the valid chains (with
``-partial_chain`` off: the authority is the only trust anchor) and
``openssl s_server``/``s_client`` complete mutual TLS with our contexts.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance._impl import Command  # noqa: E402
from conformance._x509 import CertForge, key_pem, pem, seeded_key  # noqa: E402
from conformance.peers import ADAPTERS, PeerUnavailable, install_peer  # noqa: E402
from spiffile.files import atomic_write  # noqa: E402
from spiffile.tls import X509Source, peer_id  # noqa: E402

VECTORS = json.loads((REPO / "conformance" / "vectors" / "x509-svids.json").read_text())
LEAF_RULES = {"x509_uri_san", "x509_spiffe_id", "x509_leaf_ca", "x509_key_usage"}
TD = "example.org"
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def pyspiffe(tmp_path_factory: pytest.TempPathFactory) -> Command:
    venv = tmp_path_factory.mktemp("py-spiffe-x509") / "venv"
    try:
        python = install_peer(venv, ["spiffe"])
    except PeerUnavailable as exc:
        pytest.skip(f"py-spiffe not installable from PyPI: {exc}")
    return Command("py-spiffe", [str(python), str(ADAPTERS / "pyspiffe_x509.py")])


ANY_KEY = key_pem(seeded_key("interop/any")).decode()


@pytest.mark.network
@pytest.mark.parametrize("vector", VECTORS["valid"], ids=[v["id"] for v in VECTORS["valid"]])
def test_pyspiffe_parses_our_valid_svids(pyspiffe: Command, vector: dict[str, Any]) -> None:
    answer = pyspiffe.call("parse-x509-svid", {"chain": vector["input"]["chain"], "key": ANY_KEY})
    assert answer == {"ok": True, "id": vector["expected"]["id"]}


#: Where py-spiffe is more lenient than the X.509-SVID standard (strict xfail: it must stay so
#: for the test to pass, so a py-spiffe fix shows up here).
PYSPIFFE_LENIENT = {
    "upper-td": "py-spiffe lowercases an uppercase trust domain instead of refusing"
}
BROKEN = [
    pytest.param(
        v,
        id=v["id"],
        marks=[pytest.mark.xfail(strict=True, reason=PYSPIFFE_LENIENT[v["id"]])]
        if v["id"] in PYSPIFFE_LENIENT
        else [],
    )
    for v in VECTORS["invalid"]
    if v["reason"] in LEAF_RULES | {"x509_signing_cert"}
]


@pytest.mark.network
@pytest.mark.parametrize("vector", BROKEN)
def test_pyspiffe_rejects_what_breaks_a_leaf_rule(
    pyspiffe: Command, vector: dict[str, Any]
) -> None:
    answer = pyspiffe.call("parse-x509-svid", {"chain": vector["input"]["chain"], "key": ANY_KEY})
    assert answer["ok"] is False, (vector["id"], answer)


@pytest.mark.network
def test_pyspiffe_parses_the_svids_our_producer_writes(pyspiffe: Command, tmp_path: Path) -> None:
    from spiffile import provision
    from spiffile.provision.x509 import enable_x509

    root = tmp_path / "root"
    provision.init_root(root, trust_domain=TD)
    enable_x509(root)
    provision.add_service(root, "team/orders")
    directory = root / "services" / "team" / "orders"
    answer = pyspiffe.call(
        "parse-x509-svid",
        {
            "chain": (directory / "svid.pem").read_text(),
            "key": (directory / "svid_key.pem").read_text(),
        },
    )
    assert answer == {"ok": True, "id": f"spiffe://{TD}/team/orders"}
    done = subprocess.run(
        [
            str(OPENSSL or "openssl"),
            "verify",
            "-CAfile",
            str(root / "svid_bundle.pem"),
            str(directory / "svid.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if OPENSSL is not None:
        assert done.returncode == 0, done.stdout + done.stderr


needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not on PATH")


#: RFC 5280 §4.1.2.5: notAfter is inclusive; OpenSSL counts that very second as expired.
OPENSSL_DIFFERS = {"at-not-after": "OpenSSL treats now == notAfter as expired (RFC 5280: valid)"}
OPENSSL_VALID = [
    pytest.param(
        v,
        id=v["id"],
        marks=[pytest.mark.xfail(strict=True, reason=OPENSSL_DIFFERS[v["id"]])]
        if v["id"] in OPENSSL_DIFFERS
        else [],
    )
    for v in VECTORS["valid"]
]


@needs_openssl
@pytest.mark.parametrize("vector", OPENSSL_VALID)
def test_openssl_verify_accepts_our_chains(tmp_path: Path, vector: dict[str, Any]) -> None:
    request = vector["input"]
    certs = request["chain"].split("-----END CERTIFICATE-----\n")
    leaf = certs[0] + "-----END CERTIFICATE-----\n"
    (tmp_path / "leaf.pem").write_text(leaf)
    (tmp_path / "untrusted.pem").write_text(request["chain"][len(leaf) :] or leaf)
    (tmp_path / "ca.pem").write_text("".join(request["authorities"].values()))
    done = subprocess.run(
        [
            str(OPENSSL),
            "verify",
            "-attime",
            str(request["now"]),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            "-untrusted",
            str(tmp_path / "untrusted.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Files:
    def __init__(self, tmp: Path) -> None:
        forge = CertForge(int(time.time()))
        root = forge.authority("openssl/root", TD)
        inter = forge.intermediate("openssl/inter", root, TD)
        self.tmp = tmp
        self.ca = tmp / "ca.pem"
        self.ca.write_bytes(pem(root.cert))
        for name, spiffe_id in (
            ("server", f"spiffe://{TD}/server"),
            ("client", f"spiffe://{TD}/client"),
        ):
            leaf = forge.leaf(f"openssl/{name}", inter, spiffe_id)
            directory = tmp / name
            directory.mkdir()
            atomic_write(directory / "svid.pem", leaf.pem + inter.pem)
            atomic_write(directory / "svid_key.pem", leaf.key_pem, mode=0o600)
            atomic_write(directory / "svid_bundle.pem", pem(root.cert))
            atomic_write(directory / "intermediates.pem", inter.pem)


@pytest.fixture
def files(tmp_path: Path) -> _Files:
    return _Files(tmp_path)


def _openssl_server(files: _Files, port: int) -> Iterator[subprocess.Popen[str]]:
    server = files.tmp / "server"
    process = subprocess.Popen(
        [
            str(OPENSSL),
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(server / "svid.pem"),
            "-key",
            str(server / "svid_key.pem"),
            "-cert_chain",
            str(server / "intermediates.pem"),
            "-CAfile",
            str(files.ca),
            "-Verify",
            "4",
            "-verify_return_error",
            "-rev",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        process.kill()
        process.communicate(timeout=10)


@needs_openssl
def test_openssl_s_server_and_our_client(files: _Files) -> None:
    port = _free_port()
    server = iter(_openssl_server(files, port))
    process = next(server)
    try:
        source = X509Source.from_dir(files.tmp / "client")
        context = source.client_ssl_context(allow=f"spiffe://{TD}/server")
        deadline = time.monotonic() + 30
        while True:
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        with raw, context.wrap_socket(raw) as tls:
            assert str(peer_id(tls)) == f"spiffe://{TD}/server"
            tls.sendall(b"hello\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = tls.recv(100)
                if not chunk:
                    break
                reply += chunk
        assert reply == b"olleh\n"  # -rev: s_server answers each line reversed.
    finally:
        next(server, None)


@needs_openssl
def test_openssl_s_client_and_our_server(files: _Files) -> None:
    source = X509Source.from_dir(files.tmp / "server")
    context = source.server_ssl_context(allow=f"spiffe://{TD}/client")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = files.tmp / "client"
    process = subprocess.Popen(
        [
            str(OPENSSL),
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-cert",
            str(client / "svid.pem"),
            "-key",
            str(client / "svid_key.pem"),
            "-cert_chain",
            str(client / "intermediates.pem"),
            "-CAfile",
            str(files.ca),
            "-verify_return_error",
            "-quiet",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        listener.settimeout(30)
        conn, _ = listener.accept()
        conn.settimeout(30)
        with context.wrap_socket(conn, server_side=True) as tls:
            assert str(peer_id(tls)) == f"spiffe://{TD}/client"
            tls.sendall(b"from-spiffile\n")
        out, _ = process.communicate(timeout=30)
        assert b"from-spiffile" in out
    finally:
        listener.close()
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
