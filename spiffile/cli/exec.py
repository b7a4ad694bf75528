"""``spiffile exec``: run a program with an identity and keep it alive through rotations.

The supervisor starts the command with the identity environment, watches the
three identity files, and when a change has settled it does one of four
things, chosen by ``on_change``:

- ``"auto"`` (the default): send SIGHUP, but only if the child has installed
  a handler for it.  A program with no handler dies of SIGHUP (uvicorn,
  ``python -m http.server``, most programs), so it is left alone: it gets the
  new files through the environment, and programs built on the library reload
  them by themselves (PROFILE.md §7).  Linux says which signals a process
  catches in ``/proc/PID/status`` (``SigCgt``); elsewhere nothing is sent.
- ``"signal"``: always send ``reload_signal`` (gunicorn, nginx, haproxy).
- ``"none"``: nothing; the environment only.
- ``"restart"``: stop the child (SIGTERM, then SIGKILL after
  ``stop_timeout``) and start it again.

With ``restart_on_exit`` a child that exits unexpectedly (a non-zero status
or a signal the supervisor did not forward as a stop) is started again after
a back-off that doubles from ``backoff`` up to :data:`MAX_BACKOFF`, at most
``max_restarts`` times in a row; a child that stayed up :data:`STABLE_AFTER`
seconds starts the count again.  A child that exits 0 has finished.

Only changes that matter to this service count: a new key or ID, a new
X.509-SVID, key or X.509 bundle (when the environment names them), and a bundle
whose *content* changed.  The bundle is compared as canonical JSON without
``spiffe_sequence``, so a producer rewriting it (another service's rotation
bumps the sequence; a sync job copies it again) does not wake anyone, while a
key added or revoked anywhere in the trust domain does: the service verifies
its callers with those keys.  A bundle that does not parse is not a change
(readers keep the last good one, PROFILE.md §7.3).

With a ``renew`` callable (``spiffile exec --root R NAME`` on a root with an
X.509 CA: :mod:`spiffile.cli._renewal`), each tick also lets it re-issue the
service's X.509-SVID once the SVID is past half its lifetime; the new files
reach the child as any other change.

Design notes:

- The *parent directories* are watched, not the files: producers replace files
  by rename, which gives the path a new inode, and a watch on the old inode
  would go silent after the first rotation.  Every tick also compares the
  files' ``stat`` signatures, symlinks followed, which is how the swap of a
  Kubernetes volume's ``..data`` symlink shows up, and what catches lost
  notifications.
- Changes are debounced: one rotation writes the bundle up to twice and the
  key once within milliseconds; the child hears of it once no change has been
  seen for ``settle`` seconds.
- The child dies with the supervisor: on Linux it is started with a
  parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), so a supervisor
  killed with SIGKILL (the OOM killer, ``kill -9``) takes its child along
  instead of leaving a server nobody watches.
- :data:`FORWARDED_SIGNALS` sent to the supervisor are forwarded to the
  current child; SIGINT, SIGTERM and SIGQUIT also mean "stop": the child is
  not restarted after them, and the supervisor exits with the child's status
  (``128 + n`` when it died of signal ``n``, as shells report it).  The child
  stays in the supervisor's process group so that job control behaves as if
  it had been started directly; a SIGINT or SIGQUIT typed at the terminal
  already reaches the child through that group, so it is not sent twice.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Final, Literal, NamedTuple

from spiffile.errors import ConfigurationError

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_SETTLE",
    "DEFAULT_STOP_TIMEOUT",
    "FORWARDED_SIGNALS",
    "MAX_BACKOFF",
    "MAX_SECONDS",
    "STABLE_AFTER",
    "STOP_SIGNALS",
    "IdentityPaths",
    "OnChange",
    "catches_signal",
    "identity_paths_from_env",
    "parse_signal",
    "run",
    "x509_paths_from_env",
]

OnChange = Literal["auto", "signal", "none", "restart"]

DEFAULT_SETTLE: Final = 0.5
"""Seconds without a change before the child hears of it."""
DEFAULT_MAX_RESTARTS: Final = 5
"""Unexpected exits in a row after which the supervisor gives up."""
DEFAULT_BACKOFF: Final = 1.0
"""Seconds before the first restart after an unexpected exit; doubles each time."""
MAX_BACKOFF: Final = 30.0
STABLE_AFTER: Final = 60.0
"""A child that ran this long before exiting starts the restart count again."""
DEFAULT_STOP_TIMEOUT: Final = 10.0
"""Seconds a child gets to exit after SIGTERM before SIGKILL, when it is restarted."""
MAX_SECONDS: Final = 3600.0
"""Upper bound of every duration option: finite, and far above any sensible value."""

FORWARDED_SIGNALS: Final = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
STOP_SIGNALS: Final = frozenset((signal.SIGINT, signal.SIGTERM, signal.SIGQUIT))
"""Forwarded signals that also mean "stop": no restart after them."""

_KEYBOARD_SIGNALS: Final = (signal.SIGINT, signal.SIGQUIT)
_TICK_MS: Final = 100
_PR_SET_PDEATHSIG: Final = 1
_ID_LIMIT: Final = 64 * 1024
_KEY_LIMIT: Final = 64 * 1024
_X509_LIMIT: Final = 1024 * 1024


class IdentityPaths(NamedTuple):
    """The three files of one identity (PROFILE.md §3.1)."""

    id: Path
    key: Path
    bundle: Path


def identity_paths_from_env(env: Mapping[str, str]) -> IdentityPaths:
    """Return the id, key and bundle paths an ``Identity.from_env(env)`` would read.

    Each explicit ``SPIFFILE_*_FILE`` variable wins over ``SPIFFILE_DIR`` for
    its own file (PROFILE.md §3.1).
    """
    from spiffile.identity import DIR_NAMES, ENV_DIR

    directory = env.get(ENV_DIR) or None
    paths: list[Path] = []
    missing: list[str] = []
    for variable, default_name in DIR_NAMES.items():
        value = env.get(variable) or None
        if value is not None:
            paths.append(Path(value))
        elif directory is not None:
            paths.append(Path(directory) / default_name)
        else:
            missing.append(variable)
    if missing:
        raise ConfigurationError(
            f"no identity in the environment: set {ENV_DIR} or {', '.join(missing)}"
            " (or pass --root and a service NAME)"
        )
    return IdentityPaths(*paths)


def x509_paths_from_env(env: Mapping[str, str]) -> tuple[Path, ...]:
    """The X.509-SVID, key and bundle files the environment names (``()`` when none)."""
    from spiffile.tls import ENV_X509_BUNDLE_FILE, ENV_X509_KEY_FILE, ENV_X509_SVID_FILE

    names = (ENV_X509_SVID_FILE, ENV_X509_KEY_FILE, ENV_X509_BUNDLE_FILE)
    return tuple(Path(env[n]) for n in names if env.get(n))


def parse_signal(text: str) -> signal.Signals:
    """Parse ``HUP``, ``SIGHUP``, ``hup`` or ``1`` into a signal."""
    value = text.strip().upper()
    if value.isdigit():
        try:
            return signal.Signals(int(value))
        except ValueError:
            raise ConfigurationError(f"unknown signal number {value}") from None
    if not value.startswith("SIG"):
        value = "SIG" + value
    try:
        return signal.Signals[value]
    except KeyError:
        raise ConfigurationError(f"unknown signal {text!r}") from None


def catches_signal(pid: int, signum: int) -> bool | None:
    """Whether process *pid* has a handler for *signum*; ``None`` when that cannot be known.

    Linux lists the caught signals as a hex mask in ``/proc/PID/status``
    (``SigCgt``, bit ``signum - 1``).
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            status = handle.read(64 * 1024)
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(b"SigCgt:"):
            try:
                mask = int(line.split(b":", 1)[1].strip(), 16)
            except ValueError:
                return None
            return bool(mask >> (signum - 1) & 1)
    return None


# --- what counts as a change ---------------------------------------------------------------------


def _read(path: Path, limit: int) -> bytes | None:
    from spiffile.files import read_file

    try:
        return read_file(path, limit=limit)
    except OSError:
        return None


def _bundle_content(data: bytes) -> bytes | None:
    """The bundle as canonical JSON without ``spiffe_sequence``; ``None`` if it does not parse."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    document.pop("spiffe_sequence", None)
    try:
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):
        return None


class _Fingerprint:
    """What the child would see of its identity, reduced to what matters to it.

    ``update`` returns True when the ID, the key or the bundle's content
    differs from the last accepted state.  A missing or unreadable file counts
    as a state of its own for the ID and the key; a bundle that does not parse
    keeps the last good one, as readers do.
    """

    def __init__(self, files: IdentityPaths, x509_files: Sequence[Path] = ()) -> None:
        self._files = files
        self._x509_files = tuple(x509_files)
        self._state = self._read_state(None)

    def _read_state(self, previous: tuple[bytes, bytes] | None) -> tuple[bytes, bytes]:
        from spiffile.bundle import MAX_BUNDLE_BYTES

        own = hashlib.sha256()
        own_files = [(self._files.id, _ID_LIMIT), (self._files.key, _KEY_LIMIT)]
        own_files += [(path, _X509_LIMIT) for path in self._x509_files]
        for path, limit in own_files:
            data = _read(path, limit)
            own.update(b"\x00missing" if data is None else len(data).to_bytes(8, "big") + data)
        raw = _read(self._files.bundle, MAX_BUNDLE_BYTES)
        content = _bundle_content(raw) if raw is not None else None
        if content is None:
            bundle = previous[1] if previous is not None else b"unreadable"
        else:
            bundle = hashlib.sha256(content).digest()
        return own.digest(), bundle

    def update(self) -> bool:
        state = self._read_state(self._state)
        changed = state != self._state
        self._state = state
        return changed


def _signatures(paths: Sequence[Path]) -> tuple[tuple[int, ...] | None, ...]:
    """What ``stat`` says of each file, symlinks followed (a missing file counts as a state).

    Compared on every tick, it catches what the directory watch cannot: the
    swap of a Kubernetes volume's ``..data`` symlink (the files' own names
    never change), and file systems whose notifications get lost (PROFILE.md §7).
    """
    found: list[tuple[int, ...] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(found)


# --- the child -----------------------------------------------------------------------------------


def _parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with the supervisor (Linux only).

    ``PR_SET_PDEATHSIG`` fires when the thread that forked the child exits,
    which is the supervisor's main thread.  If the supervisor died between the
    fork and the ``prctl`` the signal would never come, so the child checks
    that its parent is still the one that forked it.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def hook() -> None:
        # Runs in the forked child before exec: no imports, no locks.
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), kill)

    return hook


def _keyboard_reaches_child(signum: int) -> bool:
    """True when ``signum`` was most likely typed at the terminal.

    The terminal sends SIGINT/SIGQUIT to the whole foreground process group,
    which holds the child as well, so forwarding it would deliver it twice.
    """
    if signum not in _KEYBOARD_SIGNALS:
        return False
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _exit_status(returncode: int) -> int:
    """Shell convention: 128 + n when the child was killed by signal n."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _check_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise ConfigurationError(f"{name} must be between 0 and {MAX_SECONDS:g} seconds")


class _Supervisor:
    """One child at a time, its restarts, and what it is told of identity changes."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        on_change: OnChange,
        reload_signal: signal.Signals,
        restart_on_exit: bool,
        max_restarts: int,
        backoff: float,
        stop_timeout: float,
        say: Callable[[str], None],
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.on_change = on_change
        self.reload_signal = reload_signal
        self.restart_on_exit = restart_on_exit
        self.max_restarts = max_restarts
        self.backoff = backoff
        self.stop_timeout = stop_timeout
        self.say = say
        self.preexec = _parent_death_hook()
        self.child: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.pending: list[int] = []  # Signals that arrived before the first child.
        self.stop_signal: int | None = None  # A stop was asked for: never restart.
        self.replacing_until: float | None = None  # Stopping the child to restart it.
        self.restart_at: float | None = None  # Backing off after an unexpected exit.
        self.crashes = 0
        self.status: int | None = None  # Set when the supervisor is done.

    # Signal handler: runs between bytecodes of the main thread.
    def forward(self, signum: int, _frame: FrameType | None) -> None:
        if signum in STOP_SIGNALS:
            self.stop_signal = signum
        child = self.child
        if child is None:
            if self.restart_at is None:
                self.pending.append(signum)  # Delivered as soon as the child exists.
            return
        if child.returncode is not None or _keyboard_reaches_child(signum):
            return
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def start(self) -> None:
        """Start the command (``OSError`` if it cannot be, as from ``Popen``)."""
        self.child = subprocess.Popen(self.command, env=self.env, preexec_fn=self.preexec)
        self.started_at = time.monotonic()
        pending, self.pending = self.pending, []
        for signum in pending:
            os.kill(self.child.pid, signum)

    def identity_changed(self) -> None:
        child = self.child
        if child is None or child.poll() is not None or self.replacing_until is not None:
            return  # The next child reads the files as they are then.
        if self.on_change == "none":
            self.say("spiffile exec: identity changed; CMD reads it from its files")
        elif self.on_change == "restart":
            self.say(f"spiffile exec: identity changed; restarting pid {child.pid}")
            self.replacing_until = time.monotonic() + self.stop_timeout
            _send(child, signal.SIGTERM)
        elif self.on_change == "auto" and not (
            handled := catches_signal(child.pid, self.reload_signal)
        ):
            reason = "has no" if handled is False else "may have no"
            self.say(
                f"spiffile exec: identity changed; pid {child.pid} {reason} "
                f"{self.reload_signal.name} handler, so it is not signalled"
                f" (--signal {self.reload_signal.name[3:]} sends it anyway)"
            )
        else:
            self.say(
                f"spiffile exec: identity changed; sending {self.reload_signal.name}"
                f" to pid {child.pid}"
            )
            _send(child, self.reload_signal)

    def tick(self, now: float) -> None:
        """Move the state machine: reap, stop, restart or finish."""
        if self.restart_at is not None:
            if self.stop_signal is not None:
                self.status = 128 + self.stop_signal
            elif now >= self.restart_at:
                self.restart_at = None
                self.start()
            return
        child = self.child
        if child is None:
            return
        returncode = child.poll()
        if returncode is None:
            if self.replacing_until is not None and now >= self.replacing_until:
                self.say(f"spiffile exec: pid {child.pid} did not stop; sending SIGKILL")
                _send(child, signal.SIGKILL)
                self.replacing_until = math.inf
            return
        self.child = None
        if self.replacing_until is not None:
            self.replacing_until = None
            if self.stop_signal is None:
                self.start()
                return
        if self.stop_signal is not None or not self.restart_on_exit or returncode == 0:
            self.status = _exit_status(returncode)
            return
        if now - self.started_at >= STABLE_AFTER:
            self.crashes = 0
        self.crashes += 1
        if self.crashes > self.max_restarts:
            self.say(
                f"spiffile exec: CMD {_describe(returncode)}; giving up after "
                f"{self.max_restarts} restart{'s' if self.max_restarts != 1 else ''}"
            )
            self.status = _exit_status(returncode)
            return
        delay = min(MAX_BACKOFF, self.backoff * 2 ** (self.crashes - 1))
        self.say(
            f"spiffile exec: CMD {_describe(returncode)}; restarting in {delay:g} s"
            f" ({self.crashes} of {self.max_restarts})"
        )
        self.restart_at = now + delay

    def shut_down(self) -> None:
        """Only reached when the supervisor itself fails: do not leave an orphan."""
        child = self.child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _send(child: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the child unless it is already gone."""
    if child.poll() is None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass


def run(
    command: Sequence[str],
    env: Mapping[str, str],
    files: Sequence[Path],
    *,
    on_change: OnChange = "auto",
    reload_signal: signal.Signals = signal.SIGHUP,
    restart_on_exit: bool = False,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    backoff: float = DEFAULT_BACKOFF,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    settle: float = DEFAULT_SETTLE,
    log: Callable[[str], None] | None = None,
    x509_files: Sequence[Path] = (),
    renew: Callable[[], object] | None = None,
) -> int:
    """Run ``command`` with ``env`` under supervision; return the exit status to exit with.

    *files* are the identity's id, key and bundle, in that order;
    *x509_files* its X.509-SVID, key and bundle, when it has them.  *renew*
    is called on every tick (see :mod:`spiffile.cli._renewal`).  Raises
    :class:`OSError` when the command cannot be started (the caller maps it to
    126/127 like a shell) and :class:`ConfigurationError` for unusable options.
    """
    import watchfiles  # Imported here: `spiffile --help` must stay fast.

    if not command:
        raise ConfigurationError("no command to run")
    if on_change not in ("auto", "signal", "none", "restart"):
        raise ConfigurationError(f"unknown on_change {on_change!r}")
    durations = (("--settle", settle), ("--backoff", backoff), ("--stop-timeout", stop_timeout))
    for name, value in durations:
        _check_seconds(name, value)
    if type(max_restarts) is not int or max_restarts < 0:
        raise ConfigurationError("--max-restarts must be a non-negative integer")
    paths = IdentityPaths(*(Path(os.path.abspath(p)) for p in files))
    x509_paths = tuple(Path(os.path.abspath(p)) for p in x509_files)
    watched = (*paths, *x509_paths)
    targets = {str(p) for p in watched}
    directories = sorted({str(p.parent) for p in watched})
    for directory in directories:
        if not os.path.isdir(directory):
            raise ConfigurationError(f"cannot watch {directory!r}: not a directory")
        try:
            directory.encode("utf-8")
        except UnicodeEncodeError:
            # watchfiles takes only UTF-8 paths; refuse before the child starts.
            raise ConfigurationError(
                f"cannot watch {directory!r}: the file watcher needs a UTF-8 path"
            ) from None

    def relevant(_change: watchfiles.Change, path: str) -> bool:
        return os.path.abspath(path) in targets

    say = log if log is not None else (lambda message: print(message, file=sys.stderr))
    supervisor = _Supervisor(
        command,
        env,
        on_change=on_change,
        reload_signal=reload_signal,
        restart_on_exit=restart_on_exit,
        max_restarts=max_restarts,
        backoff=backoff,
        stop_timeout=stop_timeout,
        say=say,
    )
    seen = _signatures(watched)
    fingerprint = _Fingerprint(paths, x509_paths)
    # Handlers go in before the child starts: a signal in between must not be lost
    # (or kill the supervisor and orphan the child).
    previous = {sig: signal.signal(sig, supervisor.forward) for sig in FORWARDED_SIGNALS}
    try:
        supervisor.start()
        changed_at: float | None = None
        noticed = False  # A change was seen (not just the start-up re-check).
        first = True
        for changes in watchfiles.watch(
            *directories,
            watch_filter=relevant,
            step=50,
            debounce=max(1600, int(settle * 2000)),
            rust_timeout=_TICK_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
            recursive=False,
            ignore_permission_denied=True,
        ):
            now = time.monotonic()
            if first:
                first = False
                changed_at = now  # Close the window between the fingerprint and the watch.
            if renew is not None:
                renew()
            signatures = _signatures(watched)
            if changes or signatures != seen:
                seen = signatures
                changed_at, noticed = now, True
            supervisor.tick(now)
            if supervisor.status is not None:
                return supervisor.status
            if changed_at is not None and now - changed_at >= settle:
                changed_at = None
                if fingerprint.update():
                    supervisor.identity_changed()
                elif noticed:
                    say("spiffile exec: identity files rewritten, content unchanged; CMD not told")
                noticed = False
        raise ConfigurationError("the file watcher stopped")  # watch() only ends on a stop event.
    finally:
        supervisor.shut_down()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
