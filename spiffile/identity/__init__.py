"""``Identity``: what an application holds to prove who it is and to check who calls it.

It composes a hot-reloading view of the key file, one of the bundle file, and
the pure core (``svid``).  Tokens are minted with the current key, cached per
audience while most of their lifetime remains, and verified against the
current bundle.  A bad or missing file never turns a working identity into a
failing one: the last good version keeps serving, and :meth:`Identity.status`
says so.

The package keeps one job per module: ``core`` the ``Identity`` class,
``status`` its health report, ``environment`` the variables and file names
that locate an identity, ``_loading`` the parsing and acceptance of its files,
``_verified_cache`` the tokens it verified, ``_federated`` the trust it
consults for other trust domains.
"""

from __future__ import annotations

from spiffile.identity.core import Configured, Identity
from spiffile.identity.environment import (
    DIR_NAMES as DIR_NAMES,
)
from spiffile.identity.environment import (
    ENV_BUNDLE_FILE,
    ENV_DIR,
    ENV_ID_FILE,
    ENV_KEY_FILE,
    ENV_SPIFFE_HELPER_CONFIG,
    ENV_TRUST_DIR,
)
from spiffile.identity.status import IdentityStatus

__all__ = [
    "ENV_BUNDLE_FILE",
    "ENV_DIR",
    "ENV_ID_FILE",
    "ENV_KEY_FILE",
    "ENV_SPIFFE_HELPER_CONFIG",
    "ENV_TRUST_DIR",
    "Configured",
    "Identity",
    "IdentityStatus",
]
