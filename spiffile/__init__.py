"""spiffile: SPIFFE workload identity from files.

A workload's identity is its SPIFFE ID, its private key and a trust bundle.
``Identity.from_env()`` loads them; ``identity.token(audience)`` proves who we
are, ``identity.verify(token)`` says who is calling.

The public surface is this module's ``__all__``: every error class of
:mod:`spiffile.errors` (all of them, so that ``except spiffile.XError`` works
for any error a call can raise), the SPIFFE ID types, and the names in
``_LAZY``, which are imported on first use (PEP 562) so that ``spiffile
--help`` and ``import spiffile.errors`` do not pay for cryptography.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from spiffile import errors as _errors
from spiffile.errors import *  # noqa: F403 - every error is public; errors.__all__ is the list
from spiffile.spiffe_id import SpiffeId, TrustDomain

if TYPE_CHECKING:  # The same names as _LAZY (tests/test_public_api.py holds them equal).
    from spiffile.bundle import BoundKey as BoundKey
    from spiffile.bundle import Bundle as Bundle
    from spiffile.bundle import SpiffeBundle as SpiffeBundle
    from spiffile.bundle import spiffe_jwt_bundle as spiffe_jwt_bundle
    from spiffile.caller import Caller as Caller
    from spiffile.caller import TrustKind as TrustKind
    from spiffile.changes import Change as Change
    from spiffile.changes import ChangeKind as ChangeKind
    from spiffile.errors import TLSPeerRejectedError as TLSPeerRejectedError
    from spiffile.identity import Configured as Configured
    from spiffile.identity import Identity as Identity
    from spiffile.identity import IdentityStatus as IdentityStatus
    from spiffile.metrics import MetricsRecorder as MetricsRecorder
    from spiffile.replay import ReplayCache as ReplayCache
    from spiffile.trust import TrustSet as TrustSet

#: Public names imported on first use, and the module each comes from.
_LAZY = {
    "BoundKey": "spiffile.bundle",
    "Bundle": "spiffile.bundle",
    "SpiffeBundle": "spiffile.bundle",
    "spiffe_jwt_bundle": "spiffile.bundle",
    "Caller": "spiffile.caller",
    "TrustKind": "spiffile.caller",
    "Change": "spiffile.changes",
    "ChangeKind": "spiffile.changes",
    "TLSPeerRejectedError": "spiffile.errors",
    "Configured": "spiffile.identity",
    "Identity": "spiffile.identity",
    "IdentityStatus": "spiffile.identity",
    "MetricsRecorder": "spiffile.metrics",
    "ReplayCache": "spiffile.replay",
    "TrustSet": "spiffile.trust",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        # importlib.metadata is slow to import (row "spiffile --help"): on demand.
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("spiffile")
        except PackageNotFoundError:  # pragma: no cover - a bare source tree
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spiffile' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["SpiffeId", "TrustDomain", "__version__"]  # noqa: F405 - __version__ is lazy
__all__ += _errors.__all__
__all__ += list(_LAZY)
