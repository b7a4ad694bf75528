"""Everything that touches the file system, in one package (docs/architecture.md).

``safe``: reads that never follow a link, atomic writes, directory modes;
``views``: hot-reloading file and directory views with last known good;
``watch``: push reloading with watchfiles.  ``identity``, ``provision`` and the
CLI go through these; no other module opens, stats or renames files.
"""

from __future__ import annotations

from spiffile.files import safe as _safe
from spiffile.files import views as _views
from spiffile.files import watch as _watch
from spiffile.files.safe import *  # noqa: F403 - the public names are safe.__all__
from spiffile.files.views import *  # noqa: F403 - the public names are views.__all__
from spiffile.files.watch import *  # noqa: F403 - the public names are watch.__all__

__all__ = [*_safe.__all__, *_views.__all__, *_watch.__all__]
