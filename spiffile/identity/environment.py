"""Where an identity's files are: the environment variables and the names in a directory.

``SPIFFILE_DIR`` names a directory holding the three files under fixed names
(PROFILE.md §3); each ``SPIFFILE_*_FILE`` variable wins over it for its own
file.  The X.509-SVID files are found the same way, when present.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from spiffile.tls import X509Source

__all__ = [
    "DIR_NAMES",
    "ENV_BUNDLE_FILE",
    "ENV_DIR",
    "ENV_ID_FILE",
    "ENV_KEY_FILE",
    "ENV_SPIFFE_HELPER_CONFIG",
    "ENV_TRUST_DIR",
    "_find_x509",
]

ENV_DIR: Final = "SPIFFILE_DIR"
ENV_ID_FILE: Final = "SPIFFILE_ID_FILE"
ENV_KEY_FILE: Final = "SPIFFILE_KEY_FILE"
ENV_BUNDLE_FILE: Final = "SPIFFILE_BUNDLE_FILE"
#: A directory of ``<trust-domain>.json`` trust documents (federation, PROFILE.md §12).
ENV_TRUST_DIR: Final = "SPIFFILE_TRUST_DIR"
#: spiffe-helper's configuration file: the identity comes from SPIRE through it.
ENV_SPIFFE_HELPER_CONFIG: Final = "SPIFFILE_SPIFFE_HELPER_CONFIG"
#: File names inside ``SPIFFILE_DIR`` (PROFILE.md §3).
DIR_NAMES: Final = {ENV_ID_FILE: "id", ENV_KEY_FILE: "key.pem", ENV_BUNDLE_FILE: "bundle.json"}


def _find_x509(
    environ: Mapping[str, str], directory: str | None, options: Mapping[str, Any]
) -> X509Source | None:
    from spiffile.tls import X509Source  # Imported late: only X.509 users pay for ssl.

    clock = options.get("clock", time.time)
    trust_dir = options.get("trust_dir")
    if not isinstance(trust_dir, str | os.PathLike):
        trust_dir = None  # A TrustDirectory object: JWT federation only.
    return X509Source.find(environ, directory, clock=clock, trust_dir=trust_dir)
