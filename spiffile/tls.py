"""Mutual TLS with X.509-SVIDs: the clocked face of :mod:`spiffile.svid.x509`.

The pure core takes ``now``; this shell module reads the wall clock, the
way ``Fernet.decrypt`` wraps ``Fernet.decrypt_at_time``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from cryptography import x509

from spiffile.svid.x509 import Authorities, X509Svid, verify_at

__all__ = ["verify_x509_svid"]


def verify_x509_svid(
    chain: bytes | Iterable[x509.Certificate], authorities: Authorities
) -> X509Svid:
    """Verify an X.509-SVID chain now (X.509-SVID §5); see :func:`spiffile.svid.x509.verify_at`."""
    return verify_at(chain, authorities, time.time())
