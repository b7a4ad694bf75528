"""The one exception hierarchy of spiffile.

Everything a caller, an attacker or a broken file can cause raises a
:class:`SpiffileError`.  Each class carries a stable ``code`` string (for logs,
metrics and the conformance vectors) and a message that says what is wrong.
Messages never contain key material or whole tokens: an error may be logged
by code that should not see either.

Programmer misuse (a wrong argument type) may still raise :class:`TypeError`,
as in the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

__all__ = [
    "AlgorithmError",
    "AudienceError",
    "BundleFetchError",
    "ClaimsError",
    "ConfigurationError",
    "ExpiredTokenError",
    "HeaderError",
    "InvalidBundleError",
    "InvalidKeyError",
    "InvalidSpiffeIdError",
    "InvalidTokenError",
    "LifetimeError",
    "MalformedTokenError",
    "NotYetValidError",
    "ProvisionError",
    "ReplayCacheFullError",
    "ReplayedTokenError",
    "SignatureError",
    "SpiffileError",
    "TokenTooLargeError",
    "TokenUnavailableError",
    "UnknownIdentityError",
]


class SpiffileError(Exception):
    """Base class of every error spiffile raises on bad input."""

    code: str = "error"


class InvalidSpiffeIdError(SpiffileError):
    """A string is not a SPIFFE ID under the SPIFFE-ID standard's rules."""

    code = "invalid_spiffe_id"


class InvalidBundleError(SpiffileError):
    """A bundle document cannot be used at all (not one malformed entry: those are skipped)."""

    code = "invalid_bundle"


class BundleFetchError(SpiffileError):
    """A bundle endpoint could not be fetched (transport, TLS, HTTP status, size, rollback).

    The destination file, if any, is left as it was (SPIFFE Federation §5).
    """

    code = "bundle_fetch"


class InvalidKeyError(SpiffileError):
    """A private key file is not an unencrypted PKCS#8 PEM EC P-256 key."""

    code = "invalid_key"


#: Longest text of a token's claim kept on an error (before repr()).
_MAX_FIELD: Final = 200


def _ago(moment: int, now: float) -> str:
    delta = now - moment
    return f"{delta:.0f} s ago" if delta >= 0 else f"in {-delta:.0f} s"


class TokenContext:
    """Safe, structured facts about a rejected token, for the verifier's own logs.

    ``svid.verify`` fills these in on every :class:`InvalidTokenError` and
    :class:`UnknownIdentityError` it raises, from whatever part of the token
    it could read.  They are what PROFILE.md §10 lets a log hold: SPIFFE IDs,
    ``kid`` values and times, each string cut to 200 characters; never the
    token, its signature or a key.  Everything read from the token is what
    it *claims*: an attacker chooses it, so :meth:`explain` shows strings
    through ``repr()``.  The answer to the remote caller stays coarse.
    """

    #: The token's ``sub`` as claimed (unverified unless the error is not about the signature).
    subject: str | None = None
    #: The header's ``kid``.
    kid: str | None = None
    #: The token's ``aud`` (a JSON array is shown as its JSON text).
    audience: str | None = None
    #: The audience the verifier expected.
    expected_audience: str | None = None
    #: The token's ``exp``, ``iat`` and ``nbf`` (NumericDates), when integers.
    expires: int | None = None
    issued_at: int | None = None
    not_before: int | None = None
    #: The verifier's time, leeway and lifetime cap (seconds).
    now: float | None = None
    leeway: float | None = None
    max_lifetime: float | None = None

    _FIELDS: Final = (
        "subject",
        "kid",
        "audience",
        "expected_audience",
        "expires",
        "issued_at",
        "not_before",
        "now",
        "leeway",
        "max_lifetime",
    )

    def details(self) -> dict[str, str | int | float]:
        """The fields that are known, by name (for structured logging)."""
        out: dict[str, str | int | float] = {}
        for name in self._FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def explain(self) -> str:
        """One log-safe line: the claimed ``sub``, ``kid``, audiences and times against now."""
        parts: list[str] = []
        if self.subject is not None:
            parts.append(f"sub={self.subject!r}")
        if self.kid is not None:
            parts.append(f"kid={self.kid!r}")
        if self.audience is not None:
            parts.append(f"aud={self.audience!r}")
        if self.expected_audience is not None:
            parts.append(f"expected aud={self.expected_audience!r}")
        now = self.now
        for name, value in (
            ("exp", self.expires),
            ("iat", self.issued_at),
            ("nbf", self.not_before),
        ):
            if value is not None:
                parts.append(f"{name}={value}" + ("" if now is None else f" ({_ago(value, now)})"))
        if now is not None:
            parts.append(f"now={now:.0f}")
        if self.leeway is not None:
            parts.append(f"leeway={self.leeway:g} s")
        if self.max_lifetime is not None and getattr(self, "code", None) == "lifetime":
            parts.append(f"max_lifetime={self.max_lifetime:g} s")
        return " ".join(parts)


class UnknownIdentityError(TokenContext, SpiffileError):
    """A well-formed SPIFFE ID has no entry in the current bundle.

    Kept distinct from :class:`InvalidTokenError` (PROFILE.md §6.1 step 2):
    "we do not know you" is an operational fact (a bundle not yet propagated, a
    revoked service), not evidence of a forged token.
    """

    code = "unknown_identity"


class InvalidTokenError(TokenContext, SpiffileError):
    """A token was rejected.  Subclasses say why; ``code`` names the reason."""

    code = "invalid_token"


class MalformedTokenError(InvalidTokenError):
    """Not a compact JWS of canonical base64url segments holding JSON objects."""

    code = "malformed"


class TokenTooLargeError(InvalidTokenError):
    """Longer than the profile's size cap; rejected before any decoding."""

    code = "too_large"


class AlgorithmError(InvalidTokenError):
    """The header names an algorithm other than ES256."""

    code = "algorithm"


class HeaderError(InvalidTokenError):
    """A header member is missing, unknown or of the wrong value."""

    code = "header"


class SignatureError(InvalidTokenError):
    """No key bound to the token's ``sub`` produced the signature."""

    code = "signature"


class AudienceError(InvalidTokenError):
    """``aud`` is missing, not a single string, or not the expected audience."""

    code = "audience"


class ExpiredTokenError(InvalidTokenError):
    """``exp`` lies in the past, beyond the leeway."""

    code = "expired"


class NotYetValidError(InvalidTokenError):
    """``nbf`` or ``iat`` lies in the future, beyond the leeway."""

    code = "not_yet_valid"


class ClaimsError(InvalidTokenError):
    """A claim is missing or has the wrong type (``sub``, ``exp``, ``iat``, ``nbf``)."""

    code = "claims"


class LifetimeError(InvalidTokenError):
    """The token stays valid longer than the verifier's lifetime cap allows."""

    code = "lifetime"


class ReplayedTokenError(InvalidTokenError):
    """A one-time token came again (:class:`spiffile.replay.ReplayCache`, PROFILE.md §10)."""

    code = "replayed"


class ReplayCacheFullError(InvalidTokenError):
    """The replay cache holds its maximum of unexpired tokens: new ones are refused."""

    code = "replay_cache_full"


class TokenUnavailableError(SpiffileError):
    """No token can be served for that audience now (spiffe-helper: none configured, or expired)."""

    code = "token_unavailable"


class ConfigurationError(SpiffileError):
    """The environment or arguments do not say where the identity files are."""

    code = "configuration"


class ProvisionError(SpiffileError):
    """A provisioning operation on an identity root cannot be carried out."""

    code = "provision"


# Provisioning errors (spiffile.provision): each names one way a producer's
# request cannot be carried out, so the CLI and scripts can tell them apart.


class RootNotFoundError(ProvisionError):
    """The path is not an identity root (no ``bundle.json``); run ``init`` first."""

    code = "root_not_found"


class TrustDomainMismatchError(ProvisionError):
    """``init`` on an existing root named a different trust domain than its bundle's."""

    code = "trust_domain_mismatch"


class InvalidServiceNameError(ProvisionError):
    """A service name is not a SPIFFE ID path, or would collide with the root's own files."""

    code = "invalid_service_name"


class ServiceNotFoundError(ProvisionError):
    """The root holds no service of that name (no key file)."""

    code = "service_not_found"


class UnknownKeyError(ProvisionError):
    """No key with that ``kid`` is bound to the service (or staged for it)."""

    code = "unknown_key"


class KeyInUseError(ProvisionError):
    """Refused: the key is the service's current signing key (rotate first)."""

    code = "key_in_use"


class NoStagedRotationError(ProvisionError):
    """``commit`` without a staged rotation: there is no ``key.next.pem`` to switch to."""

    code = "no_staged_rotation"


class LockTimeoutError(ProvisionError):
    """Another producer held the root's lock for longer than the timeout."""

    code = "lock_timeout"


class ExportError(ProvisionError):
    """The service's files cannot be exported in the requested format."""

    code = "export"


class NestedServiceError(ProvisionError):
    """Refused: the service's directory would contain, or sit inside, another service's.

    Mounting or sharing the outer directory would hand out the inner
    service's private key (PROFILE.md §3.4).
    """

    code = "nested_service"


class PruneTooSoonError(ProvisionError):
    """Refused: the key being retired may still have valid tokens in flight (PROFILE.md §8.3)."""

    code = "prune_too_soon"


class UnsafeRootError(ProvisionError):
    """A file or directory of an identity root is not safe to use.

    A link where a file or directory belongs, something that is not a regular
    file, or a directory that others could write (group- or world-writable, or
    owned by another user): the producer refuses to read or write through it,
    because whoever controls it could redirect a key (PROFILE.md §10).
    """

    code = "unsafe_root"


__all__ += [
    "ExportError",
    "InvalidServiceNameError",
    "KeyInUseError",
    "LockTimeoutError",
    "NestedServiceError",
    "NoStagedRotationError",
    "PruneTooSoonError",
    "RootNotFoundError",
    "ServiceNotFoundError",
    "TrustDomainMismatchError",
    "UnknownKeyError",
    "UnsafeRootError",
]


# X.509-SVID errors (spiffile.svid.x509, X.509-SVID §4 and §5): one class per
# rule a certificate chain can break, so that a refused TLS peer says why.


class InvalidX509SvidError(SpiffileError):
    """An X.509-SVID (or its chain) was rejected.  Subclasses say why; ``code`` names the rule."""

    code = "invalid_x509_svid"


class X509MalformedError(InvalidX509SvidError):
    """Not PEM/DER certificates, no certificate at all, or more than the caps allow."""

    code = "x509_malformed"


class X509UriSanError(InvalidX509SvidError):
    """The leaf does not carry exactly one URI SAN (X.509-SVID §2)."""

    code = "x509_uri_san"


class X509SpiffeIdError(InvalidX509SvidError):
    """The leaf's URI SAN is not a valid SPIFFE ID (X.509-SVID §2)."""

    code = "x509_spiffe_id"


class X509LeafCaError(InvalidX509SvidError):
    """The leaf sets the basic constraints ``cA`` flag, or lacks the extension (X.509-SVID §4.1)."""

    code = "x509_leaf_ca"


class X509KeyUsageError(InvalidX509SvidError):
    """The leaf lacks ``digitalSignature`` or sets ``keyCertSign``/``cRLSign`` (X.509-SVID §4.3)."""

    code = "x509_key_usage"


class X509SigningCertError(InvalidX509SvidError):
    """A certificate after the leaf is not a CA allowed to sign certificates (X.509-SVID §4.1)."""

    code = "x509_signing_cert"


class X509ExpiredError(InvalidX509SvidError):
    """A certificate of the chain is past its ``notAfter``."""

    code = "x509_expired"


class X509NotYetValidError(InvalidX509SvidError):
    """A certificate of the chain is before its ``notBefore``."""

    code = "x509_not_yet_valid"


class X509UnknownTrustDomainError(InvalidX509SvidError):
    """No X.509 authority is known for the leaf's trust domain (X.509-SVID §5)."""

    code = "x509_unknown_trust_domain"


class X509UntrustedError(InvalidX509SvidError):
    """The chain does not end at an authority of the leaf's trust domain (X.509-SVID §5)."""

    code = "x509_untrusted"


class X509KeyMismatchError(InvalidX509SvidError):
    """The private key file does not hold the key of the SVID's leaf certificate."""

    code = "x509_key_mismatch"


class PeerNotAllowedError(SpiffileError):
    """A verified TLS peer's SPIFFE ID is refused by the authorizer."""

    code = "peer_not_allowed"


__all__ += [
    "InvalidX509SvidError",
    "PeerNotAllowedError",
    "X509ExpiredError",
    "X509KeyMismatchError",
    "X509KeyUsageError",
    "X509LeafCaError",
    "X509MalformedError",
    "X509NotYetValidError",
    "X509SigningCertError",
    "X509SpiffeIdError",
    "X509UnknownTrustDomainError",
    "X509UntrustedError",
    "X509UriSanError",
]

# TLSPeerRejectedError is also an ssl.SSLCertVerificationError, and importing
# ssl costs more than the rest of `import spiffile` together (OpenSSL is
# loaded), which every `spiffile --help` would pay.  So the class lives in
# spiffile._tls_errors and is looked up here on first use (PEP 562); it is
# public all the same, at the top level too.
if TYPE_CHECKING:
    from spiffile._tls_errors import TLSPeerRejectedError as TLSPeerRejectedError

    __all__ += ["TLSPeerRejectedError"]

#: Error classes defined on first use, and the module each comes from.
LAZY_ERRORS: Final = {"TLSPeerRejectedError": "spiffile._tls_errors"}


def __getattr__(name: str) -> Any:
    module = LAZY_ERRORS.get(name)
    if module is None:
        raise AttributeError(f"module 'spiffile.errors' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
