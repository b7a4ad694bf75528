"""``spiffile demo`` is the README's first command: it must pass end to end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    result = subprocess.run(
        [sys.executable, "-m", "spiffile", "demo"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr
    # Accepted, forged (signature), replayed (audience), rotated and accepted, retired key rejected.
    assert re.findall(r"(ACCEPTED|REJECTED)", out) == [
        "ACCEPTED",
        "REJECTED",
        "REJECTED",
        "ACCEPTED",
        "REJECTED",
    ]
    assert "caller is spiffe://demo.example/orders" in out
    assert "REJECTED  401 signature" in out and "REJECTED  401 audience" in out
    assert "same processes" in out
    removed = re.search(r"demo passed in [0-9.]+ s; removed (\S+)", out)
    assert removed is not None, out
    assert not Path(removed.group(1)).exists()


def test_demo_service_without_identity_fails_cleanly() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    result = subprocess.run(
        [sys.executable, "-m", "spiffile.cli.demo", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


_SELF_SIGNAL = r"""
import os, signal, sys
from spiffile.cli.demo import run_demo

def echo(line):
    print(line, flush=True)
    if line.startswith("\n1. "):  # Both services are up: interrupt the demo midway.
        {kill}(signal.{signal})

try:
    run_demo(echo)
except KeyboardInterrupt:
    sys.exit(130)
"""


def _self_signal(kill: str, name: str) -> str:
    return _SELF_SIGNAL.replace("{kill}", f"({kill})").replace("{signal}", name)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_demo_interrupted_by_a_signal_cleans_up(tmp_path: Path, name: str) -> None:
    """`kill PID` (or a closed terminal) midway: no temporary root with keys, no orphans."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    # stderr to a file: orphaned services would hold a pipe open and hang the test.
    with open(tmp_path / "stderr", "w+") as stderr:
        result = subprocess.run(
            [sys.executable, "-c", _self_signal("lambda s: os.kill(os.getpid(), s)", name)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
        )
        stderr.seek(0)
        errors = stderr.read()
    root = re.search(r"identity root (\S+)/identity", result.stdout)
    pids = [int(pid) for pid in re.findall(r" pid (\d+) ", result.stdout)]
    assert root is not None and len(pids) == 2, result.stdout + errors
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    leftover = [pid for pid in pids if _alive(pid)]
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    left_root = Path(root.group(1)).exists()
    shutil.rmtree(root.group(1), ignore_errors=True)
    assert not leftover, "demo services left running"
    assert not left_root, "temporary root (with private keys) left behind"
    assert result.returncode == 128 + getattr(signal, name), result.stdout + errors
    assert "Traceback" not in errors


def test_demo_under_nohup_still_ignores_sighup() -> None:
    """The cleanup handler is only installed where SIGHUP would have killed the demo."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    code = "import signal\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\n" + _self_signal(
        "lambda s: os.kill(os.getpid(), s)", "SIGHUP"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "demo passed" in result.stdout, result.stdout + result.stderr


def test_ctrl_c_midway_prints_no_traceback_from_the_services() -> None:
    """Ctrl-C signals the terminal's whole process group: the services must stay quiet."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    result = subprocess.run(
        [sys.executable, "-c", _self_signal("lambda s: os.killpg(0, s)", "SIGINT")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # The group of the interrupted "terminal": this run only.
    )
    assert result.returncode == 130, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    root = re.search(r"identity root (\S+)/identity", result.stdout)
    assert root is not None and not Path(root.group(1)).exists()


def test_demo_service_stops_quietly_on_ctrl_c(tmp_path: Path) -> None:
    from spiffile.provision import add_service, init_root, service_env

    root = init_root(tmp_path / "identity", "demo.example")
    add_service(root, "orders")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    service = subprocess.Popen(
        [sys.executable, "-m", "spiffile.cli.demo", "serve"],
        env={**environment, **service_env(root, "orders")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.stdout is not None and service.stdout.readline().startswith("READY ")
        service.send_signal(signal.SIGINT)
        _, errors = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
    assert service.returncode == 130 and errors == "", errors
