"""Trust bundles: the documents that say which public keys speak for whom.

``spiffile.bundle`` is the public face of the package; the modules behind it
each hold one job.
"""

from __future__ import annotations

from spiffile.bundle.document import (
    MAX_BUNDLE_BYTES,
    BoundIdentity,
    BoundKey,
    Bundle,
    lint_bundle,
    spiffe_jwt_bundle,
)

__all__ = [
    "MAX_BUNDLE_BYTES",
    "BoundIdentity",
    "BoundKey",
    "Bundle",
    "lint_bundle",
    "spiffe_jwt_bundle",
]
