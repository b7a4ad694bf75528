"""spiffile: SPIFFE workload identity from three files.

A workload's identity is its SPIFFE ID, its private key and a trust bundle
of everyone's public keys.  ``Identity.from_env()`` loads them;
``identity.token(audience)`` proves who we are, ``identity.verify(token)``
says who is calling.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spiffile.bundle import BoundKey, Bundle, SpiffeBundle, spiffe_jwt_bundle
    from spiffile.caller import Caller, TrustKind
    from spiffile.errors import (
        AlgorithmError,
        AudienceError,
        ClaimsError,
        ConfigurationError,
        ExpiredTokenError,
        HeaderError,
        InvalidBundleError,
        InvalidKeyError,
        InvalidSpiffeIdError,
        InvalidTokenError,
        InvalidX509SvidError,
        LifetimeError,
        MalformedTokenError,
        NotYetValidError,
        PeerNotAllowedError,
        ProvisionError,
        SignatureError,
        SpiffileError,
        TokenTooLargeError,
        TokenUnavailableError,
        UnknownIdentityError,
    )
    from spiffile.identity import Identity, IdentityStatus
    from spiffile.spiffe_id import SpiffeId, TrustDomain
    from spiffile.trust import TrustSet

# Public names are imported on first use (PEP 562), so that `spiffile --help`
# and `import spiffile.errors` do not pay for cryptography and PyJWT.
_LOCATIONS = {
    "BoundKey": "spiffile.bundle",
    "Bundle": "spiffile.bundle",
    "spiffe_jwt_bundle": "spiffile.bundle",
    "Identity": "spiffile.identity",
    "IdentityStatus": "spiffile.identity",
    "SpiffeId": "spiffile.spiffe_id",
    "TrustDomain": "spiffile.spiffe_id",
    "Caller": "spiffile.caller",
    "TrustKind": "spiffile.caller",
    "SpiffeBundle": "spiffile.bundle",
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
    module = _LOCATIONS.get(name)
    if module is None and name in __all__ and name.endswith("Error"):
        module = "spiffile.errors"
    if module is None:
        raise AttributeError(f"module 'spiffile' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AlgorithmError",
    "AudienceError",
    "BoundKey",
    "Bundle",
    "Caller",
    "ClaimsError",
    "ConfigurationError",
    "ExpiredTokenError",
    "HeaderError",
    "Identity",
    "IdentityStatus",
    "InvalidBundleError",
    "InvalidKeyError",
    "InvalidSpiffeIdError",
    "InvalidTokenError",
    "InvalidX509SvidError",
    "LifetimeError",
    "MalformedTokenError",
    "NotYetValidError",
    "PeerNotAllowedError",
    "ProvisionError",
    "SignatureError",
    "SpiffeBundle",
    "SpiffeId",
    "SpiffileError",
    "TokenTooLargeError",
    "TokenUnavailableError",
    "TrustDomain",
    "TrustKind",
    "TrustSet",
    "UnknownIdentityError",
    "__version__",
    "spiffe_jwt_bundle",
]
