"""Push reloading: a thread that watches files with watchfiles and refreshes their views."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from spiffile.files.views import DirectoryView, FileView

__all__ = ["Watcher"]

_log = logging.getLogger("spiffile")


class Watcher:
    """Push reload: refresh file views as soon as watchfiles reports a change.

    A view looks at its file at most every :data:`RECHECK_INTERVAL` (50 ms)
    whether watched or not; the watcher serves a change as soon as it is
    reported, and moves the reading, the parsing and the warnings off the
    request path.
    It watches the parent directories, because an atomic replace swaps the
    file's inode.
    """

    def __init__(
        self,
        views: Iterable[FileView[object] | DirectoryView[Any]],
        *,
        debounce_ms: int = 50,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        """Start a daemon thread watching *views*; stop it with :meth:`close`.

        *on_refresh* is called after each batch of refreshes (change
        notifications); an exception from it is logged, not raised.
        """
        self._views = list(views)
        for view in self._views:
            view.pushed = True
        self._on_refresh = on_refresh
        self._stop = threading.Event()
        self._debounce_ms = debounce_ms
        self._thread = threading.Thread(target=self._run, name="spiffile-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import watchfiles  # Lazy: only push reload needs it.

        # A file's parent directory (an atomic replace swaps the file's inode);
        # a DirectoryView's own directory.
        directories = sorted(
            {
                os.path.abspath(v.path)
                if getattr(v, "is_directory", False)
                else os.path.dirname(os.path.abspath(v.path))
                for v in self._views
            }
        )
        try:
            for _changes in watchfiles.watch(
                *directories,
                stop_event=self._stop,
                debounce=self._debounce_ms,
                raise_interrupt=False,
                yield_on_timeout=False,
            ):
                for view in self._views:
                    view.refresh(changed_only=True)
                if self._on_refresh is not None:
                    try:
                        self._on_refresh()
                    except Exception:
                        _log.exception("spiffile: a change notification failed")
        except (OSError, UnicodeError, RuntimeError) as exc:
            # Push reload is an optimisation: get() still looks at the file
            # every 50 ms, so losing the watch (a path watchfiles cannot encode, a
            # directory that vanished) must not kill anything or go unsaid.
            _log.warning("spiffile: push reload stopped, files are checked on use: %s", exc)
            for view in self._views:
                view.pushed = False

    def close(self) -> None:
        """Stop watching and wait for the thread to end; views keep their 50 ms looks."""
        self._stop.set()
        self._thread.join(timeout=5)
        for view in self._views:
            view.pushed = False
