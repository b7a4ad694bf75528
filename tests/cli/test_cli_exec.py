"""``spiffile exec``: real supervisor, real child, real rotation through the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TD = "example.org"

CHILD = r"""
import json, os, signal, sys, time
log, ready = sys.argv[1], sys.argv[2]
def record(name, status=None):
    def handler(signum, frame):
        with open(log, "a") as f:
            f.write(name + "\n")
        if status is not None:
            sys.exit(status)
    return handler
signal.signal(signal.SIGHUP, record("HUP"))
signal.signal(signal.SIGUSR1, record("USR1"))
signal.signal(signal.SIGTERM, record("TERM", 7))
signal.signal(signal.SIGINT, record("INT", 3))
env = {k: v for k, v in os.environ.items() if k.startswith("SPIFFILE_")}
with open(ready + ".tmp", "w") as f:
    json.dump(env, f)
os.rename(ready + ".tmp", ready)
while True:
    time.sleep(0.02)
"""

# Records every SIGINT and lingers after the first, so that a duplicate shows up.
COUNTING_CHILD = r"""
import signal, sys, time
log, ready = sys.argv[1], sys.argv[2]
seen = []
def record(signum, frame):
    seen.append(signum)
    with open(log, "a") as f:
        f.write("INT\n")
signal.signal(signal.SIGINT, record)
open(ready, "w").close()
while not seen:
    time.sleep(0.01)
time.sleep(0.5)
sys.exit(3)
"""


def spiffile(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spiffile", *args],
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    """Poll until ``condition`` holds (a deadline against hangs, not a timing assertion)."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "identity"
    assert spiffile("init", "--root", str(path), "--trust-domain", TD).returncode == 0
    assert spiffile("add", "--root", str(path), "orders").returncode == 0
    return path


class Child:
    """`spiffile exec ... -- python child.py` with its log and readiness files."""

    def __init__(self, tmp_path: Path, exec_args: list[str], env: dict[str, str]) -> None:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        self.log = tmp_path / "signals.log"
        self.ready = tmp_path / "ready.json"
        files = [str(script), str(self.log), str(self.ready)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spiffile", "exec", *exec_args, "--", sys.executable, *files],
            env={**clean_env(), **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(lambda: self.ready.exists() or self.process.poll() is not None, "child start")
        assert self.process.poll() is None, self.process.communicate()

    def env(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.ready.read_text())
        return data

    def finish(self) -> tuple[int, str]:
        _, stderr = self.process.communicate(timeout=30)
        return self.process.returncode, stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            # SIGTERM first: exec forwards it, so the child does not outlive a failed
            # test holding the pipes open (communicate would wait for it forever).
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.communicate()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()


def test_rotation_sends_one_settled_signal(
    tmp_path: Path, root: Path, children: list[Child]
) -> None:
    child = Child(tmp_path, ["--root", str(root), "orders", "--settle", "0.3"], {})
    children.append(child)
    service = root / "services" / "orders"
    assert child.env() == {
        "SPIFFILE_ID_FILE": str(service / "id"),
        "SPIFFILE_KEY_FILE": str(service / "key.pem"),
        "SPIFFILE_BUNDLE_FILE": str(root / "bundle.json"),
    }

    # One rotation rewrites the bundle and replaces the key by rename: one signal.
    assert spiffile("rotate", "--root", str(root), "orders", "--drop-old").returncode == 0
    wait_for(lambda: lines(child.log) == ["HUP"], "SIGHUP after rotation")
    # Identical bytes written again (a touch, a no-op producer) do not wake the child;
    # a burst of changes split by the settle time would show up as a second line here.
    bundle = root / "bundle.json"
    bundle.write_bytes(bundle.read_bytes())
    time.sleep(1.2)
    assert lines(child.log) == ["HUP"]

    child.process.send_signal(signal.SIGTERM)
    status, stderr = child.finish()
    assert status == 7  # The child's own status, after handling the forwarded SIGTERM.
    assert lines(child.log) == ["HUP", "TERM"]
    assert "sending SIGHUP" in stderr and "Traceback" not in stderr


def _project(volume: Path, source: Path, revision: str) -> None:
    """Publish *source*'s identity files the way a Kubernetes Secret volume does.

    ``id -> ..data/id`` stays put; the update swaps the ``..data`` symlink to a
    new timestamped directory by rename (kubelet's atomic writer).
    """
    target = volume / f"..{revision}"
    target.mkdir(parents=True)
    for name in ("id", "key.pem", "bundle.json"):
        (target / name).write_bytes((source / name).read_bytes())
    old = os.readlink(volume / "..data") if (volume / "..data").is_symlink() else None
    os.symlink(target.name, volume / "..data_tmp")
    os.rename(volume / "..data_tmp", volume / "..data")
    for name in ("id", "key.pem", "bundle.json"):
        if not (volume / name).is_symlink():
            os.symlink(f"..data/{name}", volume / name)
    if old is not None:
        for stale in (volume / old).iterdir():
            stale.unlink()
        (volume / old).rmdir()


def test_a_kubernetes_style_symlink_swap_is_noticed(
    tmp_path: Path, root: Path, children: list[Child]
) -> None:
    """The files' own names never change there: only ``..data`` is replaced (PROFILE §7.1)."""
    service, volume = root / "services" / "orders", tmp_path / "volume"
    (service / "bundle.json").symlink_to(root / "bundle.json")  # Gather the three files.
    _project(volume, service, "1")
    child = Child(tmp_path, ["--settle", "0.2"], {"SPIFFILE_DIR": str(volume)})
    children.append(child)
    assert spiffile("rotate", "--root", str(root), "orders").returncode == 0
    _project(volume, service, "2")
    wait_for(lambda: lines(child.log) == ["HUP"], "SIGHUP after the volume's update")


def test_passthrough_environment_and_custom_signal(
    tmp_path: Path, root: Path, children: list[Child]
) -> None:
    orders_env = json.loads(
        spiffile("env", "--root", str(root), "orders", "--format", "json").stdout
    )
    child = Child(tmp_path, ["--signal", "USR1", "--settle", "0"], orders_env)
    children.append(child)
    assert child.env() == orders_env
    assert spiffile("rotate", "--root", str(root), "orders").returncode == 0
    wait_for(lambda: "USR1" in lines(child.log), "SIGUSR1 after rotation")
    assert "HUP" not in lines(child.log)
    child.process.send_signal(signal.SIGINT)
    status, _ = child.finish()
    assert status == 3 and lines(child.log)[-1] == "INT"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("import sys; sys.exit(42)", 42),
        ("pass", 0),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + signal.SIGKILL),
    ],
)
def test_exit_status_is_the_childs(root: Path, code: str, status: int) -> None:
    result = spiffile("exec", "--root", str(root), "orders", "--", sys.executable, "-c", code)
    assert result.returncode == status, result.stderr


def test_exec_errors_are_one_line(tmp_path: Path, root: Path) -> None:
    def error(result: subprocess.CompletedProcess[str], status: int) -> str:
        assert result.returncode == status, result.stderr
        assert "Traceback" not in result.stderr
        return result.stderr.strip().splitlines()[-1]

    missing = spiffile("exec", "--root", str(root), "orders", "--", str(tmp_path / "nope"))
    assert error(missing, 127).startswith("Error: command not found")
    assert "SPIFFILE_" in error(spiffile("exec", "--", "true"), 1)
    assert "missing command" in error(spiffile("exec", "--root", str(root), "orders"), 2)
    assert "NAME" in error(spiffile("exec", "--root", str(root), "--", "true"), 2)
    assert "signal" in error(spiffile("exec", "--signal", "NOPE", "--", "true"), 1)
    assert error(spiffile("exec", "--root", str(root), "ghost", "--", "true"), 1)


def test_a_root_path_watchfiles_cannot_take_is_refused_before_the_child_starts(
    tmp_path: Path,
) -> None:
    """A non-UTF-8 path works for the identity but not for watchfiles: one line, no child."""
    root = tmp_path / os.fsdecode(b"identity-\xff")

    def run(*args: str) -> tuple[int, str]:
        command = [sys.executable, "-m", "spiffile", *args]
        result = subprocess.run(command, env=clean_env(), capture_output=True, timeout=60)
        return result.returncode, result.stderr.decode(errors="replace")

    assert run("init", "--root", str(root), "--trust-domain", TD)[0] == 0
    assert run("add", "--root", str(root), "orders")[0] == 0
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w').close()"
    status, stderr = run("exec", "--root", str(root), "orders", "--", sys.executable, "-c", code)
    assert status == 1, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert stderr.startswith("Error: cannot watch"), stderr
    assert not marker.exists()


def test_keyboard_interrupt_reaches_the_child_once(tmp_path: Path, root: Path) -> None:
    """Ctrl-C at a terminal signals the whole foreground group: exec must not add a second one."""
    script = tmp_path / "child.py"
    script.write_text(COUNTING_CHILD)
    log, ready = tmp_path / "signals.log", tmp_path / "ready.json"
    argv = [sys.executable, "-m", "spiffile", "exec", "--root", str(root), "orders", "--"]
    argv += [sys.executable, str(script), str(log), str(ready)]
    environment = clean_env()
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child replaces itself at once
        os.execve(sys.executable, argv, environment)
    try:

        def drain() -> None:
            while select.select([master], [], [], 0)[0]:
                try:
                    if not os.read(master, 4096):
                        return
                except OSError:
                    return

        def ready_or_gone() -> bool:
            drain()
            return ready.exists() or os.waitpid(pid, os.WNOHANG) != (0, 0)

        wait_for(ready_or_gone, "child start under a terminal")
        os.write(master, b"\x03")  # The terminal's interrupt character (ISIG).
        result: list[int] = []

        def exited() -> bool:
            drain()
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                result.append(os.waitstatus_to_exitcode(status))
            return bool(done)

        wait_for(exited, "exec to exit after Ctrl-C")
        assert result == [3]
        assert lines(log) == ["INT"]
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(master)
