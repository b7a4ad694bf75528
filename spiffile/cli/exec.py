"""``spiffile exec``: run a program with an identity and tell it when the files change.

Many programs already know how to reload their configuration on a signal
(SIGHUP by convention) but not how to watch files.  This supervisor gives them
spiffile rotation and revocation without a restart: it starts the command with
the identity environment, watches the three identity files, and once a burst
of changes has settled it sends the child one signal.

Design notes:

- The *parent directories* are watched, not the files: producers replace files
  by rename (atomic write), which gives the path a new inode, and a watch on
  the old inode would go silent after the first rotation.
- Notifications are not relied on alone (PROFILE.md §7.2): every tick also
  compares the files' ``stat`` signatures, symlinks followed, which is how the
  swap of a Kubernetes volume's ``..data`` symlink shows up.
- Changes are debounced: one rotation writes the bundle up to twice and the
  key once within milliseconds; the child gets one signal once no change has
  been seen for ``settle`` seconds.  A content hash of the three files is
  compared before signalling, so a ``touch`` or a rewrite with identical bytes
  does not wake the child.
- SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the supervisor
  are forwarded to the child; the supervisor then exits with the child's
  status (``128 + n`` when the child died of signal ``n``, as shells report
  it).  The child stays in the supervisor's process group so that job control
  and interactive programs behave as if the child had been started directly;
  a SIGINT or SIGQUIT typed at the terminal already reaches the child through
  that group, so the supervisor does not send it a second time.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from spiffile.errors import ConfigurationError

__all__ = [
    "DEFAULT_SETTLE",
    "FORWARDED_SIGNALS",
    "identity_paths_from_env",
    "parse_signal",
    "run",
]

DEFAULT_SETTLE = 0.5
"""Seconds without a change before the child is signalled."""

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)

_KEYBOARD_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
_TICK_MS = 100


def identity_paths_from_env(env: Mapping[str, str]) -> list[Path]:
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
    return paths


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


def _content_hash(paths: Sequence[Path]) -> bytes:
    """Hash the current bytes of the identity files (a missing file counts as a state)."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            digest.update(b"\x00error:" + type(exc).__name__.encode())
        else:
            digest.update(len(data).to_bytes(8, "big") + data)
    return digest.digest()


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


def run(
    command: Sequence[str],
    env: Mapping[str, str],
    watch_files: Sequence[Path],
    *,
    reload_signal: signal.Signals = signal.SIGHUP,
    settle: float = DEFAULT_SETTLE,
    log: Callable[[str], None] | None = None,
) -> int:
    """Run ``command`` with ``env``; signal it when ``watch_files`` settle after a change.

    Returns the exit status to exit with.  Raises :class:`OSError` when the
    command cannot be started (the caller maps it to 126/127 like a shell).
    """
    import watchfiles  # Imported here: `spiffile --help` must stay fast.

    if not command:
        raise ConfigurationError("no command to run")
    if settle < 0:
        raise ConfigurationError("--settle must not be negative")
    say = log if log is not None else (lambda message: print(message, file=sys.stderr))
    files = [Path(os.path.abspath(p)) for p in watch_files]
    targets = {str(p) for p in files}
    directories = sorted({str(p.parent) for p in files})
    for directory in directories:
        if not os.path.isdir(directory):
            raise ConfigurationError(f"cannot watch {directory}: not a directory")
        try:
            directory.encode("utf-8")
        except UnicodeEncodeError:
            # watchfiles takes only UTF-8 paths; refuse before the child starts.
            raise ConfigurationError(
                f"cannot watch {directory!r}: the file watcher needs a UTF-8 path"
            ) from None

    def relevant(_change: watchfiles.Change, path: str) -> bool:
        return os.path.abspath(path) in targets

    seen = _signatures(files)
    baseline = _content_hash(files)
    started: list[subprocess.Popen[bytes]] = []
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if not started:
            pending.append(signum)  # Delivered as soon as the child exists.
            return
        if started[0].returncode is not None or _keyboard_reaches_child(signum):
            return
        try:
            os.kill(started[0].pid, signum)
        except ProcessLookupError:
            pass

    # Handlers go in before the child starts: a signal in between must not be lost
    # (or kill the supervisor and orphan the child).
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        child = subprocess.Popen(list(command), env=dict(env))
        started.append(child)
        for signum in pending:
            os.kill(child.pid, signum)
        last_sent = baseline
        changed_at: float | None = None
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
                # Close the window between the baseline hash and the watcher start.
                first = False
                if _content_hash(files) != baseline:
                    changed_at = now
            if changes:
                changed_at = now
            signatures = _signatures(files)
            if signatures != seen:
                seen = signatures
                changed_at = now
            if child.poll() is not None:
                break
            if changed_at is not None and now - changed_at >= settle:
                changed_at = None
                current = _content_hash(files)
                if current != last_sent:
                    last_sent = current
                    say(
                        f"spiffile exec: identity files changed; sending "
                        f"{reload_signal.name} to pid {child.pid}"
                    )
                    _signal_child(child, reload_signal)
        return _exit_status(child.wait())
    finally:
        if started and started[0].returncode is None:
            child = started[0]
            # Only reached when the watcher itself failed: do not leave an orphan.
            child.terminate()
            child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_child(child: subprocess.Popen[bytes], reload_signal: signal.Signals) -> None:
    """Send the reload signal unless the child is already gone."""
    if child.poll() is None:
        try:
            child.send_signal(reload_signal)
        except ProcessLookupError:
            pass
