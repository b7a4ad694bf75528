"""spiffile: SPIFFE workload identity from three files.

A workload's identity is its SPIFFE ID, its private key and a trust bundle
of everyone's public keys.  ``Identity.from_env()`` loads them;
``identity.token(audience)`` proves who we are, ``identity.verify(token)``
says who is calling.
"""

from importlib.metadata import PackageNotFoundError, version

from spiffile.bundle import BoundKey, Bundle, spiffe_jwt_bundle
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
    LifetimeError,
    MalformedTokenError,
    NotYetValidError,
    ProvisionError,
    SignatureError,
    SpiffileError,
    TokenTooLargeError,
    UnknownIdentityError,
)
from spiffile.identity import Identity, IdentityStatus
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import Caller

try:
    __version__ = version("spiffile")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0+unknown"

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
    "LifetimeError",
    "MalformedTokenError",
    "NotYetValidError",
    "ProvisionError",
    "SignatureError",
    "SpiffeId",
    "SpiffileError",
    "TokenTooLargeError",
    "UnknownIdentityError",
    "__version__",
    "spiffe_jwt_bundle",
]
