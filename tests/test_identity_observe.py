"""Metrics, status as JSON and change notifications of an Identity, with real file rewrites.

The watcher is real (watchfiles on the provisioned root); rotations are the
producer's own (``rotate_service``).  A watch that starts after a write
would miss it, so each wait re-publishes the bundle (same document, new
inode) until the expected change arrives: no test depends on how fast the
watcher thread subscribes.
"""

from __future__ import annotations

import asyncio
import json
import queue
from collections.abc import Callable
from pathlib import Path

import pytest

from spiffile import Identity, InvalidTokenError
from spiffile.changes import Change, ChangeKind
from spiffile.files import atomic_write
from spiffile.identity import IdentityStatus
from spiffile.metrics import NO_METRICS, VERIFIED, MetricsRecorder
from spiffile.provision import Root, add_service, init_root, load_identity, rotate_service

WAIT = 3.0
ATTEMPTS = 10


class Recorder:
    """A MetricsRecorder that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.states: list[IdentityStatus] = []

    def verification(self, result: str) -> None:
        self.calls.append(("verification", result))

    def token_minted(self) -> None:
        self.calls.append(("minted", None))

    def token_cache_hit(self) -> None:
        self.calls.append(("cache_hit", None))

    def reload(self, file: str, ok: bool) -> None:
        self.calls.append(("reload", (file, ok)))

    def state(self, status: IdentityStatus) -> None:
        self.states.append(status)


@pytest.fixture
def root(tmp_path: Path) -> Root:
    root = init_root(tmp_path / "identity", "example.org")
    add_service(root, "orders")
    add_service(root, "billing")
    return root


def republish(root: Root) -> None:
    """The same bundle document under a new inode: a change the watcher reports."""
    path = Path(root.path) / "bundle.json"
    atomic_write(path, path.read_bytes())


def wait_for(
    changes: queue.Queue[Change], done: Callable[[list[Change]], bool], poke: Callable[[], None]
) -> list[Change]:
    seen: list[Change] = []
    for _ in range(ATTEMPTS):
        try:
            while True:
                seen.append(changes.get(timeout=WAIT))
                if done(seen):
                    return seen
        except queue.Empty:
            poke()
    raise AssertionError(f"no such change; saw {seen!r}")


def test_the_protocol_is_what_the_default_and_the_test_recorder_satisfy() -> None:
    assert isinstance(NO_METRICS, MetricsRecorder)
    assert isinstance(Recorder(), MetricsRecorder)


def test_verifications_mints_and_cache_hits_are_recorded(root: Root) -> None:
    recorder = Recorder()
    orders = load_identity(root, "orders", metrics=recorder)
    billing = load_identity(root, "billing", metrics=recorder)
    recorder.calls.clear()
    token = orders.token(billing.id)
    assert orders.token(billing.id) == token
    billing.verify(token)
    with pytest.raises(InvalidTokenError):
        billing.verify(token, "spiffe://example.org/other")
    with pytest.raises(InvalidTokenError):
        billing.verify("garbage")
    orders.token(billing.id, jti=True)
    assert recorder.calls == [
        ("minted", None),
        ("cache_hit", None),
        ("verification", VERIFIED),
        ("verification", "audience"),
        ("verification", "malformed"),
        ("minted", None),
    ]
    # Setting a recorder reports the state at once.
    assert recorder.states and recorder.states[-1].kid == billing.kid


def test_as_dict_is_json_and_hides_paths_unless_asked(root: Root) -> None:
    orders = load_identity(root, "orders")
    full = orders.status().as_dict()
    assert json.loads(json.dumps(full)) == full
    assert full["id"] == "spiffe://example.org/orders" and full["healthy"] is True
    assert full["kid"] == orders.kid and full["key_bound"] is True
    assert full["bundle_sequence"] == orders.bundle.sequence
    assert full["key"]["path"].endswith("key.pem") and full["key"]["error"] is None
    brief = orders.status().as_dict(detail=False)
    assert "path" not in brief["key"] and "error" not in brief["bundle"]
    assert str(root.path) not in json.dumps(brief)


def test_on_change_reports_a_rotation_with_the_new_kid_and_sequence(root: Root) -> None:
    recorder = Recorder()
    with load_identity(root, "orders", metrics=recorder) as orders:
        changes: queue.Queue[Change] = queue.Queue()
        unsubscribe = orders.on_change(changes.put)
        old_kid, old_sequence = orders.kid, orders.bundle.sequence
        assert old_sequence is not None
        new_kid = rotate_service(root, "orders")
        seen = wait_for(changes, lambda s: s[-1].kid == new_kid, lambda: republish(root))
        last = seen[-1]
        assert ChangeKind.KEY in {kind for change in seen for kind in change.what}
        assert seen[0].previous_kid == old_kid
        assert last.bundle_sequence is not None and last.bundle_sequence > old_sequence
        assert last.healthy and last.status.key_bound
        assert ("reload", ("key", True)) in recorder.calls
        assert recorder.states[-1].kid == new_kid
        unsubscribe()


def test_a_refused_bundle_is_reported_and_recovery_too(root: Root) -> None:
    recorder = Recorder()
    with load_identity(root, "orders", metrics=recorder) as orders:
        changes: queue.Queue[Change] = queue.Queue()
        orders.on_change(changes.put)
        bundle = Path(root.path) / "bundle.json"
        good = bundle.read_bytes()
        garbage = iter(f"not json {n}".encode() for n in range(100))
        atomic_write(bundle, next(garbage))
        seen = wait_for(
            changes,
            lambda s: ChangeKind.BUNDLE_REFUSED in s[-1].what,
            lambda: atomic_write(bundle, next(garbage)),
        )
        refused = seen[-1]
        assert not refused.healthy and ChangeKind.HEALTH in refused.what
        assert refused.status.bundle.error is not None
        assert ("reload", ("bundle", False)) in recorder.calls
        assert not recorder.states[-1].healthy
        atomic_write(bundle, good)
        seen = wait_for(changes, lambda s: s[-1].healthy, lambda: atomic_write(bundle, good))
        assert ChangeKind.HEALTH in seen[-1].what


def test_a_failing_callback_does_not_stop_the_others(root: Root) -> None:
    with load_identity(root, "orders") as orders:
        changes: queue.Queue[Change] = queue.Queue()

        def broken(change: Change) -> None:
            raise RuntimeError("subscriber bug")

        orders.on_change(broken)
        orders.on_change(changes.put)
        rotate_service(root, "orders")
        wait_for(changes, lambda s: True, lambda: republish(root))


def test_async_changes_yield_the_same_events(root: Root) -> None:
    orders: Identity = load_identity(root, "orders")

    async def main() -> Change:
        stream = orders.changes()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # The generator subscribes when first awaited.
        for _ in range(ATTEMPTS):
            rotate_service(root, "orders")
            done, _pending = await asyncio.wait({first}, timeout=WAIT)
            if done:
                change = first.result()
                await stream.aclose()
                return change
        raise AssertionError("no change arrived")

    try:
        change = asyncio.run(main())
    finally:
        orders.close()
    assert change.bundle_sequence is not None and change.what
