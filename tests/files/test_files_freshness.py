"""How soon a change on disk is served: every call without a watcher, 50 ms with one.

The clock that paces the re-checks is injected, so the bound is measured
exactly rather than by waiting.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from spiffile import Identity, svid
from spiffile.bundle import Bundle
from spiffile.errors import UnknownIdentityError
from spiffile.files import PUSHED_RECHECK, FileView, Watcher, atomic_write
from spiffile.keys import generate_private_key, kid_for, private_key_to_pem, public_jwk


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _view(path: Path, ticker: Ticker) -> FileView[bytes]:
    return FileView(path, bytes, description="test", monotonic=ticker)


def test_without_a_watcher_every_get_sees_the_change(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    atomic_write(path, b"two")
    assert view.get() == b"two"


def test_while_pushed_a_change_is_served_within_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    view.pushed = True
    assert view.get() == b"one"  # Looks at the file: the next look is 50 ms away.
    atomic_write(path, b"two")
    ticker.now += PUSHED_RECHECK * 0.99
    assert view.get() == b"one"  # Within the bound, no stat: the cached value.
    ticker.now += PUSHED_RECHECK * 0.02
    assert view.get() == b"two"  # The bound (50 ms) has passed: seen.
    assert PUSHED_RECHECK <= 0.05


def test_a_refresh_is_served_at_once_and_a_clock_step_back_rechecks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    view.pushed = True
    view.get()
    atomic_write(path, b"two")
    assert view.refresh() == b"two" and view.get() == b"two"  # What the watcher does.
    atomic_write(path, b"three")
    ticker.now -= 3600  # A clock stepped back never freezes the view.
    assert view.get() == b"three"


def test_a_watcher_pushes_its_views_and_releases_them(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    view = _view(path, Ticker())
    watcher = Watcher([view])  # type: ignore[list-item]
    try:
        assert view.pushed
    finally:
        watcher.close()
    assert not view.pushed


def test_with_watch_a_revocation_applies_once_the_watcher_reports_it(tmp_path: Path) -> None:
    orders, billing = generate_private_key(), generate_private_key()
    td = "example.org"
    atomic_write(tmp_path / "id", f"spiffe://{td}/billing\n".encode())
    atomic_write(tmp_path / "key.pem", private_key_to_pem(billing), mode=0o600)
    both = (
        Bundle.empty(td)
        .with_keys(f"spiffe://{td}/billing", [public_jwk(billing.public_key())])
        .with_keys(f"spiffe://{td}/orders", [public_jwk(orders.public_key())])
    )
    atomic_write(tmp_path / "bundle.json", both.with_sequence(1).to_json())
    identity = Identity.from_dir(tmp_path)
    changed = threading.Event()
    identity.on_change(lambda change: changed.set())
    try:
        token = svid.mint(
            orders,
            kid_for(orders.public_key()),
            f"spiffe://{td}/orders",
            f"spiffe://{td}/billing",
            now=time.time(),
        )
        identity.verify(token)
        identity.verify(token)  # From the verified-token cache.
        revoked = both.without_identity(f"spiffe://{td}/orders").with_sequence(2)
        atomic_write(tmp_path / "bundle.json", revoked.to_json())
        assert changed.wait(timeout=30), "the watcher never reported the change"
        try:
            identity.verify(token)
        except UnknownIdentityError:
            pass
        else:
            raise AssertionError("a revoked identity still verified after the change was reported")
    finally:
        identity.close()
