"""How soon an identity serves a rotation or revocation made by another process.

The contract (PROFILE.md §7.2): a change on disk is served by the first call
made 50 ms or more after it; a change this process made through spiffile
is served by the next call.  The producer here is a real ``spiffile``
process, so nothing in this one is told about its writes; the test waits
out the bound (a sleep lasts at least what it asks, on the same monotonic
clock the views use), so no outcome depends on the machine's speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spiffile import svid
from spiffile.errors import SignatureError
from spiffile.files import RECHECK_INTERVAL
from spiffile.keys import load_private_key_pem
from spiffile.provision import add_service, init_root, load_identity, rotate_service

TD = "example.org"
BILLING = f"spiffe://{TD}/billing"


def _spiffile(*args: str) -> None:
    """Run the CLI as another process would, with no SPIFFILE_* variables of ours."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    subprocess.run(
        [sys.executable, "-m", "spiffile", *args],
        env=environment,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _old_key_token(root: Path) -> tuple[str, str]:
    """A token orders signs with its current key, and that key's kid."""
    with load_identity(root, "orders") as orders:
        return orders.token(BILLING), orders.kid


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    init_root(path, trust_domain=TD)
    add_service(path, "orders")
    add_service(path, "billing")
    return path


def test_rotate_drop_old_in_another_process_applies_after_the_bound(root: Path) -> None:
    orders = load_identity(root, "orders")
    billing = load_identity(root, "billing")
    token, old_kid = _old_key_token(root)
    billing.verify(token)
    billing.verify(token)  # Now from the verified-token cache.
    assert orders.token(BILLING) and orders.kid == old_kid  # A cached token for billing.
    _spiffile("rotate", "--root", str(root), "orders", "--drop-old")
    time.sleep(RECHECK_INTERVAL)
    with pytest.raises(SignatureError):
        billing.verify(token)  # The old key is no longer bound.
    fresh = orders.token(BILLING)
    assert orders.kid != old_kid
    assert svid.verify(fresh, billing.bundle, audience=BILLING, now=time.time()).id == orders.id
    assert billing.verify(fresh).id == orders.id


def test_revoke_in_another_process_applies_after_the_bound(root: Path) -> None:
    billing = load_identity(root, "billing")
    token, old_kid = _old_key_token(root)
    old_key = load_private_key_pem((root / "services" / "orders" / "key.pem").read_bytes())
    rotate_service(root, "orders")  # The old key stays bound beside the new one.
    billing.verify(token)
    billing.verify(token)
    _spiffile("revoke", "--root", str(root), "orders", "--kid", old_kid)
    time.sleep(RECHECK_INTERVAL)
    with pytest.raises(SignatureError):
        billing.verify(token)
    with pytest.raises(SignatureError):
        billing.verify(
            svid.mint(old_key, old_kid, f"spiffe://{TD}/orders", BILLING, now=time.time())
        )


def test_a_rotation_this_process_makes_applies_on_the_next_call(root: Path) -> None:
    orders = load_identity(root, "orders")
    billing = load_identity(root, "billing")
    token, old_kid = _old_key_token(root)
    billing.verify(token)
    orders.token(BILLING)
    rotate_service(root, "orders", keep_old=False)  # No waiting: this process wrote it.
    with pytest.raises(SignatureError):
        billing.verify(token)
    assert orders.kid != old_kid
    assert billing.verify(orders.token(BILLING)).id == orders.id
