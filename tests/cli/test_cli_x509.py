"""``spiffile init --x509`` and ``spiffile x509 ...`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spiffile.svid.x509 import load_authorities, load_certificates


def spiffile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spiffile", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_init_x509_add_renew_rotate_ca(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    done = spiffile("init", "--root", root, "--trust-domain", "example.org", "--x509")
    assert done.returncode == 0, done.stderr
    assert spiffile("add", "--root", root, "orders").returncode == 0
    svid = tmp_path / "root" / "services" / "orders" / "svid.pem"
    (leaf,) = load_certificates(svid.read_bytes())
    kept = spiffile("x509", "renew", "--root", root, "--json")
    assert kept.returncode == 0, kept.stderr
    assert [entry["issued"] for entry in json.loads(kept.stdout)] == [False]
    rotated = spiffile("x509", "rotate-ca", "--root", root)
    assert rotated.returncode == 0, rotated.stderr
    assert len(load_authorities((tmp_path / "root" / "svid_bundle.pem").read_bytes())) == 2
    renewed = spiffile("x509", "renew", "--root", root, "orders", "--json")
    assert json.loads(renewed.stdout)[0]["issued"] is True
    assert load_certificates(svid.read_bytes())[0] != leaf


def test_errors_are_one_line(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    assert spiffile("init", "--root", root, "--trust-domain", "example.org").returncode == 0
    done = spiffile("x509", "renew", "--root", root)
    assert done.returncode != 0
    assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    enabled = spiffile("x509", "enable", "--root", root, "--svid-ttl", "600")
    assert enabled.returncode == 0, enabled.stderr
    missing = spiffile("x509", "renew", "--root", root, "nosuch")
    assert missing.returncode != 0 and missing.stderr.startswith("Error: ")
