"""Reloads off the request path, and the cost of a timestamp from a clock ahead of ours.

While a changed bundle is read and parsed, every other caller keeps the
previous one (PROFILE.md §7.2): the parse is held at a slice boundary by an
injected pause, and the callers are shown to be served meanwhile, without
any timing.  A file whose change time lies in the future costs one extra
read per change (PROFILE.md §7.1), counted through the injected wall clock
that every read consults once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import spiffile.identity._loading
from spiffile import Identity, svid
from spiffile.bundle import Bundle
from spiffile.errors import SpiffileError
from spiffile.files import DirectoryView, FileView, atomic_write
from spiffile.keys import generate_private_key, kid_for, private_key_to_pem, public_jwk

TD = "example.org"
ORDERS = f"spiffe://{TD}/orders"
BILLING = f"spiffe://{TD}/billing"
_WAIT = 10.0


class Hold:
    """A pause that, once armed, parks the first parse that calls it until released."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self) -> None:
        if self.armed and not self.entered.is_set():
            self.entered.set()
            self.released.wait(6 * _WAIT)


def _document(sequence: int, identities: dict[str, Any]) -> bytes:
    """A bundle with *identities* and enough filler entries to span several parse slices."""
    filler = public_jwk(generate_private_key().public_key())
    entries = {f"spiffe://{TD}/filler/{i}": {"keys": [filler]} for i in range(1500)}
    entries.update(identities)
    document = {
        "trust_domain": TD,
        "spiffile_version": 1,
        "spiffe_sequence": sequence,
        "identities": entries,
    }
    data = Bundle.from_document(document).to_json()
    assert len(data) > 3 * 128 * 1024
    return data


def _in_thread(call: Any) -> list[Any]:
    """Run *call* in a thread; its result, once it has returned (never parked)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()))
    thread.start()
    thread.join(_WAIT)
    assert not thread.is_alive(), "a caller waited for the parse"
    return out


def test_callers_keep_the_previous_bundle_while_a_new_one_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    key = public_jwk(generate_private_key().public_key())
    atomic_write(path, _document(1, {ORDERS: {"keys": [key]}}))
    hold = Hold()
    view = FileView(path, lambda raw: Bundle.parse(raw, pause=hold), description="bundle")
    old = view.get()
    hold.armed = True
    atomic_write(path, _document(2, {BILLING: {"keys": [key]}}))
    loaded: list[Bundle] = []
    loader = threading.Thread(target=lambda: loaded.append(view.check()))
    loader.start()
    try:
        assert hold.entered.wait(_WAIT)
        # The first caller after the change is parked inside the parse; the
        # others are served the previous bundle at once, several times over.
        for _ in range(3):
            assert _in_thread(view.check) == [old]
        assert loader.is_alive()
    finally:
        hold.released.set()
        loader.join(_WAIT)
    assert len(loaded) == 1 and loaded[0] is not old
    assert loaded[0].sequence == 2 and BILLING in loaded[0] and ORDERS not in loaded[0]
    assert view.check() is loaded[0]
    assert view.status().reloads == 1


def test_with_watch_a_revoked_key_works_until_the_new_bundle_is_installed_and_not_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders, billing = generate_private_key(), generate_private_key()
    atomic_write(tmp_path / "id", f"{BILLING}\n".encode())
    atomic_write(tmp_path / "key.pem", private_key_to_pem(billing), mode=0o600)
    bound = {BILLING: {"keys": [public_jwk(billing.public_key())]}}
    orders_jwk = public_jwk(orders.public_key())
    atomic_write(tmp_path / "bundle.json", _document(1, {**bound, ORDERS: {"keys": [orders_jwk]}}))
    hold = Hold()
    monkeypatch.setattr(spiffile.identity._loading, "give_way", hold)
    now = time.time()

    def token(issued: float) -> str:
        return svid.mint(orders, kid_for(orders.public_key()), ORDERS, BILLING, now=issued)

    with Identity.from_dir(tmp_path).watch() as identity:
        reused = token(now)
        assert identity.verify(reused).id == ORDERS  # Now in the verified-token cache.
        old = identity.bundle
        hold.armed = True
        # Orders' key is revoked: a new key is bound in its place.
        new_jwk = public_jwk(generate_private_key().public_key())
        atomic_write(tmp_path / "bundle.json", _document(2, {**bound, ORDERS: {"keys": [new_jwk]}}))
        # The watcher parses the change; should it have started watching
        # after the write, the first caller does (the 50 ms backstop): a
        # thread of its own, so that whichever it is may be parked.
        first_caller = threading.Thread(
            target=lambda: [identity.bundle for _ in iter(lambda: hold.entered.wait(0.02), True)]
        )
        first_caller.start()
        try:
            assert hold.entered.wait(_WAIT), "nobody started parsing"
            # The watcher is parked inside the parse: every caller is served
            # by the previous bundle, from the cache and through a full verify.
            assert identity.bundle is old
            assert _in_thread(lambda: identity.verify(reused).id) == [ORDERS]
            assert _in_thread(lambda: identity.verify(token(now + 1)).id) == [ORDERS]
        finally:
            hold.released.set()
            first_caller.join(_WAIT)
        deadline = time.monotonic() + _WAIT
        while identity.bundle.sequence != 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert identity.bundle.sequence == 2
        # Installed: the revoked key stops working at once, cached or not.
        with pytest.raises(SpiffileError):
            identity.verify(reused)
        with pytest.raises(SpiffileError):
            identity.verify(token(now + 2))


class ReadCounter:
    """The wall clock a view compares timestamps with, *offset* from the real one.

    A view consults it exactly once per read of the file, so it counts reads.
    """

    def __init__(self, offset_ns: int) -> None:
        self.offset_ns = offset_ns
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return time.time_ns() + self.offset_ns


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_change_time_in_the_future_costs_one_extra_read_per_change(tmp_path: Path) -> None:
    """Our clock an hour behind the file's (a file server's clock ahead, or ours stepped back)."""
    path = tmp_path / "value.json"
    atomic_write(path, json.dumps({"v": 1}).encode())
    reads = ReadCounter(-3600 * 10**9)
    clock = Monotonic()
    view = FileView(path, json.loads, description="value", wall_ns=reads, monotonic=clock)
    assert reads.reads == 1
    for version in (1, 2, 3):
        if version > 1:
            atomic_write(path, json.dumps({"v": version}).encode())
            clock.now += 1.0
            assert view.get() == {"v": version}
            assert reads.reads == 2 * version - 1  # The read of the change itself.
        for _ in range(50):
            clock.now += 0.001
            assert view.get() == {"v": version}
        # One comparison, a tick later (at most 2 s on a coarse file system)...
        clock.now += 5.0
        for _ in range(50):
            clock.now += 0.1
            assert view.get() == {"v": version}
        # ...and no more, however many calls follow.
        assert reads.reads == 2 * version


def test_a_future_mtime_costs_no_read_beyond_its_change(tmp_path: Path) -> None:
    """mtime can be set to anything (touch -d); the change time the kernel sets decides."""
    path = tmp_path / "value.json"
    atomic_write(path, b'{"v": 1}')
    reads = ReadCounter(60 * 10**9)  # Our clock ahead: nothing is within a tick.
    clock = Monotonic()
    view = FileView(path, json.loads, description="value", wall_ns=reads, monotonic=clock)
    day = 86_400 * 10**9
    os.utime(path, ns=(time.time_ns() + day, time.time_ns() + day))
    clock.now += 1.0
    assert view.get() == {"v": 1}
    for _ in range(50):
        clock.now += 1.0
        view.get()
    assert reads.reads == 2


def test_a_token_only_the_new_bundle_binds_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One-step rotation (PROFILE.md §8.2): the new key is bound before the sender signs with it.

    While the new bundle is parsed, a token signed by the key it adds must not
    be refused by the previous bundle: that caller (and only it) waits.
    """
    orders, billing, rotated = (
        generate_private_key(),
        generate_private_key(),
        generate_private_key(),
    )
    atomic_write(tmp_path / "id", f"{BILLING}\n".encode())
    atomic_write(tmp_path / "key.pem", private_key_to_pem(billing), mode=0o600)
    bound = {BILLING: {"keys": [public_jwk(billing.public_key())]}}
    old_key = public_jwk(orders.public_key())
    atomic_write(tmp_path / "bundle.json", _document(1, {**bound, ORDERS: {"keys": [old_key]}}))
    hold = Hold()
    monkeypatch.setattr(spiffile.identity._loading, "give_way", hold)
    identity = Identity.from_dir(tmp_path)
    now = time.time()
    old_token = svid.mint(orders, kid_for(orders.public_key()), ORDERS, BILLING, now=now)
    new_token = svid.mint(rotated, kid_for(rotated.public_key()), ORDERS, BILLING, now=now)
    hold.armed = True
    both = [old_key, public_jwk(rotated.public_key())]
    atomic_write(tmp_path / "bundle.json", _document(2, {**bound, ORDERS: {"keys": both}}))
    parser = threading.Thread(target=identity._bundle_view.check)
    parser.start()
    outcome: list[object] = []

    def verify_new() -> None:
        try:
            outcome.append(identity.verify(new_token).id)
        except SpiffileError as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=verify_new)
    try:
        assert hold.entered.wait(_WAIT)
        assert _in_thread(lambda: identity.verify(old_token).id) == [ORDERS]
        waiting.start()
    finally:
        hold.released.set()
        parser.join(_WAIT)
        waiting.join(_WAIT)
    assert outcome == [ORDERS]


def test_a_directory_with_change_times_in_the_future_costs_one_extra_read_per_change(
    tmp_path: Path,
) -> None:
    """A trust directory (PROFILE.md §12) on a file server whose clock runs an hour ahead.

    The directory's listing and each file's read consult the injected wall
    clock once: the count is the number of listings plus reads.
    """
    (tmp_path / "a.json").write_bytes(b'{"v": 1}')
    reads = ReadCounter(-3600 * 10**9)
    clock = Monotonic()
    view: DirectoryView[Any] = DirectoryView(
        tmp_path,
        lambda name, raw: json.loads(raw),
        suffix=".json",
        description="value",
        wall_ns=reads,
        monotonic=clock,
    )
    assert reads.reads == 2  # One listing, one read.

    def settle(expected: dict[str, Any]) -> int:
        """Many calls over a few seconds; the reads they cost."""
        before = reads.reads
        for _ in range(50):
            clock.now += 0.001
            assert {name: view.get(name) for name in view.names()} == expected
        clock.now += 5.0  # Past the tick, however coarse (2 s).
        for _ in range(50):
            clock.now += 0.1
            assert {name: view.get(name) for name in view.names()} == expected
        return reads.reads - before

    # One comparison each, a tick later (the listing, the file), then none.
    assert settle({"a": {"v": 1}}) == 2
    assert settle({"a": {"v": 1}}) == 0
    atomic_write(tmp_path / "a.json", b'{"v": 2}')  # A rename: the directory changes too.
    clock.now += 1.0
    before = reads.reads
    assert view.get("a") == {"v": 2}
    assert reads.reads - before == 2  # The change's listing and read...
    assert settle({"a": {"v": 2}}) == 2  # ...one comparison each...
    assert settle({"a": {"v": 2}}) == 0  # ...and no more.
    (tmp_path / "b.json").write_bytes(b'{"v": 3}')  # A new name.
    clock.now += 1.0
    assert settle({"a": {"v": 2}, "b": {"v": 3}}) == 2 + 2
    assert settle({"a": {"v": 2}, "b": {"v": 3}}) == 0
