"""Tests for spiffile/files.py: atomic writes and hot-reloading file views.

Every way a producer can change a file is exercised on real files: replacement
by rename, same-size in-place rewrites within one millisecond, rewrites that
restore the old mtime, corruption and deletion.
"""

from __future__ import annotations

import itertools
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from spiffile.errors import InvalidBundleError
from spiffile.files import FileView, Watcher, atomic_write


def _parse(data: bytes) -> str:
    text = data.decode()
    if not text.startswith("v"):
        raise InvalidBundleError("does not start with v")
    return text


def _every_call() -> Callable[[], float]:
    """A monotonic clock that moves a second per read: every ``get()`` looks at the file.

    These tests are about what a look finds; when the views look (at most
    every 50 ms) is tests/files/test_files_freshness.py's subject.
    """
    return itertools.count(step=1.0).__next__


def _rewrite_in_place(path: Path, data: bytes) -> None:
    # Same inode, no rename: the case a stat signature without ctime misses.
    with open(path, "r+b") as handle:
        handle.write(data)
        handle.truncate()


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_atomic_write_creates_exact_mode_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "key.pem", b"secret", mode=0o600)
        atomic_write(tmp_path / "bundle.json", b"{}", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "key.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "bundle.json").st_mode) == 0o644
    assert (tmp_path / "key.pem").read_bytes() == b"secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.json", "key.pem"]


def test_atomic_write_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    inode = os.stat(target).st_ino
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.stat(target).st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_view_loads_and_serves_from_cache(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test")
    assert view.get() == "v1"
    assert view.status().healthy


def test_view_refuses_an_unusable_file_at_start(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"broken")
    with pytest.raises(InvalidBundleError):
        FileView(path, _parse, description="test")
    with pytest.raises(OSError):
        FileView(tmp_path / "missing", _parse, description="test")


def test_replacement_by_rename_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test")
    atomic_write(path, b"v2")
    assert view.get() == "v2"


def test_same_size_in_place_rewrite_within_one_millisecond_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test", monotonic=_every_call())
    inode, size = os.stat(path).st_ino, os.stat(path).st_size
    for version in range(2, 10):
        # Back to back, no sleep: each rewrite lands within the same millisecond
        # as the read before it, same inode, same size.
        _rewrite_in_place(path, f"v{version}".encode())
        assert (os.stat(path).st_ino, os.stat(path).st_size) == (inode, size)
        assert view.get() == f"v{version}"


def test_rewrite_with_preserved_mtime_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    old = os.stat(path)
    view = FileView(path, _parse, description="test")
    _rewrite_in_place(path, b"v2")
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert view.get() == "v2"


def test_old_file_rewritten_in_place_with_preserved_mtime_is_noticed(tmp_path: Path) -> None:
    # The file is old (outside any racy window): only ctime can reveal the change.
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    long_ago = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(long_ago, long_ago))
    time.sleep(0.05)
    view = FileView(path, _parse, description="test")
    _rewrite_in_place(path, b"v2")
    os.utime(path, ns=(long_ago, long_ago))
    assert view.get() == "v2"


def test_at_most_one_stat_per_50_ms_when_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    long_ago = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(long_ago, long_ago))
    time.sleep(0.05)
    ticks = [1000.0]
    view = FileView(path, _parse, description="test", monotonic=lambda: ticks[0])
    view.get()
    calls: list[object] = []
    real_stat = os.stat

    def counting_stat(*args: object, **kwargs: object) -> os.stat_result:
        calls.append(args)
        return real_stat(*args, **kwargs)  # type: ignore[arg-type]

    opened: list[object] = []
    real_open = open

    def counting_open(*args: object, **kwargs: object) -> object:
        opened.append(args)
        return real_open(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "stat", counting_stat)
    monkeypatch.setattr("builtins.open", counting_open)
    for _ in range(10):
        assert view.get() == "v1"
    assert calls == []  # Within 50 ms of the look above: the value held.
    for _ in range(10):
        ticks[0] += 0.05
        assert view.get() == "v1"
    assert len(calls) == 10  # One look per 50 ms, each a single stat.
    assert opened == []


def test_corrupt_file_keeps_last_good_and_warns_once_per_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test")
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        atomic_write(path, b"garbage")
        for _ in range(5):
            assert view.get() == "v1"
        status = view.status()
        assert not status.healthy
        assert status.error is not None and "does not start with v" in status.error
        atomic_write(path, b"more garbage")
        for _ in range(5):
            assert view.get() == "v1"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    atomic_write(path, b"v3")
    assert view.get() == "v3"
    assert view.status().healthy


def test_deleted_file_keeps_last_good_until_it_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test")
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        path.unlink()
        for _ in range(3):
            assert view.get() == "v1"
    assert not view.status().healthy
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    atomic_write(path, b"v2")
    assert view.get() == "v2"
    assert view.status().healthy


def test_accept_hook_refuses_a_version(tmp_path: Path) -> None:
    def only_forward(old: str, new: str) -> None:
        if new < old:
            raise InvalidBundleError("rollback")

    path = tmp_path / "f"
    path.write_bytes(b"v5")
    view = FileView(path, _parse, description="test", accept=only_forward)
    atomic_write(path, b"v3")
    assert view.get() == "v5"
    assert not view.status().healthy
    atomic_write(path, b"v6")
    assert view.get() == "v6"


def test_oversize_file_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spiffile.files import views as files

    path = tmp_path / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test")
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10)
    atomic_write(path, b"v" + b"x" * 20)
    assert view.get() == "v1"
    assert not view.status().healthy


@pytest.mark.parametrize("size", [0, 1, 9, 10, 11, 25])
@pytest.mark.parametrize("skew", [-30, -5, -1, 0, 1, 5, 30])
def test_capped_read_returns_what_one_read_of_the_cap_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, skew: int
) -> None:
    # The size fstat gave may be stale (the file grew or shrank since): the
    # bytes are those of a single read of the cap whatever it was.
    from spiffile.files import views as files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10)
    path = tmp_path / "f"
    path.write_bytes(bytes(range(65, 65 + size)))
    with open(path, "rb") as handle:
        expected = handle.read(11)
    with open(path, "rb") as handle:
        assert files._read_capped(handle, size + skew) == expected


def test_watcher_reloads_without_being_asked(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test")
    watcher = Watcher([view], debounce_ms=20)  # type: ignore[list-item]
    try:
        time.sleep(0.3)  # Let the watcher thread subscribe before the change.
        atomic_write(path, b"v2")
        deadline = time.monotonic() + 10
        while view.status().reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        # status() does not read the file: only the watcher can have reloaded it.
        assert view.status().reloads == 1
    finally:
        watcher.close()


class _CoarseFileSystem:
    """Timestamps of *path* that only move when the test says so, and a wall clock the test sets.

    Stands for a file system whose clock did not tick between two writes: a
    same-size rewrite in place then leaves (device, inode, size, mtime, ctime)
    exactly as they were, and only the content tells the versions apart.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, path: Path, stamp_ns: int) -> None:
        from types import SimpleNamespace

        from spiffile.files import views as files

        self.stamp_ns = stamp_ns
        self.now_ns = stamp_ns
        real_stat, real_fstat = os.stat, os.fstat
        watched = {str(path), os.fsencode(path)}
        inode = real_stat(path).st_ino

        def frozen(st: os.stat_result) -> os.stat_result:
            if st.st_ino != inode:
                return st
            times = {"st_mtime_ns": self.stamp_ns, "st_ctime_ns": self.stamp_ns}
            return os.stat_result(tuple(st), {"st_atime_ns": st.st_atime_ns, **times})

        def stat(target: object, *args: object, **kwargs: object) -> os.stat_result:
            st = real_stat(target, *args, **kwargs)  # type: ignore[arg-type]
            return frozen(st) if target in watched else st

        monkeypatch.setattr(os, "stat", stat)
        monkeypatch.setattr(os, "fstat", lambda fd: frozen(real_fstat(fd)))
        monkeypatch.setattr(files, "time", SimpleNamespace(time_ns=lambda: self.now_ns))


def test_same_signature_rewrite_in_the_tick_is_seen_by_a_get_after_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read within the tick of the last write, rewritten in the same tick, and
    # the next get() comes long after: it must still compare the content once
    # (the rewrite happened inside the window, not after it).
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    fs = _CoarseFileSystem(monkeypatch, path, time.time_ns())
    fs.now_ns += 2_000_000
    view = FileView(path, _parse, description="test")
    _rewrite_in_place(path, b"v2")
    fs.now_ns += 10 * 10**9
    assert view.get() == "v2"
    assert view.status().reloads == 1


def test_racy_window_counts_from_the_read_not_from_the_end_of_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large bundle parses for longer than the window: the read was still
    # within the tick of the write, so a same-tick rewrite must not be missed.
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    fs = _CoarseFileSystem(monkeypatch, path, time.time_ns())
    fs.now_ns += 2_000_000

    def slow_parse(data: bytes) -> str:
        fs.now_ns += 10 * 10**9
        return _parse(data)

    view = FileView(path, slow_parse, description="test")
    _rewrite_in_place(path, b"v2")
    assert view.get() == "v2"


def test_unusable_version_read_in_the_tick_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A non-atomic writer: the reader catches a half-written (unusable)
    # version, the writer finishes within the same tick.  The view must not
    # stay on the last good version and report the file unhealthy for good.
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    fs = _CoarseFileSystem(monkeypatch, path, time.time_ns() - 3600 * 10**9)
    view = FileView(path, _parse, description="test", monotonic=_every_call())
    fs.stamp_ns = fs.now_ns = time.time_ns()
    _rewrite_in_place(path, b"x2")
    fs.now_ns += 1_000_000
    assert view.get() == "v1"
    assert not view.status().healthy
    _rewrite_in_place(path, b"v2")
    fs.now_ns += 10 * 10**9
    assert view.get() == "v2"
    assert view.status().healthy


def test_concurrent_gets_after_one_change_parse_it_once(tmp_path: Path) -> None:
    # Threads that noticed the same change while another one was parsing it
    # must not each parse the file again (a large bundle, many request
    # threads): one change is one reload, in the count and in the log.  They
    # do not wait for it either: they are served the previous version
    # (PROFILE.md §7.2; tests/files/test_files_reload_offpath.py shows it
    # without timing).
    import threading

    path = tmp_path / "f"
    path.write_bytes(b"v1")
    parsed: list[bytes] = []

    def slow_parse(data: bytes) -> str:
        parsed.append(data)
        time.sleep(0.2)
        return _parse(data)

    view = FileView(path, slow_parse, description="test")
    time.sleep(0.05)  # Leave the racy window of the first version.
    view.get()
    atomic_write(path, b"v2")
    time.sleep(0.05)
    start = threading.Barrier(8)
    seen: list[str] = []

    def worker() -> None:
        start.wait()
        seen.append(view.get())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "v2" in seen and set(seen) <= {"v1", "v2"}
    assert parsed == [b"v1", b"v2"]
    assert view.status().reloads == 1
    assert view.get() == "v2"


def test_future_mtime_does_not_make_every_get_read_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rsync -t / cp -p from a host whose clock runs ahead, touch -d: the
    # mtime lies in the future, which kept the file "racy" until then, so
    # every verify read (and compared) the whole bundle.  Only ctime, which
    # the kernel sets from its own clock on every change, says how recent
    # the last write is.
    path = tmp_path / "f"
    path.write_bytes(b"v1")
    future = time.time_ns() + 3600 * 10**9
    os.utime(path, ns=(future, future))
    time.sleep(0.05)
    view = FileView(path, _parse, description="test", monotonic=_every_call())
    opened: list[object] = []
    real_open = open

    def counting_open(*args: object, **kwargs: object) -> object:
        opened.append(args)
        return real_open(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", counting_open)
    for _ in range(10):
        assert view.get() == "v1"
    assert opened == []
    # ctime still reveals a rewrite that restores the future mtime.
    _rewrite_in_place(path, b"v2")
    os.utime(path, ns=(future, future))
    assert view.get() == "v2"


def test_watcher_that_cannot_watch_warns_and_the_view_still_follows_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # watchfiles cannot take a path that is not valid UTF-8.
    directory = Path(os.fsdecode(bytes(tmp_path) + b"/not-utf8-\xff"))
    directory.mkdir()
    path = directory / "f"
    path.write_bytes(b"v1")
    view = FileView(path, _parse, description="test")
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        watcher = Watcher([view])  # type: ignore[list-item]
        watcher.close()
    assert any("push reload stopped" in r.getMessage() for r in caplog.records)
    atomic_write(path, b"v2")
    assert view.get() == "v2"
