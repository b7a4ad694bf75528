"""Trust bundles: the documents that say which public keys speak for whom.

``spiffile.bundle`` is the public face of the package; the modules behind it
each hold one job: ``document`` the spiffile bundle (per-identity keys,
PROFILE.md §4), ``spiffe`` the standard SPIFFE format (SPIFFE Trust Domain and
Bundle §4), ``lint`` the strict checker behind ``spiffile check``, and
``_compact`` the storage scheme that keeps large bundles small, ``sequence``
the consumer's rollback rule across reloads.
"""

from __future__ import annotations

from spiffile.bundle.document import (
    MAX_BUNDLE_BYTES,
    BoundIdentity,
    BoundKey,
    Bundle,
)
from spiffile.bundle.lint import lint_bundle
from spiffile.bundle.sequence import SequenceGuard
from spiffile.bundle.spiffe import JwtAuthority, SpiffeBundle, spiffe_jwt_bundle

__all__ = [
    "MAX_BUNDLE_BYTES",
    "BoundIdentity",
    "BoundKey",
    "Bundle",
    "JwtAuthority",
    "SequenceGuard",
    "SpiffeBundle",
    "lint_bundle",
    "spiffe_jwt_bundle",
]
