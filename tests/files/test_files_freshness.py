"""How soon a change on disk is served: within 50 ms, at once when this process made it.

The clock that paces the looks is injected, so the bound is measured
exactly rather than by waiting (PROFILE.md §7.2).  Changes "from another
process" are written with plain ``os`` calls, which spiffile never sees.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from spiffile import Identity, svid
from spiffile.bundle import Bundle
from spiffile.errors import UnknownIdentityError
from spiffile.files import RECHECK_INTERVAL, FileView, Watcher, atomic_write
from spiffile.keys import generate_private_key, kid_for, private_key_to_pem, public_jwk


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _view(path: Path, ticker: Ticker) -> FileView[bytes]:
    return FileView(path, bytes, description="test", monotonic=ticker)


def _foreign_write(path: Path, data: bytes) -> None:
    """Replace *path* as another process would: spiffile in this one is not told."""
    tmp = path.with_name(f".{path.name}.foreign")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _in_place(path: Path, data: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate()


def test_the_bound_is_50_ms() -> None:
    assert RECHECK_INTERVAL == 0.05


def test_a_change_by_another_process_is_served_on_the_first_call_after_50_ms(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    assert view.get() == b"one"  # Looks at the file: the next look is 50 ms away.
    _foreign_write(path, b"two")
    ticker.now += RECHECK_INTERVAL * 0.99
    assert view.get() == b"one"  # Within the bound, no stat: the value held.
    ticker.now += RECHECK_INTERVAL * 0.02
    assert view.get() == b"two"  # The first call after the bound: served.
    _in_place(path, b"six")  # Same size, same inode: the stamp still tells.
    ticker.now += RECHECK_INTERVAL
    assert view.get() == b"six"


def test_without_a_watcher_a_view_looks_at_most_once_per_50_ms(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    view.get()
    stats: list[float] = []
    real_stat = os.stat

    def counting_stat(*args: object, **kwargs: object) -> os.stat_result:
        stats.append(ticker.now)
        return real_stat(*args, **kwargs)  # type: ignore[arg-type]

    os.stat = counting_stat
    try:
        for _ in range(110):
            ticker.now += 0.001
            view.get()
    finally:
        os.stat = real_stat
    # 110 calls over 110 ms of the injected clock: two looks, 50 ms apart.
    assert len(stats) == 2 and stats[1] - stats[0] >= RECHECK_INTERVAL


def test_a_change_this_process_made_is_served_on_the_next_call(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    assert view.get() == b"one"
    atomic_write(path, b"two")  # spiffile's own writer: no waiting out the bound.
    assert view.get() == b"two"


def test_check_looks_at_once(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    view = _view(path, Ticker())
    view.get()
    _foreign_write(path, b"two")
    assert view.get() == b"one"
    assert view.check() == b"two"  # What Identity.status() uses.


def test_while_pushed_a_change_is_served_within_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    view.pushed = True
    assert view.get() == b"one"
    _foreign_write(path, b"two")
    ticker.now += RECHECK_INTERVAL * 0.99
    assert view.get() == b"one"
    ticker.now += RECHECK_INTERVAL * 0.02
    assert view.get() == b"two"


def test_a_refresh_is_served_at_once_and_a_clock_step_back_rechecks(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one")
    ticker = Ticker()
    view = _view(path, ticker)
    view.pushed = True
    view.get()
    _foreign_write(path, b"two")
    assert view.refresh() == b"two" and view.get() == b"two"  # What the watcher does.
    _foreign_write(path, b"three")
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
