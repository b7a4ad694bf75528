"""Bundle endpoints against go-spiffe v2.9.0's federation package (SPIFFE Federation §5).

- go-spiffe's ``federation.NewHandler`` serves a SPIFFE bundle over
  https_web; ``spiffile bundle fetch`` and :class:`BundleSync` consume it.
- spiffile's :class:`BundleServer` publishes an identity; go-spiffe's
  ``federation.FetchBundle`` fetches it, and ``jwtsvid.ParseAndValidate``
  verifies that identity's token with what it fetched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from peerbuild import PeerServer, peer_json, require_peer

from spiffile.bundle import SpiffeBundle, spiffe_jwt_bundle
from spiffile.endpoint import BundleServer, BundleSync, Endpoint
from spiffile.errors import SpiffileError
from spiffile.files import read_file
from spiffile.provision import Root, add_service, init_root, load_identity, service_info

pytestmark = pytest.mark.peers

TD = "example.org"


@pytest.fixture(scope="module")
def spiffepeer() -> Path:
    return require_peer("spiffepeer")


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
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


def spiffe_document(root: Root, name: str, sequence: int) -> bytes:
    """A SPIFFE bundle as an authority would publish it (here: one identity's keys)."""
    from spiffile.bundle import Bundle

    bundle = Bundle.parse(read_file(root.bundle_path))
    document = spiffe_jwt_bundle(bundle, service_info(root, name).id)
    document.update(spiffe_sequence=sequence, spiffe_refresh_hint=2)
    return json.dumps(document).encode()


def test_cli_fetch_from_go_spiffe_bundle_endpoint(
    spiffepeer: Path, root: Root, tls: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ca_file, chain, key = tls
    served = tmp_path / "served.json"
    served.write_bytes(spiffe_document(root, "orders", 5))
    args = ["-trust-domain", TD, "-bundle", str(served), "-cert", str(chain), "-key", str(key)]
    out = tmp_path / "trust" / f"{TD}.json"
    out.parent.mkdir()
    with PeerServer(spiffepeer, "serve-bundle", *args) as server:
        done = subprocess.run(
            [sys.executable, "-m", "spiffile", "bundle", "fetch", server.info["url"],
             "--trust-domain", TD, "--out", str(out), "--ca-file", str(ca_file), "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["sequence"] == 5
        fetched = SpiffeBundle.parse(out.read_bytes(), TD)
        assert [a.kid for a in fetched] == [service_info(root, "orders").kid]
        assert (fetched.sequence, fetched.refresh_hint) == (5, 2)

        # The endpoint moves on: sync picks up the new sequence; a broken
        # document on the endpoint leaves the last good file in place.
        served.write_bytes(spiffe_document(root, "billing", 6))
        syncer = BundleSync([Endpoint(TD, server.info["url"], str(out))], ca_file=ca_file)
        assert syncer.sync_all()
        assert SpiffeBundle.parse(out.read_bytes(), TD).sequence == 6
        good = out.read_bytes()
        served.write_bytes(b"{broken")
        assert not syncer.sync_all()
        assert out.read_bytes() == good


def test_go_spiffe_fetches_our_per_identity_endpoint_and_verifies_with_it(
    spiffepeer: Path, root: Root, tls: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ca_file, chain, key = tls
    with BundleServer(root.bundle_path, certfile=chain, keyfile=key) as server:
        fetched = peer_json(
            spiffepeer, "fetch-bundle", "-trust-domain", TD, "-url", server.url + "orders",
            "-ca-file", str(ca_file),
        )  # fmt: skip
    jwks = tmp_path / "orders.jwks.json"
    jwks.write_text(json.dumps(fetched["bundle"]))
    kids = [k["kid"] for k in fetched["bundle"]["keys"]]
    assert kids == [service_info(root, "orders").kid]
    with load_identity(root, "orders") as orders:
        token = orders.token(f"spiffe://{TD}/billing")
    svid = peer_json(
        spiffepeer, "validate-jwt", "-trust-domain", TD, "-bundle", str(jwks),
        "-audience", f"spiffe://{TD}/billing", input=token,
    )  # fmt: skip
    # The receiver's `sub` check (PROFILE.md §9): the identity it fetched.
    assert svid["spiffe_id"] == f"spiffe://{TD}/orders"


def test_cli_sync_follows_the_endpoint_until_sigterm(
    spiffepeer: Path, root: Root, tls: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """``spiffile bundle sync`` (no --once) refetches after the 2 s hint until it is stopped."""
    ca_file, chain, key = tls
    served = tmp_path / "served.json"
    served.write_bytes(spiffe_document(root, "orders", 5))
    args = ["-trust-domain", TD, "-bundle", str(served), "-cert", str(chain), "-key", str(key)]
    trust = tmp_path / "trust"
    trust.mkdir()
    out = trust / f"{TD}.json"
    with PeerServer(spiffepeer, "serve-bundle", *args) as server:
        sync = subprocess.Popen(
            [sys.executable, "-m", "spiffile", "bundle", "sync", "--trust-dir", str(trust),
             "--endpoint", f"{TD}={server.info['url']}", "--ca-file", str(ca_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert wait_for_sequence(out, 5)
            served.write_bytes(spiffe_document(root, "billing", 6))
            assert wait_for_sequence(out, 6)
        finally:
            sync.terminate()
            _, err = sync.communicate(timeout=30)
    assert sync.returncode == 0, err
    assert f"bundle sync {TD}: sequence 6" in err


def wait_for_sequence(path: Path, sequence: int, deadline: float = 60) -> bool:
    """Poll *path* until it holds a SPIFFE bundle with *sequence* (generous deadline)."""
    import time

    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if SpiffeBundle.parse(path.read_bytes(), TD).sequence == sequence:
                return True
        except (OSError, ValueError, SpiffileError):
            pass
        time.sleep(0.1)
    return False
