"""SPIFFE bundles: a trust domain's JWT authorities, as the SPIFFE standards write them.

A SPIFFE bundle (SPIFFE Trust Domain and Bundle §4) is a JWK Set whose
``jwt-svid`` keys are authorities for the *whole* trust domain: any of them
may sign a JWT-SVID for any SPIFFE ID of that domain.  That is weaker than a
spiffile bundle, where a key vouches for one identity only (PROFILE.md §12),
so a SPIFFE bundle is only ever consulted for the trust domain it was
configured for.

This module reads what real producers write:

* SPIRE's ``bundle show -format spiffe`` and bundle endpoints: a JWK Set with
  ``x509-svid`` and ``jwt-svid`` entries, ``spiffe_sequence`` and
  ``spiffe_refresh_hint``.  Only ``jwt-svid`` keys verify tokens;
* the SPIRE agent's JWT bundle (``spire-agent api fetch jwt``): a plain JWK
  Set whose keys carry no ``use`` member at all;
* spiffe-helper's ``jwt_bundle.json``: ``{"<trust domain>": "<base64 of the
  JWK Set>"}``, one member per trust domain (see :func:`parse_bundle_map`).

It also writes the other direction: one spiffile identity's keys as a
standard JWT bundle (:func:`spiffe_jwt_bundle`), never a merged set.

A key this reader cannot use (unknown ``use``, a key type or size the
JWT-SVID standard does not allow, a private member) is skipped with one
warning, as the standard asks, so one odd entry never takes a trust domain
down.  Whatever the input, the result is a :class:`SpiffeBundle` or an
:class:`InvalidBundleError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spiffile.bundle.document import Bundle
from spiffile.errors import InvalidBundleError, InvalidSpiffeIdError, UnknownIdentityError
from spiffile.keys import b64url_decode
from spiffile.spiffe_id import SpiffeId, validate_trust_domain

__all__ = [
    "JWT_SVID_ALGORITHMS",
    "MAX_SPIFFE_BUNDLE_BYTES",
    "MIN_RSA_BITS",
    "JwtAuthority",
    "SpiffeBundle",
    "is_bundle_map",
    "parse_bundle_map",
    "spiffe_jwt_bundle",
]

_log = logging.getLogger("spiffile")

#: A SPIFFE bundle is a handful of keys and CA certificates: refuse more before parsing.
MAX_SPIFFE_BUNDLE_BYTES: Final = 4 * 1024 * 1024
#: RSA authorities below this size are skipped (JWT-SVID §3 defers to RFC 7518 §3.3).
MIN_RSA_BITS: Final = 2048
#: RSA moduli above this size are skipped: verifying with them costs more than any
#: producer needs (SPIRE's largest is 4096 bits).
MAX_RSA_BITS: Final = 8192
#: The algorithms a JWT-SVID may use (JWT-SVID §3): never ``none``, never HMAC.
JWT_SVID_ALGORITHMS: Final = frozenset(
    ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512")
)
_RSA_ALGORITHMS: Final = frozenset(a for a in JWT_SVID_ALGORITHMS if a[0] in "RP")
#: EC curve name -> (curve, coordinate bytes, the one algorithm that uses it: RFC 7518 §3.4).
_CURVES: Final[Mapping[str, tuple[ec.EllipticCurve, int, str]]] = {
    "P-256": (ec.SECP256R1(), 32, "ES256"),
    "P-384": (ec.SECP384R1(), 48, "ES384"),
    "P-521": (ec.SECP521R1(), 66, "ES512"),
}
#: Members that make a JWK a private key (RFC 7518 §6.2.2, §6.3.2, §6.4).
_PRIVATE_MEMBERS: Final = frozenset(("d", "p", "q", "dp", "dq", "qi", "oth", "k"))
_JWT_USE: Final = "jwt-svid"
_X509_USE: Final = "x509-svid"


@dataclass(frozen=True)
class JwtAuthority:
    """One ``jwt-svid`` key of a SPIFFE bundle: it may sign for any ID of its trust domain.

    ``algorithms`` are the token ``alg`` values this key may verify: the
    key's type decides them (RSA: RS*/PS*; EC: the one ES* of its curve),
    narrowed to the JWK's own ``alg`` when it names one.
    """

    kid: str
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    algorithms: frozenset[str]
    jwk: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"JwtAuthority(kid={self.kid!r}, algorithms={sorted(self.algorithms)!r})"


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A repeated member name makes a document mean different things to
    # different parsers (RFC 8259 §4): refuse it rather than pick one.
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a member name is repeated")
    return document


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_strict_json: Final = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
)


def load_json_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Strict JSON object (UTF-8, no NaN, no repeated member, size-capped) or InvalidBundleError."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("bundle data must be bytes or str")
    if len(data) > MAX_SPIFFE_BUNDLE_BYTES:
        raise InvalidBundleError(f"{what} is larger than {MAX_SPIFFE_BUNDLE_BYTES} bytes")
    try:
        document = _strict_json.decode(bytes(data).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InvalidBundleError(f"{what} is not valid UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise InvalidBundleError(f"{what} must be a JSON object")
    return document


def _optional_count(document: Mapping[str, Any], name: str) -> int | None:
    value = document.get(name)
    if value is None and name not in document:
        return None
    if type(value) is not int or value < 0:
        raise InvalidBundleError(f"{name!r} must be a non-negative integer")
    return value


def _b64_member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"member {name!r} is missing or not a string")
    try:
        return b64url_decode(value)
    except (ValueError, binascii.Error):
        raise ValueError(f"member {name!r} is not canonical base64url") from None


def _authority(jwk: Mapping[str, Any], kid: str) -> JwtAuthority:
    """Build one authority from a ``jwt-svid`` JWK, or ``ValueError`` saying why it is unusable."""
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise ValueError("it holds private key members")
    kty = jwk.get("kty")
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    if kty == "EC":
        crv = jwk.get("crv")
        if not isinstance(crv, str) or crv not in _CURVES:
            raise ValueError("its curve is not P-256, P-384 or P-521")
        curve, size, algorithm = _CURVES[crv]
        x, y = _b64_member(jwk, "x"), _b64_member(jwk, "y")
        if len(x) != size or len(y) != size:
            raise ValueError(f"its coordinates are not {size} bytes each")
        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
        except ValueError:
            raise ValueError("its point is not on the curve") from None
        algorithms = frozenset((algorithm,))
    elif kty == "RSA":
        n = int.from_bytes(_b64_member(jwk, "n"), "big")
        e = int.from_bytes(_b64_member(jwk, "e"), "big")
        if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
            raise ValueError(f"its modulus is not {MIN_RSA_BITS} to {MAX_RSA_BITS} bits")
        if e < 3 or e % 2 == 0 or e.bit_length() > 64:
            raise ValueError("its public exponent is not an odd number from 3 to 2^64")
        try:
            public_key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise ValueError("it is not a valid RSA public key") from None
        algorithms = _RSA_ALGORITHMS
    else:
        raise ValueError("its key type is not EC or RSA")
    if "alg" in jwk:
        alg = jwk["alg"]
        if not isinstance(alg, str) or alg not in algorithms:
            raise ValueError("its 'alg' does not fit its key type")
        algorithms = frozenset((alg,))
    return JwtAuthority(kid, public_key, algorithms, dict(jwk))


class SpiffeBundle:
    """The JWT authorities of one trust domain, parsed from a SPIFFE bundle (a JWK Set).

    Immutable.  :meth:`authority` finds a key by ``kid``; :attr:`warnings`
    says which entries were skipped and why.  It satisfies the trust-source
    protocol (``spiffile.trust``) for its own trust domain.
    """

    __slots__ = (
        "_authorities",
        "_document",
        "_refresh_hint",
        "_sequence",
        "_trust_domain",
        "_warnings",
    )

    def __init__(
        self,
        trust_domain: str,
        authorities: Mapping[str, JwtAuthority],
        *,
        sequence: int | None = None,
        refresh_hint: int | None = None,
        warnings: tuple[str, ...] = (),
        document: Mapping[str, Any] | None = None,
    ) -> None:
        """Prefer :meth:`parse` or :meth:`from_document`."""
        self._trust_domain = validate_trust_domain(trust_domain)
        self._authorities = dict(authorities)
        self._sequence = sequence
        self._refresh_hint = refresh_hint
        self._warnings = warnings
        self._document = dict(document) if document is not None else None

    @classmethod
    def parse(cls, data: bytes | str, trust_domain: str) -> SpiffeBundle:
        """Parse a SPIFFE bundle (a JWK Set) for *trust_domain*; raise InvalidBundleError.

        The trust domain comes from the caller: a JWK Set does not name it.
        """
        return cls.from_document(load_json_object(data, "SPIFFE bundle"), trust_domain)

    @classmethod
    def from_document(cls, document: object, trust_domain: str) -> SpiffeBundle:
        """Validate a decoded JWK Set (SPIFFE Trust Domain and Bundle §4) for *trust_domain*."""
        try:
            validate_trust_domain(trust_domain)
        except InvalidSpiffeIdError as exc:
            raise InvalidBundleError(f"bad trust domain: {exc}") from None
        if not isinstance(document, dict):
            raise InvalidBundleError("a SPIFFE bundle must be a JSON object")
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise InvalidBundleError("a SPIFFE bundle needs a 'keys' list (a JWK Set)")
        sequence = _optional_count(document, "spiffe_sequence")
        refresh_hint = _optional_count(document, "spiffe_refresh_hint")
        authorities: dict[str, JwtAuthority] = {}
        warnings: list[str] = []
        for index, jwk in enumerate(keys):
            if not isinstance(jwk, dict):
                warnings.append(f"{trust_domain}: key #{index} is not a JSON object")
                continue
            use = jwk.get("use", _JWT_USE)
            if use == _X509_USE:
                continue  # An X.509 authority: not for JWT-SVIDs.
            kid = jwk.get("kid")
            shown = repr(kid[:64]) if isinstance(kid, str) else f"#{index}"
            if use != _JWT_USE:
                warnings.append(f"{trust_domain}: key {shown} has an unknown 'use'; skipped")
                continue
            if not isinstance(kid, str) or not kid:
                # JWT-SVID §3: the kid is how a token names its authority.
                warnings.append(f"{trust_domain}: jwt-svid key #{index} has no 'kid'; skipped")
                continue
            if kid in authorities:
                raise InvalidBundleError(
                    f"{trust_domain}: two jwt-svid keys share the kid {kid[:64]!r}"
                )
            try:
                authorities[kid] = _authority(jwk, kid)
            except ValueError as exc:
                warnings.append(f"{trust_domain}: jwt-svid key {shown} skipped: {exc}")
        for warning in warnings:
            _log.warning("spiffile: %s", warning)
        return cls(
            trust_domain,
            authorities,
            sequence=sequence,
            refresh_hint=refresh_hint,
            warnings=tuple(warnings),
            document=document,
        )

    # -- reading -----------------------------------------------------------------

    @property
    def trust_domain(self) -> str:
        """The trust domain whose authorities these are."""
        return self._trust_domain

    @property
    def sequence(self) -> int | None:
        """``spiffe_sequence``, when the producer wrote one."""
        return self._sequence

    @property
    def refresh_hint(self) -> int | None:
        """``spiffe_refresh_hint`` in seconds, when the producer wrote one."""
        return self._refresh_hint

    @property
    def warnings(self) -> list[str]:
        """Why each skipped entry was skipped."""
        return list(self._warnings)

    def authorities(self) -> list[JwtAuthority]:
        """Every usable JWT authority, in document order."""
        return list(self._authorities.values())

    def authority(self, kid: str) -> JwtAuthority | None:
        """The authority with this ``kid``, or ``None``."""
        return self._authorities.get(kid)

    def __len__(self) -> int:
        return len(self._authorities)

    def __iter__(self) -> Iterator[JwtAuthority]:
        return iter(self._authorities.values())

    def bundle_for(self, trust_domain: str) -> SpiffeBundle:
        """The trust-source protocol (``spiffile.trust``): this bundle, for its own domain only."""
        if trust_domain != self._trust_domain:
            raise UnknownIdentityError(
                f"no trust document for trust domain {trust_domain[:255]!r} "
                f"(this SPIFFE bundle is for {self._trust_domain!r})"
            )
        return self

    def to_document(self) -> dict[str, Any]:
        """The JWK Set of the usable JWT authorities (with sequence and refresh hint)."""
        document: dict[str, Any] = {"keys": [dict(a.jwk) for a in self._authorities.values()]}
        if self._sequence is not None:
            document["spiffe_sequence"] = self._sequence
        if self._refresh_hint is not None:
            document["spiffe_refresh_hint"] = self._refresh_hint
        return document

    def __repr__(self) -> str:
        return f"SpiffeBundle({self._trust_domain!r}, {len(self._authorities)} JWT authorities)"


def is_bundle_map(document: Mapping[str, Any]) -> bool:
    """Whether a decoded document has spiffe-helper's shape: every member's value a string."""
    return bool(document) and all(isinstance(value, str) for value in document.values())


def parse_bundle_map(document: Mapping[str, Any]) -> dict[str, SpiffeBundle]:
    """spiffe-helper's ``jwt_bundle.json``: ``{"<trust domain>": "<base64 of a JWK Set>"}``.

    One :class:`SpiffeBundle` per member (the helper writes the workload's
    own trust domain and every federated one).  The base64 is the standard
    alphabet with padding, as Go's ``base64.StdEncoding`` writes it.
    """
    if not is_bundle_map(document):
        raise InvalidBundleError(
            "a bundle map must be a non-empty JSON object of trust domain -> base64 JWK Set"
        )
    bundles: dict[str, SpiffeBundle] = {}
    for name, encoded in document.items():
        try:
            trust_domain = validate_trust_domain(name)
        except InvalidSpiffeIdError as exc:
            raise InvalidBundleError(f"bundle map: bad trust domain: {exc}") from None
        try:
            raw = base64.b64decode(encoded.encode("ascii"), validate=True)
        except (ValueError, binascii.Error):
            raise InvalidBundleError(
                f"bundle map: the value for {trust_domain!r} is not base64"
            ) from None
        bundles[trust_domain] = SpiffeBundle.parse(raw, trust_domain)
    return bundles


def spiffe_jwt_bundle(bundle: Bundle, spiffe_id: str | SpiffeId) -> dict[str, Any]:
    """A standard SPIFFE JWT bundle (a JWK Set, SPIFFE Trust Domain and Bundle §4) for ONE identity.

    Standard JWT-SVID verifiers (py-spiffe, go-spiffe) accept any key of the
    set for any ``sub``.  Exporting only this identity's keys keeps the
    profile's binding, provided the verifier also checks that the verified
    ``sub`` equals *spiffe_id*: otherwise the holder of these keys could name
    any subject.  A merged, domain-wide set would let any workload mint
    tokens as any other (PROFILE.md §9).
    """
    keys = []
    for key in bundle.keys_for(spiffe_id):
        jwk = {name: key.jwk[name] for name in ("kty", "crv", "x", "y", "kid")}
        jwk["use"] = "jwt-svid"
        jwk["alg"] = "ES256"
        keys.append(jwk)
    return {"keys": keys}
