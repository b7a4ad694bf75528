"""Identity finds X.509-SVID files beside its JWT files (spiffe-helper names) or by variable."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from spiffile import provision
from spiffile.errors import ConfigurationError, X509MalformedError
from spiffile.files import atomic_write
from spiffile.identity import Identity

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance._x509 import CertForge, pem  # noqa: E402

TD = "example.org"
ORDERS = f"spiffe://{TD}/orders"


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    """A directory with id, key.pem, bundle.json and the three X.509 files of orders."""
    root = tmp_path / "root"
    provision.init_root(root, trust_domain=TD)
    provision.add_service(root, "orders")
    directory = tmp_path / "orders"
    directory.mkdir()
    for name in ("id", "key.pem"):
        shutil.copy(root / "services" / "orders" / name, directory / name)
    shutil.copy(root / "bundle.json", directory / "bundle.json")
    forge = CertForge(int(time.time()))
    ca = forge.authority("identity/root", TD)
    leaf = forge.leaf("identity/orders", ca, ORDERS, not_after=1200)
    atomic_write(directory / "svid.pem", leaf.pem)
    atomic_write(directory / "svid_key.pem", leaf.key_pem, mode=0o600)
    atomic_write(directory / "svid_bundle.pem", pem(ca.cert))
    return directory


def test_from_dir_finds_the_x509_files(workload: Path) -> None:
    with Identity.from_dir(workload) as identity:
        assert identity.x509.id == identity.id
        status = identity.status()
        assert status.x509 is not None and status.x509.healthy and status.healthy
        assert status.x509.expires_at == identity.x509.svid.expires_at
        full = status.as_dict()
        assert json.loads(json.dumps(full)) == full
        assert full["x509"]["expires_at"] == identity.x509.svid.expires_at
        assert full["x509"]["healthy"] is True and full["x509"]["error"] is None
        assert full["x509"]["svid"]["path"].endswith("svid.pem")
        brief = status.as_dict(detail=False)
        assert "error" not in brief["x509"] and "path" not in brief["x509"]["key"]
        assert str(workload) not in json.dumps(brief)
        assert identity.server_ssl_context(allow="billing").verify_mode.name == "CERT_REQUIRED"


def test_an_identity_without_x509_files_works_as_before(workload: Path) -> None:
    for name in ("svid.pem", "svid_key.pem", "svid_bundle.pem"):
        (workload / name).unlink()
    with Identity.from_dir(workload) as identity:
        assert identity.status().x509 is None
        assert identity.status().healthy
        with pytest.raises(ConfigurationError, match=r"no X\.509-SVID files"):
            identity.client_ssl_context(allow="billing")


def test_from_env_variables_win_over_the_directory(workload: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("svid.pem", "svid_key.pem", "svid_bundle.pem"):
        (workload / name).rename(elsewhere / name)
    env = {
        "SPIFFILE_DIR": str(workload),
        "SPIFFILE_X509_SVID_FILE": str(elsewhere / "svid.pem"),
        "SPIFFILE_X509_KEY_FILE": str(elsewhere / "svid_key.pem"),
        "SPIFFILE_X509_BUNDLE_FILE": str(elsewhere / "svid_bundle.pem"),
    }
    with Identity.from_env(env) as identity:
        assert identity.x509.id == identity.id
    with pytest.raises(ConfigurationError, match="SPIFFILE_X509_KEY_FILE"):
        Identity.from_env(
            {
                "SPIFFILE_ID_FILE": str(workload / "id"),
                "SPIFFILE_KEY_FILE": str(workload / "key.pem"),
                "SPIFFILE_BUNDLE_FILE": str(workload / "bundle.json"),
                "SPIFFILE_X509_SVID_FILE": str(elsewhere / "svid.pem"),
            }
        )


def test_an_svid_of_another_identity_is_a_configuration_error(workload: Path) -> None:
    forge = CertForge(int(time.time()))
    ca = forge.authority("identity/root", TD)
    other = forge.leaf("identity/billing", ca, f"spiffe://{TD}/billing")
    atomic_write(workload / "svid.pem", other.pem)
    atomic_write(workload / "svid_key.pem", other.key_pem, mode=0o600)
    with pytest.raises(ConfigurationError, match="billing"):
        Identity.from_dir(workload)


def test_a_broken_svid_file_at_start_is_an_error(workload: Path) -> None:
    atomic_write(workload / "svid.pem", b"not a certificate")
    with pytest.raises(X509MalformedError):
        Identity.from_dir(workload)
