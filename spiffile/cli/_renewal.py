"""`spiffile exec` renews the X.509-SVID of the service it runs (X.509 extension, PROFILE.md §13).

When exec runs service NAME of a root that holds an X.509 CA, and this
process can use the CA, it re-issues NAME's SVID as the SVID passes half its
validity window, through :func:`spiffile.provision.x509.renew_svids`: the
same locked, undo-logged, atomic path as ``spiffile x509 renew NAME``.  The
new files then reach the child like any identity change (exec's change
filter and ``--signal`` rules).

Timing: the renewal moment is read from the certificate on disk (its
notBefore and notAfter), again after every renewal and whenever ``svid.pem``
changes (another renewer, ``x509 renew``), and compared with the wall clock
on each tick of exec's loop, which wakes every 100 ms anyway (no extra
timer).  A wall clock that jumps forward renews at once; one that jumps back
waits for the certificate's own half-life again.  Retries after a failure
are spaced on the monotonic clock, doubling from :data:`RETRY_FIRST` to
:data:`RETRY_MAX`, so a clock jump cannot cause a burst of attempts.

Exec given only a consumer's files (the ``SPIFFILE_*`` environment, no
``--root``/NAME), a root without a CA, or a CA this process cannot read
never renews: something else (``spiffile x509 renew`` from a timer) must.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from spiffile.cli._options import one_line
from spiffile.errors import SpiffileError
from spiffile.provision.root import Root, service_dir
from spiffile.provision.x509 import (
    CA_DIR,
    SVID_FILE,
    renew_svids,
    renewal_time,
    x509_enabled,
)

__all__ = ["LOCK_WAIT", "RETRY_FIRST", "RETRY_MAX", "X509Renewer"]

RETRY_FIRST = 1.0
"""Seconds before the first retry of a failed renewal; also the least spacing of attempts."""
RETRY_MAX = 60.0
"""Longest wait between retries of a failing renewal."""
LOCK_WAIT = 1.0
"""Longest a renewal waits for the root lock another producer holds; then it is retried.

exec's loop forwards nothing to the child's supervisor while a renewal runs:
waiting the producers' usual 30 s would leave a child's exit unnoticed as long.
"""

_CA_FILE = "ca.pem"


def _signature(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class X509Renewer:
    """Keeps one service's X.509-SVID past half its lifetime re-issued; call :meth:`tick`."""

    def __init__(
        self,
        root: Root,
        name: str,
        say: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # A Root of its own: the same directory, a shorter wait for the lock.
        self.root = Root(root.path, root.trust_domain, lock_timeout=LOCK_WAIT)
        self.name = name
        self.say = say
        self.clock = clock
        self.monotonic = monotonic
        self._svid = os.fspath(service_dir(root, name) / SVID_FILE)
        self._seen: tuple[int, ...] | bool | None = False  # False: never looked.
        self._due = 0.0
        self._retry_at = -float("inf")
        self._failures = 0

    @classmethod
    def for_service(cls, root: Root, name: str, say: Callable[[str], None]) -> X509Renewer | None:
        """A renewer for *name*, or None when this process does not produce its SVIDs."""
        if not x509_enabled(root):
            return None
        ca = root.path / CA_DIR / _CA_FILE
        if not os.access(ca, os.R_OK) or not os.access(service_dir(root, name), os.W_OK):
            say(
                f"spiffile exec: cannot use the X.509 CA of {os.fspath(root.path)!r}; "
                "SVIDs are not renewed here (run `spiffile x509 renew` where they can be)"
            )
            return None
        return cls(root, name, say)

    @property
    def due_at(self) -> float:
        """The wall-clock moment of the next renewal, as last read from the certificate."""
        return self._due

    def tick(self) -> bool:
        """Renew when due and not backing off; True when a new SVID was written."""
        signature = _signature(self._svid)
        if signature != self._seen:
            self._seen = signature
            try:
                self._due = renewal_time(self.root, self.name)
            except SpiffileError:
                self._due = 0.0  # Unreadable: let the renewal say why.
        if self.clock() < self._due or self.monotonic() < self._retry_at:
            return False
        try:
            (result,) = renew_svids(self.root, [self.name], now=self.clock())
        except SpiffileError as exc:
            self._failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (self._failures - 1))
            self._retry_at = self.monotonic() + delay
            self.say(
                f"spiffile exec: renewing the X.509-SVID of {self.name!r} failed: "
                f"{one_line(str(exc))}; retrying in {delay:g} s"
            )
            return False
        self._failures = 0
        self._retry_at = self.monotonic() + RETRY_FIRST
        self._seen = False  # Read the new certificate's window on the next tick.
        if result.issued:
            until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.expires_at))
            self.say(f"spiffile exec: renewed the X.509-SVID of {self.name!r} (until {until})")
        return result.issued
