"""``spiffile exec`` keeps services alive: real servers (uvicorn, gunicorn) through real rotations.

Regression tests for the supervisor, one per finding, named for it:

- the default SIGHUP killed every server without a handler (uvicorn,
  ``python -m http.server``) at the first rotation, and nothing restarted it;
- there was no "environment only" mode and no restart;
- every rewrite of ``bundle.json`` woke the child, even one that only
  renumbered it;
- a supervisor killed with SIGKILL left its child running, unwatched;
- ``--help`` named two of the six signals it forwards.

Every wait is on a condition with a generous deadline, never on a sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from spiffile.cli.exec import FORWARDED_SIGNALS, catches_signal

TD = "example.org"

# One module, two servers: the ASGI app for uvicorn, the WSGI app for gunicorn.  Each
# reports its pid, the key it signs with now (read through the library, which reloads by
# itself) and the key it had when it was imported (what a restart or a reload renews).
APP = r"""
import json, os
from spiffile import Identity

identity = Identity.from_env()
BOOT_KID = identity.kid


def _body():
    return json.dumps({"pid": os.getpid(), "kid": identity.kid, "boot_kid": BOOT_KID}).encode()


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": _body()})


def wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [_body()]
"""

# Records every forwarded signal; exits 7 on SIGTERM (or ignores it with "ignore-term").
RECORDER = r"""
import os, signal, sys, time
log = sys.argv[1]
def record(signum, frame):
    with open(log, "a") as f:
        f.write(signal.Signals(signum).name + "\n")
    if signum == signal.SIGTERM and "ignore-term" not in sys.argv:
        sys.exit(7)
for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
    signal.signal(getattr(signal, name), record)
with open(log, "a") as f:
    f.write(f"started {os.getpid()}\n")
while True:
    time.sleep(0.02)
"""


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}


def spiffile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spiffile", *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(condition: Callable[[], Any], what: str, deadline: float = 60.0) -> Any:
    """Poll until ``condition`` returns something truthy (a deadline against hangs only)."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pid_alive(pid: int) -> bool:
    """True while *pid* runs (a zombie nobody reaped yet counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "identity"
    assert spiffile("init", "--root", str(path), "--trust-domain", TD).returncode == 0
    assert spiffile("add", "--root", str(path), "orders").returncode == 0
    return path


def rotate(root: Path, name: str = "orders") -> None:
    result = spiffile("rotate", "--root", str(root), name)
    assert result.returncode == 0, result.stderr


class Exec:
    """``spiffile exec ARGS -- CMD`` with its output in files (a full pipe would block it)."""

    def __init__(self, tmp_path: Path, args: list[str], command: list[str]) -> None:
        self.stderr_path = tmp_path / f"exec-{time.monotonic_ns()}.err"
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spiffile", "exec", *args, "--", *command],
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=tmp_path,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def said(self, text: str, count: int = 1) -> bool:
        return self.stderr.count(text) >= count

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # Forwarded: the child stops too.
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()  # The child follows (parent-death signal).
                self.process.wait()


@pytest.fixture
def supervisors() -> Iterator[list[Exec]]:
    started: list[Exec] = []
    yield started
    for supervisor in started:
        supervisor.stop()


class Server:
    """A real HTTP server under exec, asked over 127.0.0.1 what it runs with."""

    def __init__(self, tmp_path: Path, root: Path, kind: str, args: list[str]) -> None:
        (tmp_path / "app.py").write_text(APP)
        self.port = free_port()
        if kind == "uvicorn":
            command = [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp_path), "app:asgi"]
            command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        else:
            command = [sys.executable, "-m", "gunicorn", "--chdir", str(tmp_path), "-w", "1"]
            command += ["-b", f"127.0.0.1:{self.port}", "--log-level", "warning", "app:wsgi"]
        self.exec = Exec(tmp_path, ["--root", str(root), "orders", *args], command)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def ask(self) -> dict[str, Any] | None:
        """What the server says, or None while it does not answer."""
        try:
            with self.opener.open(f"http://127.0.0.1:{self.port}/", timeout=5) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except OSError:
            return None

    def until(self, condition: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            assert self.exec.process.poll() is None, self.exec.stderr
            answer = self.ask()
            return answer if answer is not None and condition(answer) else None

        result: dict[str, Any] = wait_for(check, what)
        return result


def member(name: str, value: object) -> Callable[[dict[str, Any]], bool]:
    """A condition on a server's answer: ``answer[name] == value``."""
    return lambda answer: bool(answer[name] == value)


def has_lines(path: Path, count: int) -> bool:
    return len(lines(path)) == count


def kid_of(root: Path) -> str:
    from spiffile.keys import kid_for, load_private_key_pem

    key = load_private_key_pem((root / "services" / "orders" / "key.pem").read_bytes())
    return kid_for(key.public_key())


# --- the default does not kill a server without a handler ----------------------------------------


def test_regression_default_sighup_no_longer_kills_uvicorn(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    """uvicorn has no SIGHUP handler: under the default it keeps serving through rotations.

    It is not signalled at all; the library inside it picks the new key up by
    itself, in the same process.
    """
    server = Server(tmp_path, root, "uvicorn", ["--settle", "0.2"])
    supervisors.append(server.exec)
    first = server.until(lambda a: True, "uvicorn to serve")
    for rotation in (1, 2):
        rotate(root)
        new = kid_of(root)
        answer = server.until(member("kid", new), f"rotation {rotation} served")
        assert answer["pid"] == first["pid"] and answer["boot_kid"] == first["boot_kid"]
        wait_for(partial(server.exec.said, "has no SIGHUP handler", rotation), "the log line")
    assert "sending SIGHUP" not in server.exec.stderr


def test_default_reloads_gunicorn_through_its_sighup_handler(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    """gunicorn's master handles SIGHUP (a graceful reload): it gets it, and new workers boot."""
    pytest.importorskip("gunicorn", reason="gunicorn is in the test extra")
    server = Server(tmp_path, root, "gunicorn", ["--settle", "0.2"])
    supervisors.append(server.exec)
    first = server.until(lambda a: True, "gunicorn to serve")
    rotate(root)
    new = kid_of(root)
    answer = server.until(lambda a: a["boot_kid"] == new, "a worker booted with the new key")
    assert answer["pid"] != first["pid"]
    assert server.exec.said("sending SIGHUP")
    assert server.exec.process.poll() is None


# --- --restart -----------------------------------------------------------------------------------


def test_restart_restarts_uvicorn_on_each_rotation(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    server = Server(tmp_path, root, "uvicorn", ["--restart", "--settle", "0.2"])
    supervisors.append(server.exec)
    pids = [server.until(lambda a: True, "uvicorn to serve")["pid"]]
    for rotation in (1, 2):
        rotate(root)
        new = kid_of(root)
        answer = server.until(member("boot_kid", new), f"restart {rotation}")
        assert answer["pid"] not in pids
        pids.append(answer["pid"])
    assert server.exec.said("restarting pid", 2)


def test_restart_brings_a_killed_gunicorn_back(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    pytest.importorskip("gunicorn", reason="gunicorn is in the test extra")
    server = Server(tmp_path, root, "gunicorn", ["--restart", "--backoff", "0.1"])
    supervisors.append(server.exec)
    server.until(lambda a: True, "gunicorn to serve")
    master = wait_for(lambda: _child_pid(server.exec.process.pid), "gunicorn's master")
    os.kill(master, signal.SIGKILL)
    server.until(lambda a: _child_pid(server.exec.process.pid) != master, "a new gunicorn")
    assert server.exec.said("was killed by SIGKILL; restarting in 0.1 s (1 of 5)")


def _child_pid(pid: int) -> int | None:
    """The one child of *pid* (Linux ``/proc``), or None."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(text[0]) if len(text) == 1 else None


def test_restart_gives_up_after_the_limit(tmp_path: Path, root: Path) -> None:
    runs = tmp_path / "runs"
    code = f"open({str(runs)!r}, 'a').write('run\\n'); raise SystemExit(3)"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--restart", "--max-restarts", "2", "--backoff", "0.01"],
        [sys.executable, "-c", code],
    )
    assert supervisor.wait() == 3
    assert lines(runs) == ["run"] * 3
    assert "exited with status 3; restarting in 0.01 s (1 of 2)" in supervisor.stderr
    assert "exited with status 3; restarting in 0.02 s (2 of 2)" in supervisor.stderr
    assert "giving up after 2 restarts" in supervisor.stderr


def test_restart_leaves_a_clean_exit_alone(tmp_path: Path, root: Path) -> None:
    runs = tmp_path / "runs"
    code = f"open({str(runs)!r}, 'a').write('run\\n')"
    supervisor = Exec(
        tmp_path, ["--root", str(root), "orders", "--restart"], [sys.executable, "-c", code]
    )
    assert supervisor.wait() == 0
    assert lines(runs) == ["run"]


def test_a_stop_signal_during_the_backoff_ends_exec(tmp_path: Path, root: Path) -> None:
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--restart", "--backoff", "600"],
        [sys.executable, "-c", "raise SystemExit(1)"],
    )
    wait_for(lambda: supervisor.said("restarting in 30 s"), "the back-off")  # Capped at 30.
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.wait() == 128 + signal.SIGTERM


def test_a_stop_signal_is_not_followed_by_a_restart(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "signals.log"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--restart"],
        [sys.executable, str(tmp_path / "recorder.py"), str(log)],
    )
    supervisors.append(supervisor)
    wait_for(lambda: lines(log), "the child")
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.wait() == 7  # The child's own status after handling SIGTERM.
    assert [line for line in lines(log) if line.startswith("started")] == lines(log)[:1]


def test_restart_with_an_explicit_signal_signals_on_change_and_restarts_only_on_crash(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "signals.log"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--restart", "--signal", "USR1", "--backoff", "0.1"],
        [sys.executable, str(tmp_path / "recorder.py"), str(log)],
    )
    supervisors.append(supervisor)
    first = int(wait_for(lambda: lines(log), "the child")[0].split()[1])
    rotate(root)
    wait_for(lambda: "SIGUSR1" in lines(log), "SIGUSR1 for the rotation")
    assert pid_alive(first) and len([x for x in lines(log) if x.startswith("started")]) == 1
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len([x for x in lines(log) if x.startswith("started")]) == 2, "a restart")


def test_restart_kills_a_child_that_ignores_sigterm(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "signals.log"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--restart", "--stop-timeout", "0.5", "--settle", "0.1"],
        [sys.executable, str(tmp_path / "recorder.py"), str(log), "ignore-term"],
    )
    supervisors.append(supervisor)
    first = int(wait_for(lambda: lines(log), "the child")[0].split()[1])
    rotate(root)
    wait_for(lambda: len([x for x in lines(log) if x.startswith("started")]) == 2, "a restart")
    assert "SIGTERM" in lines(log) and not pid_alive(first)
    assert supervisor.said("did not stop; sending SIGKILL")


# --- what counts as a change ---------------------------------------------------------------------


def test_regression_a_bundle_rewrite_without_new_content_does_not_signal(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    """Renumbered, reformatted, reordered: the same bundle.  A new key anywhere is news."""
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "signals.log"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--signal", "USR1", "--settle", "0.1"],
        [sys.executable, str(tmp_path / "recorder.py"), str(log)],
    )
    supervisors.append(supervisor)
    wait_for(lambda: lines(log), "the child")
    bundle = root / "bundle.json"
    document = json.loads(bundle.read_text())
    document["spiffe_sequence"] = document.get("spiffe_sequence", 0) + 10
    rewritten = json.dumps(dict(reversed(list(document.items()))), indent=4).encode()
    assert rewritten != bundle.read_bytes()
    (root / "bundle.json.tmp").write_bytes(rewritten)
    os.replace(root / "bundle.json.tmp", bundle)
    wait_for(lambda: supervisor.said("content unchanged"), "the rewrite to be seen")
    assert "SIGUSR1" not in lines(log)

    # Another service's new key changes what this one must trust: that is news.
    assert spiffile("add", "--root", str(root), "billing").returncode == 0
    wait_for(lambda: lines(log).count("SIGUSR1") == 1, "SIGUSR1 for billing's key")
    # Its own key file rewritten with the same bytes is not.
    key = root / "services" / "orders" / "key.pem"
    os.utime(key)
    wait_for(lambda: supervisor.said("content unchanged", 2), "the touch to be seen")
    rotate(root)
    wait_for(lambda: lines(log).count("SIGUSR1") == 2, "SIGUSR1 for its own rotation")


def test_signal_none_tells_the_child_nothing(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "signals.log"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--signal", "none", "--settle", "0.1"],
        [sys.executable, str(tmp_path / "recorder.py"), str(log)],
    )
    supervisors.append(supervisor)
    wait_for(lambda: lines(log), "the child")
    rotate(root)
    wait_for(lambda: supervisor.said("CMD reads it from its files"), "the change to be seen")
    assert len(lines(log)) == 1  # Only "started": no signal.


# --- the child dies with the supervisor ----------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")
def test_regression_the_child_dies_with_a_sigkilled_supervisor(tmp_path: Path, root: Path) -> None:
    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "signals.log"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders", "--restart"],
        [sys.executable, str(tmp_path / "recorder.py"), str(log), "ignore-term"],
    )
    child = int(wait_for(lambda: lines(log), "the child")[0].split()[1])
    supervisor.process.kill()
    supervisor.wait()
    wait_for(lambda: not pid_alive(child), "the child to die with its supervisor")


# --- signals -------------------------------------------------------------------------------------


def test_regression_help_lists_the_signals_really_forwarded(
    tmp_path: Path, root: Path, supervisors: list[Exec]
) -> None:
    """The help named SIGINT and SIGTERM; six are forwarded: the help names them, each arrives."""
    text = " ".join(spiffile("exec", "--help").stdout.split())
    sentence = re.search(r"((?:SIG[A-Z0-9]+,? (?:and )?)+)sent to exec are forwarded", text)
    assert sentence is not None, text
    named = set(re.findall(r"SIG[A-Z0-9]+", sentence.group(1)))
    assert named == {s.name for s in FORWARDED_SIGNALS}

    (tmp_path / "recorder.py").write_text(RECORDER)
    log = tmp_path / "signals.log"
    supervisor = Exec(
        tmp_path,
        ["--root", str(root), "orders"],
        [sys.executable, str(tmp_path / "recorder.py"), str(log)],
    )
    supervisors.append(supervisor)
    wait_for(lambda: lines(log), "the child")
    ordered = [s for s in FORWARDED_SIGNALS if s != signal.SIGTERM] + [signal.SIGTERM]
    for count, signum in enumerate(ordered, start=2):
        supervisor.process.send_signal(signum)
        wait_for(partial(has_lines, log, count), f"{signum.name} to arrive")
    assert lines(log)[1:] == [s.name for s in ordered]
    assert supervisor.wait() == 7


@pytest.mark.parametrize("value", ["inf", "nan", "1e30", "-1"])
@pytest.mark.parametrize("option", ["--settle", "--backoff", "--stop-timeout"])
def test_a_duration_that_is_not_finite_is_a_usage_error(
    root: Path, option: str, value: str
) -> None:
    result = spiffile("exec", "--root", str(root), "orders", option, value, "--", "true")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and option in result.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/PID/status: Linux")
def test_catches_signal_reads_the_handler_mask() -> None:
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        assert catches_signal(os.getpid(), signal.SIGUSR2) is False
        signal.signal(signal.SIGUSR2, lambda *_: None)
        assert catches_signal(os.getpid(), signal.SIGUSR2) is True
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert catches_signal(2**22 + 12345, signal.SIGUSR2) is None  # No such process.
