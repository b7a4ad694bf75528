"""``spiffile exec`` renews the X.509-SVID of the service it runs: real exec, child and files.

SVIDs here live 64 s after a 60 s back-date (X.509 producer: ``_BACKDATE``),
so each is past half its validity window 2 s after it was issued, and exec
renews it every 2 s or so while the test watches.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from spiffile import provision
from spiffile.cli._renewal import LOCK_WAIT, RETRY_FIRST, X509Renewer
from spiffile.provision.root import as_root
from spiffile.provision.x509 import (
    enable_x509,
    issue_svid,
    renew_svids,
    renewal_time,
)
from spiffile.svid.x509 import parse_svid

TD = "example.org"
SHORT_TTL = 64

CHILD = r"""
import os, signal, sys, time
from cryptography import x509
log = sys.argv[1]
def record(*_):
    data = open(os.environ["SPIFFILE_X509_SVID_FILE"], "rb").read()
    leaf = x509.load_pem_x509_certificates(data)[0]
    with open(log, "a") as f:
        f.write(format(leaf.serial_number, "x") + "\n")
signal.signal(signal.SIGHUP, record)
record()
while True:
    time.sleep(0.05)
"""


def wait_for(condition: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    """Poll until ``condition`` holds (a deadline against hangs, not a timing assertion)."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def serial_on_disk(root: Path, name: str = "orders") -> str:
    data = (root / "services" / name / "svid.pem").read_bytes()
    return format(x509.load_pem_x509_certificates(data)[0].serial_number, "x")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "identity"
    provision.init_root(path, trust_domain=TD)
    enable_x509(path, svid_ttl=SHORT_TTL)
    provision.add_service(path, "orders")
    return path


class Exec:
    """`spiffile exec [ARGS] -- python child.py LOG`, its stderr in a file."""

    def __init__(self, tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
        script = tmp_path / "child.py"
        script.write_text(CHILD)
        self.log = tmp_path / "serials.log"
        self.stderr_path = tmp_path / "exec.stderr"
        self._stderr = open(self.stderr_path, "w")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
        child = [sys.executable, str(script), str(self.log)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spiffile", "exec", *args, "--", *child],
            env={**clean, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        wait_for(lambda: bool(self.serials()) or self.process.poll() is not None, "child start")
        assert self.process.poll() is None, self.stderr()

    def serials(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self._stderr.close()


@pytest.fixture
def run_exec(tmp_path: Path) -> Iterator[Callable[[list[str], dict[str, str]], Exec]]:
    started: list[Exec] = []

    def start(args: list[str], env: dict[str, str]) -> Exec:
        started.append(Exec(tmp_path, args, env))
        return started[-1]

    yield start
    for each in started:
        each.stop()


@pytest.mark.timeout(120)
def test_exec_renews_the_svid_and_the_child_sees_each_new_one(
    root: Path, run_exec: Callable[[list[str], dict[str, str]], Exec]
) -> None:
    first = serial_on_disk(root)
    running = run_exec(["--root", str(root), "orders"], {})
    wait_for(lambda: len(set(running.serials()) - {first}) >= 2, "two renewals seen by the child")
    assert running.process.poll() is None
    assert "renewed the X.509-SVID of 'orders'" in running.stderr()
    assert "sending SIGHUP" in running.stderr()
    running.stop()
    service = root / "services" / "orders"
    assert stat.S_IMODE((service / "svid_key.pem").stat().st_mode) == 0o600
    # What exec left on disk is a matching pair from the current CA, by the producer's rules.
    svid, _ = parse_svid(
        (service / "svid.pem").read_bytes(), (service / "svid_key.pem").read_bytes()
    )
    assert str(svid.id) == f"spiffe://{TD}/orders"
    assert renewal_time(root, "orders") > svid.leaf.not_valid_before_utc.timestamp()


@pytest.mark.timeout(120)
def test_a_failed_renewal_is_reported_retried_and_the_child_lives_on(
    root: Path, run_exec: Callable[[list[str], dict[str, str]], Exec]
) -> None:
    ca_file = root / "x509" / "ca.pem"
    good = ca_file.read_bytes()
    # uid 0 ignores file modes, so the CA is made unusable by its content instead.
    ca_file.write_bytes(b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    first = serial_on_disk(root)
    running = run_exec(["--root", str(root), "orders"], {})
    failed = "renewing the X.509-SVID of 'orders' failed"
    wait_for(lambda: failed in running.stderr(), "the failure on stderr")
    assert "retrying in" in running.stderr()
    assert "does not hold a CA certificate" in running.stderr()
    assert running.process.poll() is None and running.serials() == [first]
    assert serial_on_disk(root) == first  # A failed renewal leaves the files as they were.
    ca_file.write_bytes(good)
    wait_for(lambda: len(set(running.serials()) - {first}) >= 1, "the retried renewal")
    assert running.process.poll() is None


@pytest.mark.timeout(120)
def test_exec_renews_before_start_and_only_as_the_producer(
    root: Path, run_exec: Callable[[list[str], dict[str, str]], Exec], tmp_path: Path
) -> None:
    # An SVID issued 10 s ago is past half its life (2 s) now.
    issue_svid(root, "orders", now=time.time() - 10)
    stale = serial_on_disk(root)
    # From the consumer's files only (no --root, no NAME): exec never renews.
    consumer = run_exec([], provision.service_env(root, "orders"))
    assert consumer.serials() == [stale] and serial_on_disk(root) == stale
    consumer.stop()
    assert "renew" not in consumer.stderr()
    # As the producer (--root and NAME), the child starts with a renewed SVID.
    (tmp_path / "serials.log").unlink()
    producer = run_exec(["--root", str(root), "orders"], {})
    assert producer.serials()[0] != stale


def test_a_root_without_a_ca_gets_no_renewer(tmp_path: Path) -> None:
    path = tmp_path / "plain"
    provision.init_root(path, trust_domain=TD)
    provision.add_service(path, "orders")
    said: list[str] = []
    assert X509Renewer.for_service(as_root(path), "orders", said.append) is None
    assert said == []


class Clocks:
    def __init__(self) -> None:
        self.wall = time.time()
        self.mono = 1000.0


def test_the_renewer_follows_the_certificate_through_clock_jumps(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    provision.init_root(path, trust_domain=TD)
    enable_x509(path)  # One hour: half-life about 30 minutes away.
    provision.add_service(path, "orders")
    clocks, said = Clocks(), list[str]()
    renewer = X509Renewer(
        as_root(path),
        "orders",
        said.append,
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
    )
    first = serial_on_disk(path)
    assert renewer.tick() is False and serial_on_disk(path) == first
    assert renewer.due_at == renewal_time(path, "orders") > clocks.wall

    clocks.wall += 3000  # The wall clock jumps past the half-life: renew at once.
    clocks.mono += 0.1
    assert renewer.tick() is True
    second = serial_on_disk(path)
    assert second != first

    clocks.wall -= 3000  # And back: the new certificate is not due; nothing is issued.
    clocks.mono += 5
    assert renewer.tick() is False and serial_on_disk(path) == second
    assert renewer.due_at > clocks.wall + 3000

    # Another renewer (`spiffile x509 renew --force`) re-issues: the due time follows it.
    clocks.wall += 3000
    renew_svids(path, ["orders"], force=True, now=clocks.wall)
    clocks.mono += 5
    assert renewer.tick() is False
    assert renewer.due_at == renewal_time(path, "orders") > clocks.wall


def test_failed_renewals_back_off_on_the_monotonic_clock(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    provision.init_root(path, trust_domain=TD)
    enable_x509(path)
    provision.add_service(path, "orders")
    (path / "x509" / "ca.pem").write_bytes(b"not a CA")
    clocks, said = Clocks(), list[str]()
    renewer = X509Renewer(
        as_root(path),
        "orders",
        said.append,
        clock=lambda: clocks.wall + 3000,  # Due.
        monotonic=lambda: clocks.mono,
    )
    assert renewer.tick() is False and len(said) == 1
    assert f"retrying in {RETRY_FIRST:g} s" in said[0]
    assert renewer.tick() is False and len(said) == 1  # Backing off: no second attempt yet.
    clocks.mono += RETRY_FIRST
    assert renewer.tick() is False and len(said) == 2
    assert f"retrying in {2 * RETRY_FIRST:g} s" in said[1]


def test_renewal_waits_out_another_producers_lock_and_stalls_exec(tmp_path: Path) -> None:
    """A renewal waited the producers' 30 s for a root lock another producer held, and
    exec's loop (the child's exit, restarts) stood still meanwhile; it now gives up after
    LOCK_WAIT and is retried like any failed renewal."""
    path = tmp_path / "identity"
    provision.init_root(path, trust_domain=TD)
    enable_x509(path)
    provision.add_service(path, "orders")
    said: list[str] = []
    renewer = X509Renewer(as_root(path), "orders", said.append, clock=lambda: time.time() + 3000)
    holder = as_root(path)  # Another producer: its own descriptor, so flock excludes us.
    with holder.lock():
        assert renewer.tick() is False
    assert len(said) == 1
    assert f"timed out after {LOCK_WAIT:g}s" in said[0]
    assert f"retrying in {RETRY_FIRST:g} s" in said[0]
