"""The pure X.509-SVID core: parse and verify certificate chains at an explicit ``now``.

No I/O and no clock (the shell, :mod:`spiffile.tls`, passes ``now``).  An
X.509-SVID is a certificate chain whose leaf names one SPIFFE ID in its only
URI SAN; it is trusted when the chain ends at an X.509 authority of *that ID's*
trust domain (X.509-SVID §5).

Who checks what:

- pyca/cryptography's verifier (``cryptography.x509.verification``) builds the
  path from the leaf through the presented intermediates to the trust domain's
  authorities and checks every signature, validity window, path length, name
  constraint and unknown critical extension.  Its client verifier is used
  because it checks no host name; its default (Web PKI) extension policies are
  replaced, since a SPIFFE leaf need not carry an extended key usage or a DNS
  name, while the rule that every issuer is a CA stays enforced here.
- The SPIFFE rules the Web PKI does not have are ours, checked first so that
  each broken rule raises its own error (one class per rule, stable ``code``):
  exactly one URI SAN holding a valid SPIFFE ID with a path (X.509-SVID §2); the leaf is
  not a CA, asserts ``digitalSignature`` and neither ``keyCertSign`` nor
  ``cRLSign`` (X.509-SVID §4.1, §4.3); every certificate after the leaf is a CA
  with ``keyCertSign`` (X.509-SVID §4.1); the authorities used are only those
  of the leaf's trust domain (X.509-SVID §5).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification

from spiffile.errors import (
    InvalidKeyError,
    InvalidSpiffeIdError,
    X509ExpiredError,
    X509KeyMismatchError,
    X509KeyUsageError,
    X509LeafCaError,
    X509MalformedError,
    X509NotYetValidError,
    X509SigningCertError,
    X509SpiffeIdError,
    X509UnknownTrustDomainError,
    X509UntrustedError,
    X509UriSanError,
)
from spiffile.spiffe_id import SpiffeId

__all__ = [
    "MAX_AUTHORITIES",
    "MAX_CHAIN_CERTIFICATES",
    "MAX_PEM_BYTES",
    "Authorities",
    "SvidPrivateKey",
    "X509Svid",
    "load_certificates",
    "load_private_key",
    "parse_svid",
    "spiffe_id_of",
    "verify_at",
]

#: A PEM file of certificates or a key larger than this is refused before parsing.
MAX_PEM_BYTES: Final = 1024 * 1024
#: At most this many certificates in an SVID chain (leaf and intermediates).
MAX_CHAIN_CERTIFICATES: Final = 16
#: At most this many authorities in one trust domain's bundle.
MAX_AUTHORITIES: Final = 1024
#: Longest path the verifier builds, authority included.
_MAX_CHAIN_DEPTH: Final = MAX_CHAIN_CERTIFICATES

#: Private keys an X.509-SVID may use (what SPIRE and spiffe-helper write).
SvidPrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
#: The X.509 authorities of each trust domain, by trust domain name.
Authorities: TypeAlias = Mapping[str, Sequence[x509.Certificate]]

_PEM_CERT_BEGIN: Final = b"-----BEGIN CERTIFICATE-----"
_PEM_BEGIN: Final = b"-----BEGIN "


@dataclass(frozen=True)
class X509Svid:
    """An X.509-SVID: its SPIFFE ID and its chain (leaf first, as presented).

    After :func:`verify_at`, ``chain`` is the verified path: leaf, the
    intermediates used, and the trust domain's authority last.
    """

    id: SpiffeId
    chain: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        """The certificate that names :attr:`id`."""
        return self.chain[0]

    @property
    def expires_at(self) -> float:
        """When the leaf stops being valid (seconds since the epoch)."""
        return self.chain[0].not_valid_after_utc.timestamp()

    def __repr__(self) -> str:
        return f"X509Svid({str(self.id)!r}, expires_at={self.expires_at:.0f})"


def load_certificates(
    data: bytes, *, limit: int = MAX_CHAIN_CERTIFICATES
) -> tuple[x509.Certificate, ...]:
    """Parse PEM text holding only ``CERTIFICATE`` blocks (at least one, at most *limit*).

    Text outside the blocks (comments, as ``openssl`` writes them) is
    allowed; any other PEM block type (a private key pasted into a
    certificate file) is refused rather than skipped.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("certificates must be bytes")
    data = bytes(data)
    if len(data) > MAX_PEM_BYTES:
        raise X509MalformedError(f"certificate PEM larger than {MAX_PEM_BYTES} bytes")
    blocks = data.count(_PEM_BEGIN)
    if blocks != data.count(_PEM_CERT_BEGIN):
        raise X509MalformedError("PEM holds a block that is not a CERTIFICATE")
    if blocks == 0:
        raise X509MalformedError("no PEM CERTIFICATE block found")
    if blocks > limit:
        raise X509MalformedError(f"more than {limit} certificates")
    try:
        certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise X509MalformedError(f"certificate PEM does not parse: {exc}") from None
    if len(certificates) != blocks:
        raise X509MalformedError("a CERTIFICATE block does not parse")
    return certificates


def load_private_key(data: bytes) -> SvidPrivateKey:
    """Parse an unencrypted PKCS#8 PEM private key (EC or RSA), as ``svid_key.pem`` holds."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("a private key must be bytes")
    data = bytes(data)
    if len(data) > MAX_PEM_BYTES:
        raise InvalidKeyError(f"key PEM larger than {MAX_PEM_BYTES} bytes")
    if data.count(_PEM_BEGIN) != 1 or b"-----BEGIN PRIVATE KEY-----" not in data:
        raise InvalidKeyError("the SVID key file must hold exactly one PKCS#8 'PRIVATE KEY' block")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The reason text could echo key bytes: say only what kind of failure.
        raise InvalidKeyError("the SVID key is not an unencrypted PKCS#8 PEM key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise InvalidKeyError(f"unsupported SVID key type {type(key).__name__}")
    return key


def spiffe_id_of(certificate: x509.Certificate) -> SpiffeId:
    """The SPIFFE ID in *certificate*'s only URI SAN (X.509-SVID §2)."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise X509UriSanError("the certificate has no subject alternative name") from None
    except ValueError as exc:  # A duplicate or malformed extension.
        raise X509MalformedError(f"certificate extensions do not parse: {exc}") from None
    uris = extension.value.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise X509UriSanError(f"the certificate has {len(uris)} URI SANs, an SVID has exactly one")
    try:
        return SpiffeId.parse(uris[0])
    except InvalidSpiffeIdError as exc:
        raise X509SpiffeIdError(f"the URI SAN is not a SPIFFE ID: {exc}") from None


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise X509MalformedError(f"certificate extensions do not parse: {exc}") from None


def _check_leaf(leaf: x509.Certificate) -> SpiffeId:
    spiffe_id = spiffe_id_of(leaf)
    constraints = _extension(leaf, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints):
        # X.509-SVID §4.1 says the leaf *sets* cA to false (py-spiffe agrees).
        raise X509LeafCaError(f"the leaf of {spiffe_id} has no basic constraints (cA=false)")
    if constraints.ca:
        raise X509LeafCaError(f"the leaf of {spiffe_id} is a CA certificate")
    if not spiffe_id.path:
        # X.509-SVID §2: a trust domain's own ID names no workload.
        raise X509SpiffeIdError(f"the leaf names the trust domain {spiffe_id}, not a workload")
    usage = _extension(leaf, x509.KeyUsage)
    if not isinstance(usage, x509.KeyUsage):
        raise X509KeyUsageError(f"the leaf of {spiffe_id} has no key usage extension")
    if not usage.digital_signature:
        raise X509KeyUsageError(f"the leaf of {spiffe_id} does not assert digitalSignature")
    if usage.key_cert_sign:
        raise X509KeyUsageError(f"the leaf of {spiffe_id} asserts keyCertSign")
    if usage.crl_sign:
        raise X509KeyUsageError(f"the leaf of {spiffe_id} asserts cRLSign")
    return spiffe_id


def _check_signing(certificate: x509.Certificate, position: int) -> None:
    constraints = _extension(certificate, x509.BasicConstraints)
    if not isinstance(constraints, x509.BasicConstraints) or not constraints.ca:
        raise X509SigningCertError(f"certificate {position} of the chain is not a CA")
    usage = _extension(certificate, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        raise X509SigningCertError(f"certificate {position} of the chain lacks keyCertSign")


def _check_window(certificate: x509.Certificate, position: int, now: datetime.datetime) -> None:
    what = "the leaf" if position == 0 else f"certificate {position} of the chain"
    if now < certificate.not_valid_before_utc:
        raise X509NotYetValidError(
            f"{what} is valid from {certificate.not_valid_before_utc.isoformat()}"
        )
    if now > certificate.not_valid_after_utc:
        raise X509ExpiredError(f"{what} expired at {certificate.not_valid_after_utc.isoformat()}")


def _ca_policy() -> verification.ExtensionPolicy:
    def is_ca(
        _policy: verification.Policy,
        _certificate: x509.Certificate,
        value: x509.BasicConstraints | None,
    ) -> None:
        if value is None or not value.ca:
            raise ValueError("an issuer must be a CA")

    def may_sign(
        _policy: verification.Policy, _certificate: x509.Certificate, value: x509.KeyUsage | None
    ) -> None:
        if value is not None and not value.key_cert_sign:
            raise ValueError("an issuer must assert keyCertSign")

    return (
        verification.ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, is_ca)
        .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, may_sign)
    )


# Built once: the policies are immutable and their validators pure.
_CA_POLICY: Final = _ca_policy()
_EE_POLICY: Final = verification.ExtensionPolicy.permit_all()


def _as_datetime(now: float) -> datetime.datetime:
    if not isinstance(now, (int, float)) or isinstance(now, bool):
        raise TypeError("now must be seconds since the epoch")
    if not math.isfinite(now):
        # Fail closed: a NaN would make every window comparison false.
        raise ValueError("now must be finite")
    return datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)


def _as_chain(chain: bytes | Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    if isinstance(chain, (bytes, bytearray, memoryview)):
        return load_certificates(bytes(chain))
    certificates = tuple(chain)
    if not certificates:
        raise X509MalformedError("the chain holds no certificate")
    if len(certificates) > MAX_CHAIN_CERTIFICATES:
        raise X509MalformedError(f"more than {MAX_CHAIN_CERTIFICATES} certificates")
    for certificate in certificates:
        if not isinstance(certificate, x509.Certificate):
            raise TypeError("chain must hold cryptography.x509.Certificate objects")
    return certificates


def verify_at(
    chain: bytes | Iterable[x509.Certificate],
    authorities: Authorities,
    now: float,
) -> X509Svid:
    """Verify an X.509-SVID chain at time *now*; return it with its verified path.

    *chain* is the leaf followed by intermediates (PEM bytes or certificate
    objects), as a peer presents it.  *authorities* maps each trust domain to
    its X.509 authorities; only those of the leaf's trust domain are used.
    Raises the :class:`~spiffile.errors.InvalidX509SvidError` subclass naming
    the first rule broken (X.509-SVID §5).
    """
    moment = _as_datetime(now)
    certificates = _as_chain(chain)
    leaf, intermediates = certificates[0], certificates[1:]
    spiffe_id = _check_leaf(leaf)
    for position, certificate in enumerate(intermediates, start=1):
        _check_signing(certificate, position)
    for position, certificate in enumerate(certificates):
        _check_window(certificate, position, moment)
    anchors = authorities.get(spiffe_id.trust_domain)
    if not anchors:
        raise X509UnknownTrustDomainError(
            f"no X.509 authority is known for trust domain {spiffe_id.trust_domain!r}"
        )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(anchors)))
        .time(moment)
        .max_chain_depth(_MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, list(intermediates))
    except verification.VerificationError as exc:
        raise X509UntrustedError(
            f"{spiffe_id} does not chain to an X.509 authority of {spiffe_id.trust_domain!r}: {exc}"
        ) from None
    return X509Svid(spiffe_id, tuple(verified.chain))


def parse_svid(chain_pem: bytes, key_pem: bytes) -> tuple[X509Svid, SvidPrivateKey]:
    """This workload's own X.509-SVID: its chain (shape-checked) and its matching key.

    Trust is the peer's business; here the leaf must follow the SVID rules
    and the key must be the leaf's, so that a half-written rotation (new
    certificate, old key) is refused instead of served.
    """
    certificates = load_certificates(chain_pem)
    spiffe_id = _check_leaf(certificates[0])
    for position, certificate in enumerate(certificates[1:], start=1):
        _check_signing(certificate, position)
    key = load_private_key(key_pem)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, public) != certificates[0].public_key().public_bytes(
        der, public
    ):
        raise X509KeyMismatchError(f"the SVID key does not match the leaf of {spiffe_id}")
    return X509Svid(spiffe_id, certificates), key


def load_authorities(data: bytes) -> tuple[x509.Certificate, ...]:
    """Parse a PEM bundle of X.509 authorities (``svid_bundle.pem``)."""
    return load_certificates(data, limit=MAX_AUTHORITIES)


def authorities_from_document(data: bytes) -> tuple[x509.Certificate, ...]:
    """The X.509 authorities a trust document carries (federation; may be none).

    A SPIFFE bundle (a JWK Set): the first ``x5c`` certificate of each
    ``x509-svid`` entry (SPIFFE Trust Domain and Bundle §4.2.1).  A spiffile
    bundle: its ``x509_authorities`` member (PROFILE.md §13.4).  Both hold
    standard base64 DER.  Anything else carries no X.509 authority.
    """
    from spiffile._wire import WireError, loads_object  # Imported late: JSON is rare here.

    if len(data) > MAX_PEM_BYTES * 4:
        raise X509MalformedError("trust document too large")
    try:
        document = loads_object(data, cap_nesting=False)
    except WireError as exc:
        raise X509MalformedError(f"trust document {exc}") from None
    encoded: list[object] = []
    keys = document.get("keys")
    if isinstance(keys, list):
        for entry in keys:
            if isinstance(entry, dict) and entry.get("use") == "x509-svid":
                chain = entry.get("x5c")
                encoded.append(chain[0] if isinstance(chain, list) and chain else None)
    members = document.get("x509_authorities")
    if isinstance(members, list):
        encoded += members
    if len(encoded) > MAX_AUTHORITIES:
        raise X509MalformedError(f"more than {MAX_AUTHORITIES} X.509 authorities")
    certificates = []
    for item in encoded:
        if not isinstance(item, str):
            raise X509MalformedError("an X.509 authority is not a base64 string")
        try:
            der = base64.b64decode(item, validate=True)
            certificates.append(x509.load_der_x509_certificate(der))
        except (ValueError, binascii.Error):
            raise X509MalformedError("an X.509 authority is not base64 DER") from None
    return tuple(certificates)


__all__ += ["authorities_from_document", "load_authorities"]
