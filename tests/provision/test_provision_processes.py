"""Process-level guarantees of spiffile.provision, with real processes and real files.

- SIGKILL at every named step of add, rotate, stage, commit, revoke and remove
  (the private ``SPIFFILE_TEST_CRASH_AT`` hook), and at random instants of a
  producer churning through every operation: the root stays valid, every key
  file on disk is bound to its identity, and re-running the command completes it.
- 4 processes adding 100 services each at once, under umask 0, while another
  process keeps reading the bundle and watching key file modes: all 400 end
  in a valid bundle, no read ever sees a partial file, no key file is ever
  group or world readable.
- Key files are created 0600 from their first byte whatever the umask.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from spiffile.bundle import Bundle
from spiffile.keys import kid_for, load_private_key_pem
from spiffile.provision import add_service, init_root, list_services

TD = "example.org"
CRASH_ENV = "SPIFFILE_TEST_CRASH_AT"

# One producer process: `worker.py ROOT COMMAND ARGS...`; prints a JSON result.
WORKER = r"""
import json, os, random, sys
from spiffile import provision as p
from spiffile.errors import NoStagedRotationError, ServiceNotFoundError

root, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if command == "add":
    result = [p.add_service(root, name).kid for name in args]
elif command == "add-many":
    os.umask(int(args[0], 8))
    result = [p.add_service(root, f"{args[1]}/s{i:03d}").kid for i in range(int(args[2]))]
elif command == "rotate":
    result = p.rotate_service(root, args[0], keep_old=args[1] == "keep")
elif command == "stage":
    result = p.stage_rotation(root, args[0])
elif command == "commit":
    result = p.commit_rotation(root, args[0])
elif command == "revoke":
    result = p.revoke_key(root, args[0], args[1])
elif command == "remove":
    result = p.remove_service(root, args[0])
elif command == "churn":
    rng = random.Random(int(args[0]))
    names = ["a", "b", "team/c", "team/e/d"]
    print("ready", flush=True)
    while True:
        name = rng.choice(names)
        try:
            action = rng.randrange(8)
            if action == 0:
                p.add_service(root, name)
            elif action == 1:
                p.rotate_service(root, name, keep_old=rng.random() < 0.5)
            elif action == 2:
                p.stage_rotation(root, name)
            elif action == 3:
                p.commit_rotation(root, name)
            elif action == 4:
                p.prune_service(root, name, force=True)
            elif action == 5:
                info = p.service_info(root, name)
                old = [k for k in info.bound_kids if k != info.kid]
                if old:
                    p.revoke_key(root, name, old[0])
            elif action == 6:
                p.remove_service(root, name)
            else:
                p.add_service(root, name)
        except (NoStagedRotationError, ServiceNotFoundError):
            pass  # The random walk asked for something absent: expected.
else:
    raise SystemExit(f"unknown command {command}")
print(json.dumps(result))
"""

# Watches a root while producers work: parses every version of bundle.json it
# can read and checks the mode of every key file (final or temporary) it sees.
OBSERVER = r"""
import json, os, stat, sys
from spiffile.bundle import Bundle

root, stop = sys.argv[1], sys.argv[2]
reads = bad = 0
exposed = []
print("ready", flush=True)
while True:
    done = os.path.exists(stop)
    try:
        with open(os.path.join(root, "bundle.json"), "rb") as handle:
            data = handle.read()
        Bundle.parse(data)
        reads += 1
    except Exception as exc:
        bad += 1
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "services")):
        for name in filenames:
            if "key" in name:
                try:
                    mode = os.lstat(os.path.join(dirpath, name)).st_mode
                except FileNotFoundError:
                    continue
                if stat.S_IMODE(mode) & 0o077:
                    exposed.append([os.path.join(dirpath, name), oct(mode)])
    if done:
        break
print(json.dumps({"reads": reads, "bad": bad, "exposed": exposed}))
"""


def run_worker(
    root: Path, *args: str, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-c", WORKER, str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def check_root(path: Path) -> Bundle:
    """The invariant: a valid bundle, and every key file on disk bound to its identity."""
    bundle = Bundle.parse((path / "bundle.json").read_bytes())
    assert bundle.trust_domain == TD
    assert bundle.warnings == []
    services = path / "services"
    for dirpath, _dirnames, filenames in os.walk(services):
        directory = Path(dirpath)
        name = directory.relative_to(services).as_posix()
        for filename in filenames:
            mode = stat.S_IMODE((directory / filename).lstat().st_mode)
            if "key" in filename:
                assert mode & 0o077 == 0, f"{directory / filename} is {oct(mode)}"
            if filename in ("key.pem", "key.next.pem"):
                key = load_private_key_pem((directory / filename).read_bytes())
                sid = f"spiffe://{TD}/{name}"
                assert sid in bundle, f"{directory / filename}: {sid} not in the bundle"
                bound = [k.kid for k in bundle.keys_for(sid)]
                assert kid_for(key.public_key()) in bound, f"{directory / filename} is not bound"
            if filename == "id":
                assert (directory / filename).read_text() == f"spiffe://{TD}/{name}\n"
    return bundle


def kids(path: Path, name: str) -> list[str]:
    bundle = Bundle.parse((path / "bundle.json").read_bytes())
    sid = f"spiffe://{TD}/{name}"
    return [k.kid for k in bundle.keys_for(sid)] if sid in bundle else []


def file_kid(path: Path) -> str | None:
    if not path.exists():
        return None
    return kid_for(load_private_key_pem(path.read_bytes()).public_key())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return init_root(tmp_path / "root", TD).path


# -- SIGKILL at every named step --------------------------------------------------------


def crash(root: Path, step: str, *args: str) -> None:
    result = run_worker(root, *args, crash_at=step)
    assert result.returncode == -signal.SIGKILL, f"step {step} never reached: {result.stderr}"
    check_root(root)


@pytest.mark.parametrize("step", ["add:id-written", "add:bundle-written", "add:key-written"])
def test_add_killed_at_every_step(root: Path, step: str) -> None:
    crash(root, step, "add", "orders", "team/orders")
    (kid, nested) = ok(run_worker(root, "add", "orders", "team/orders"))
    check_root(root)
    directory = root / "services" / "orders"
    assert file_kid(directory / "key.pem") == kid
    assert kid in kids(root, "orders")
    assert file_kid(root / "services/team/orders/key.pem") == nested
    if step == "add:bundle-written":
        # The key the killed run bound never reached the disk: harmless, pruned later.
        assert len(kids(root, "orders")) == 2
    else:
        assert kids(root, "orders") == [kid]


ROTATE_STEPS = ["stage:bundle-written", "stage:key-written", "commit:renamed", "rotate:committed"]


@pytest.mark.parametrize("keep", ["keep", "drop"])
@pytest.mark.parametrize("step", ROTATE_STEPS)
def test_rotate_killed_at_every_step(root: Path, step: str, keep: str) -> None:
    (old,) = ok(run_worker(root, "add", "orders"))
    crash(root, step, "rotate", "orders", keep)
    key_file = root / "services" / "orders" / "key.pem"
    crashed_kid = file_kid(key_file)
    new = ok(run_worker(root, "rotate", "orders", keep))
    check_root(root)
    assert file_kid(key_file) == new != old
    assert not (key_file.parent / "key.next.pem").exists()
    if step == "stage:key-written":
        # The staged key of the killed run is the one the re-run commits.
        assert crashed_kid == old
    if keep == "drop":
        assert kids(root, "orders") == [new]
    else:
        assert kids(root, "orders")[0] == old and kids(root, "orders")[-1] == new


def test_stage_and_commit_killed(root: Path) -> None:
    (old,) = ok(run_worker(root, "add", "orders"))
    crash(root, "stage:bundle-written", "stage", "orders")
    crash(root, "stage:key-written", "stage", "orders")
    staged_file = root / "services" / "orders" / "key.next.pem"
    staged = file_kid(staged_file)
    assert ok(run_worker(root, "stage", "orders")) == staged  # completes: same key
    crash(root, "commit:renamed", "commit", "orders")
    assert file_kid(root / "services" / "orders" / "key.pem") == staged
    # Already committed: a re-run says so, and the root is as the commit left it.
    again = run_worker(root, "commit", "orders")
    assert again.returncode != 0 and "NoStagedRotationError" in again.stderr
    check_root(root)
    assert old in kids(root, "orders") and staged in kids(root, "orders")


def test_revoke_of_a_staged_key_killed(root: Path) -> None:
    ok(run_worker(root, "add", "orders"))
    staged = ok(run_worker(root, "stage", "orders"))
    crash(root, "revoke:staged-key-deleted", "revoke", "orders", staged)
    assert staged in kids(root, "orders")  # still bound, but its key is gone
    ok(run_worker(root, "revoke", "orders", staged))
    check_root(root)
    assert staged not in kids(root, "orders")


REMOVE_STEPS = [
    "remove:key.next.pem-deleted",
    "remove:key.pem-deleted",
    "remove:id-deleted",
    "remove:dirs-removed",
    "remove:bundle-written",
]


@pytest.mark.parametrize("step", REMOVE_STEPS)
def test_remove_killed_at_every_step(root: Path, step: str) -> None:
    ok(run_worker(root, "add", "orders", "team/orders"))
    ok(run_worker(root, "stage", "orders"))
    crash(root, step, "remove", "orders")
    rerun = run_worker(root, "remove", "orders")
    if step == "remove:bundle-written":
        assert rerun.returncode != 0 and "ServiceNotFoundError" in rerun.stderr
    else:
        ok(rerun)
    check_root(root)
    assert kids(root, "orders") == []
    assert not (root / "services" / "orders").exists()
    assert kids(root, "team/orders") != []


def test_the_crash_hook_is_inert_for_other_values(root: Path) -> None:
    result = run_worker(root, "add", "orders", crash_at="no-such-step")
    assert result.returncode == 0
    check_root(root)


# -- SIGKILL at random instants -----------------------------------------------------------


def test_random_kills_of_a_churning_producer(root: Path) -> None:
    seed = int(os.environ.get("SPIFFILE_TEST_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    for trial in range(30):
        producer = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), "churn", str(rng.randrange(1 << 30))],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert producer.stdout is not None and producer.stderr is not None
        assert producer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.15))
        producer.send_signal(signal.SIGKILL)
        producer.wait()
        stderr = producer.stderr.read()
        producer.stdout.close()
        producer.stderr.close()
        assert producer.returncode == -signal.SIGKILL, f"seed {seed} trial {trial}: {stderr}"
        check_root(root)
    # Re-running add for every service left completes the root: all bound, no litter.
    for info in list_services(root):
        add_service(root, info.name)
    check_root(root)
    for _dirpath, _dirnames, filenames in os.walk(root):
        assert [f for f in filenames if f.endswith(".tmp")] == [], f"seed {seed}"


# -- concurrency ---------------------------------------------------------------------------


def test_four_processes_adding_100_services_each(root: Path, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    observer = subprocess.Popen(
        [sys.executable, "-c", OBSERVER, str(root), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert observer.stdout is not None and observer.stdout.readline() == "ready\n"
    producers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), "add-many", "0", f"p{n}", "100"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    outputs = [producer.communicate(timeout=300) for producer in producers]
    stop.touch()
    observed = json.loads(observer.communicate(timeout=60)[0])
    for producer, (out, err) in zip(producers, outputs, strict=True):
        assert producer.returncode == 0, err
        assert len(json.loads(out)) == 100

    bundle = check_root(root)
    assert len(bundle.identities()) == 400
    # init wrote sequence 1 and each add exactly one more: no update was lost.
    assert bundle.sequence == 401
    services = list_services(root)
    assert len(services) == 400 and all(s.bound_kids == (s.kid,) for s in services)
    assert observed["bad"] == 0 and observed["reads"] > 0
    assert observed["exposed"] == []


# -- modes whatever the umask ----------------------------------------------------------------

UMASK_WORKER = r"""
import json, os, stat, sys
from spiffile import provision as p

os.umask(int(sys.argv[2], 8))
created = []
real_open = os.open

def recording_open(path, flags, mode=0o777, *args, **kwargs):
    fd = real_open(path, flags, mode, *args, **kwargs)
    if flags & os.O_CREAT:
        # The mode the file has at creation, before its first byte is written.
        mode_now = stat.S_IMODE(os.fstat(fd).st_mode)
        created.append([os.fspath(path), mode_now, flags & os.O_EXCL != 0])
    return fd

os.open = recording_open
root = p.init_root(sys.argv[1], "example.org")
p.add_service(root, "orders")
p.add_service(root, "team/billing")
p.rotate_service(root, "orders")
p.stage_rotation(root, "orders")
print(json.dumps(created))
"""


@pytest.mark.parametrize("umask", ["0", "022", "077", "027"])
def test_modes_from_the_first_byte_whatever_the_umask(tmp_path: Path, umask: str) -> None:
    root = tmp_path / "root"
    result = subprocess.run(
        [sys.executable, "-c", UMASK_WORKER, str(root), umask],
        capture_output=True,
        text=True,
        timeout=60,
    )
    created = ok(result)
    key_files = [(path, mode, exclusive) for path, mode, exclusive in created if "key" in path]
    assert len(key_files) == 4  # orders, team/billing, rotation, staged rotation
    for path, mode, exclusive in key_files:
        assert mode == 0o600, path
        assert exclusive, path
    check_root(root)
    for directory, _dirnames, filenames in os.walk(root / "services"):
        if directory != str(root / "services"):
            assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in filenames:
            mode = stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode)
            assert mode == (0o600 if "key" in name else 0o644), name
    assert stat.S_IMODE((root / "bundle.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(root.stat().st_mode) == 0o755
