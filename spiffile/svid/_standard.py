"""Compact JWS for JWT-SVIDs under SPIFFE-bundle trust: the nine algorithms of JWT-SVID §3.

The profile's own tokens (ES256 only) go through ``_jws``; a token whose
subject lies in a trust domain served by a SPIFFE bundle may use RS256/384/512,
ES256/384/512 or PS256/384/512 (RFC 7518 §3), and its algorithm must fit the
type of the authority that its ``kid`` names.  The same strictness applies:
canonical base64url, strict JSON, the header allow-list (``alg``, ``kid``,
``typ``) and the nesting cap; ``none`` and HMAC never get past the header.

Signatures are checked with pyca/cryptography's primitives directly rather
than through PyJWT: the token is already split and decoded here, and PyJWT
would decode it again and accept header members the allow-list refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from spiffile import _wire
from spiffile._quote import quote
from spiffile.bundle.spiffe import JWT_SVID_ALGORITHMS, JwtAuthority
from spiffile.errors import AlgorithmError, HeaderError, MalformedTokenError, SignatureError
from spiffile.svid import _jws

__all__ = ["parse", "verify_signature"]

_HEADER_MEMBERS: Final = frozenset(("alg", "kid", "typ"))
_TYPES: Final = ("JWT", "JOSE")
_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
#: ES* signature halves are the curve's coordinate size (RFC 7518 §3.4).
_EC_HALF: Final = {"ES256": 32, "ES384": 48, "ES512": 66}


def check_header(header: dict[str, Any]) -> tuple[str, str]:
    """``(alg, kid)`` of a header under JWT-SVID §3, or the header's own error."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in JWT_SVID_ALGORITHMS:
        shown = quote(alg, 20) if isinstance(alg, str) else _wire.type_name(alg)
        raise AlgorithmError(
            f"algorithm {shown} is not allowed; JWT-SVIDs use RS, ES or PS 256/384/512"
        )
    unknown = header.keys() - _HEADER_MEMBERS
    if unknown:
        # Member names are the sender's text: repr keeps escapes out of logs.
        names = ", ".join(sorted(quote(name, 20) for name in unknown)[:5])
        raise HeaderError(f"header members not allowed: {names}")
    if "typ" in header and header["typ"] not in _TYPES:
        raise HeaderError("header 'typ' must be 'JWT' or 'JOSE'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise HeaderError("header 'kid' is missing or not a non-empty string")
    return alg, kid


@lru_cache(maxsize=512)
def _header(segment: bytes) -> tuple[str, str]:
    """``(alg, kid)`` of an encoded header, cached: a verifier meets the same few
    headers (one per authority) again and again.  Failures raise and are not cached.
    """
    return check_header(_jws.decode_json(_jws.decode_segment(segment), "header", defer_floats=True))


def parse(
    token: str, seen: _jws.Seen | None = None, *, defer_floats: bool = False
) -> tuple[str, str, dict[str, Any], bytes, bytes]:
    """Split and decode once: ``(alg, kid, claims, signing input, raw signature)``.

    The same order as the profile's parse: the compact shape, then the
    header, then the payload and the signature's encoding.  The signature's
    length is checked against the key in :func:`verify_signature`.  *seen*,
    when given, records the ``kid`` and the claims as they are read.  With
    *defer_floats*, as :func:`spiffile.svid._jws.parse`.
    """
    header, payload, signature = _jws.split_compact(token)
    alg, kid = _header(header)
    if seen is not None:
        seen.kid = kid
    claims = _jws.decode_json(_jws.decode_segment(payload), "payload", defer_floats=defer_floats)
    if seen is not None:
        seen.claims = claims
    raw_signature = _jws.decode_segment(signature)
    signing_input = token[: len(header) + 1 + len(payload)].encode("ascii")
    return alg, kid, claims, signing_input, raw_signature


def verify_signature(
    authority: JwtAuthority, alg: str, signing_input: bytes, signature: bytes
) -> None:
    """One signature check by *authority* with *alg*; :class:`SignatureError` unless it holds.

    *alg* must be one the authority allows (its key type, narrowed by its
    JWK's ``alg``): the token names the algorithm, the key decides whether
    that name is acceptable (RFC 8725 §3.1).
    """
    if alg not in authority.algorithms:
        raise AlgorithmError(
            f"algorithm {alg!r} does not fit the key {authority.kid[:64]!r} "
            f"(allowed: {', '.join(sorted(authority.algorithms))})"
        )
    digest = _HASHES[alg[2:]]()
    key = authority.public_key
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            half = _EC_HALF[alg]
            if len(signature) != 2 * half:
                raise MalformedTokenError(f"an {alg} signature must be {2 * half} bytes (r||s)")
            key.verify(_wire.raw_to_der(signature), signing_input, ec.ECDSA(digest))
            return
        if not isinstance(key, rsa.RSAPublicKey):  # pragma: no cover - built by the bundle
            raise SignatureError("unsupported authority key")
        if len(signature) != (key.key_size + 7) // 8:
            raise MalformedTokenError(f"an {alg} signature must be as long as the RSA modulus")
        if alg[0] == "R":
            key.verify(signature, signing_input, padding.PKCS1v15(), digest)
        else:
            # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(signature, signing_input, pss, digest)
    except InvalidSignature:
        raise SignatureError(
            f"signature does not verify with the trust domain's key {authority.kid[:64]!r}"
        ) from None
