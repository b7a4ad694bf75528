"""The pure JWT-SVID core: ``mint`` and ``verify`` over a bundle and an explicit ``now``.

No I/O and no clock: the shell (``identity``) passes ``now``.  ``verify``
follows the profile's verification steps in order (PROFILE.md §6) and parses
a token exactly once.  Any input, however hostile, either yields a
:class:`Caller` or raises :class:`InvalidTokenError` / :class:`UnknownIdentityError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from spiffile import _wire
from spiffile.bundle import BoundKey, Bundle
from spiffile.bundle.spiffe import SpiffeBundle
from spiffile.caller import Caller, TrustKind
from spiffile.errors import (
    AlgorithmError,
    AudienceError,
    ClaimsError,
    ExpiredTokenError,
    InvalidSpiffeIdError,
    InvalidTokenError,
    LifetimeError,
    MalformedTokenError,
    NotYetValidError,
    SignatureError,
    TokenContext,
    TokenTooLargeError,
    UnknownIdentityError,
)
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import _jws, _standard
from spiffile.trust import TrustSource

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_TTL",
    "MAX_TOKEN_BYTES",
    "Caller",
    "mint",
    "verify",
]

#: Reference lifetime of a token (PROFILE.md §5.5).
DEFAULT_TTL: Final = 60
#: Clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (PROFILE.md §6.2).
DEFAULT_LEEWAY: Final = 30
#: Verifier lifetime cap: a token may stay valid at most this long from now.
#: Far above any default-minted token (60 s); pass ``max_lifetime=None`` to lift it.
DEFAULT_MAX_LIFETIME: Final = 3600
#: Tokens longer than this are rejected before any decoding (PROFILE.md §5).
MAX_TOKEN_BYTES: Final = 8192
#: Largest NumericDate accepted: 9999-12-31T23:59:59Z.
MAX_NUMERIC_DATE: Final = 253_402_300_799
#: When no bound key carries the token's ``kid``, try the bound keys only if
#: there are at most this many: a hostile token costs at most two ECDSA checks.
MAX_FALLBACK_KEYS: Final = 2
_RESERVED_CLAIMS: Final = frozenset(("sub", "aud", "exp", "iat"))
#: Longest claimed text an error keeps (PROFILE.md §10: IDs and kids, truncated).
_MAX_FIELD: Final = 200
# What json.dumps(claims, separators=(",", ":")) uses, built once rather than per token.
_CLAIMS_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


def _numeric_date(claims: Mapping[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        if name in claims:
            raise ClaimsError(f"claim {name!r} is null")
        return None
    # JSON integers only: bool is an int subclass in Python, floats are refused
    # (PROFILE.md §5), and absurd values never reach arithmetic.
    if type(value) is not int or not 0 <= value <= MAX_NUMERIC_DATE:
        raise ClaimsError(f"claim {name!r} must be an integer NumericDate")
    return value


def _candidates(keys: tuple[BoundKey, ...], kid: str) -> tuple[BoundKey, ...]:
    for key in keys:
        if key.kid == kid:
            return (key,)
    if len(keys) <= MAX_FALLBACK_KEYS:
        return keys
    raise SignatureError(f"no key bound to the token's subject has kid {kid[:64]!r}")


def verify(
    token: object,
    bundle: TrustSource,
    *,
    audience: str | SpiffeId,
    now: float,
    leeway: float = DEFAULT_LEEWAY,
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
    issuer: str | None = None,
) -> Caller:
    """Verify a JWT-SVID against a trust source at time *now*; return the :class:`Caller`.

    *bundle* is any trust source (``spiffile.trust``): a spiffile
    :class:`Bundle`, a SPIFFE bundle, or a set of them per trust domain.  The
    document of the ``sub``'s trust domain decides the rules: a spiffile
    bundle keeps every rule of profile v0 (PROFILE.md §6); a SPIFFE bundle
    applies the JWT-SVID standard (PROFILE.md §12).  *issuer*, when given,
    must equal the token's ``iss``.

    Raises :class:`InvalidTokenError` (a subclass naming the reason) or
    :class:`UnknownIdentityError` when ``sub`` is a well-formed SPIFFE ID
    that no trust document holds (another trust domain included).
    """
    seen = _jws.Seen()
    try:
        return _verify(token, bundle, audience, now, leeway, max_lifetime, issuer, seen)
    except (InvalidTokenError, UnknownIdentityError) as exc:
        _explain(exc, seen, audience, now, leeway, max_lifetime)
        raise


def _explain(
    exc: TokenContext,
    seen: _jws.Seen,
    audience: str | SpiffeId,
    now: float,
    leeway: float,
    max_lifetime: float | None,
) -> None:
    """Fill in the error's safe fields (PROFILE.md §10): only on the failure path.

    From what the one parse already read (*seen*): the token is never decoded
    a second time, so a hostile token costs no more rejected than the parse
    did.  Nothing it holds is trusted, only shown (truncated, and through
    repr() by :meth:`TokenContext.explain`).  A part not read is left out.
    """
    exc.expected_audience = str(audience)[:_MAX_FIELD]
    exc.now = now
    exc.leeway = leeway
    exc.max_lifetime = max_lifetime
    if seen.kid is not None:
        exc.kid = seen.kid[:_MAX_FIELD]
    claims = seen.claims
    if claims is None:
        return
    subject = claims.get("sub")
    if isinstance(subject, str):
        exc.subject = subject[:_MAX_FIELD]
    token_audience = claims.get("aud")
    if isinstance(token_audience, str):
        exc.audience = token_audience[:_MAX_FIELD]
    elif isinstance(token_audience, list):
        exc.audience = _wire.json_prefix(token_audience, _MAX_FIELD)
    for name, attribute in (("exp", "expires"), ("iat", "issued_at"), ("nbf", "not_before")):
        value = claims.get(name)
        if type(value) is int and 0 <= value <= MAX_NUMERIC_DATE:
            setattr(exc, attribute, value)


def _verify(
    token: object,
    bundle: TrustSource,
    audience: str | SpiffeId,
    now: float,
    leeway: float,
    max_lifetime: float | None,
    issuer: str | None,
    seen: _jws.Seen,
) -> Caller:
    # Step 0: cap and shape, before any decoding.
    if not isinstance(token, str):
        raise MalformedTokenError(f"a token must be a string, not {type(token).__name__}")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenTooLargeError(f"token longer than {MAX_TOKEN_BYTES} bytes")
    if type(bundle) is not Bundle:
        return _verify_source(token, bundle, audience, now, leeway, max_lifetime, issuer, seen)

    # Step 1: header and claims (the compact form split and decoded once).
    # Floats deferred until the signature holds (_wire.DeferredFloat).
    kid, claims, signing_input, der = _jws.parse(token, seen, defer_floats=True)
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise ClaimsError("claim 'sub' is missing or not a string")
    token_audience = claims.get("aud")
    if not isinstance(token_audience, str):
        raise AudienceError("claim 'aud' must be a single string")
    expires = claims.get("exp")
    if type(expires) is not int or not 0 <= expires <= MAX_NUMERIC_DATE:
        # Not the common case: let _numeric_date say what is wrong.
        expires = _numeric_date(claims, "exp")
        if expires is None:
            raise ClaimsError("claim 'exp' is missing")
    # _optional_dates, with the common case (absent, or a plain integer) inline.
    issued = claims.get("iat")
    if type(issued) is not int or not 0 <= issued <= MAX_NUMERIC_DATE:
        issued = _numeric_date(claims, "iat") if "iat" in claims else None
    not_before = claims.get("nbf")
    if type(not_before) is not int or not 0 <= not_before <= MAX_NUMERIC_DATE:
        not_before = _numeric_date(claims, "nbf") if "nbf" in claims else None

    # Step 2: the subject, looked up in the bundle.
    try:
        entry = bundle.lookup(subject)
    except UnknownIdentityError:
        try:
            subject_id = SpiffeId.parse(subject)
        except InvalidSpiffeIdError as exc:
            raise ClaimsError(f"claim 'sub' is not a SPIFFE ID: {exc}") from None
        if subject_id.trust_domain != bundle.trust_domain:
            # Profile step 2: an ID the bundle does not hold is an unknown
            # identity, whatever its trust domain (as the other implementations).
            raise UnknownIdentityError(
                f"claim 'sub' is in trust domain {subject_id.trust_domain!r}, "
                f"not the bundle's {bundle.trust_domain!r}"
            ) from None
        raise

    # Steps 3 and 4: the signature, by a key bound to the subject, with ES256 only.
    for key in _candidates(entry.keys, kid):
        try:
            key.public_key.verify(der, signing_input, _jws.ES256)
        except InvalidSignature:
            continue
        break
    else:
        raise SignatureError(f"signature does not verify with the keys bound to {subject[:200]}")

    expected = audience if isinstance(audience, str) else str(audience)
    if token_audience != expected:
        raise AudienceError("the token is for another audience")
    if not (
        # _check_times's conditions, each stated as what passes: when all
        # hold (the common case) there is nothing for it to raise.
        expires > now - leeway
        and (not_before is None or not_before <= now + leeway)
        and (issued is None or issued <= now + leeway)
        and (max_lifetime is None or expires - now <= max_lifetime + leeway)
        and issuer is None
    ):
        _check_times(claims, expires, issued, not_before, now, leeway, max_lifetime, issuer)

    # Step 5: the verified subject is the caller.
    return Caller(entry.id, _wire.resolve_floats(claims))


def _optional_dates(claims: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """``(iat, nbf)``: each absent, or an integer NumericDate (else :class:`ClaimsError`)."""
    issued = _numeric_date(claims, "iat") if "iat" in claims else None
    not_before = _numeric_date(claims, "nbf") if "nbf" in claims else None
    return issued, not_before


def _check_times(
    claims: Mapping[str, Any],
    expires: int,
    issued: int | None,
    not_before: int | None,
    now: float,
    leeway: float,
    max_lifetime: float | None,
    issuer: str | None,
) -> None:
    """Profile steps 8 and 9, and ``iss`` when asked (PROFILE.md §6.1, JWT-SVID §3).

    One implementation for both trust kinds; each caller decodes ``iat`` and
    ``nbf`` where its own order of checks puts them.
    """
    # Each check states what passes, so that a NaN now, leeway or max_lifetime
    # (which compares false with everything) rejects instead of skipping it.
    if not expires > now - leeway:
        raise ExpiredTokenError("the token has expired")
    if not_before is not None and not not_before <= now + leeway:
        raise NotYetValidError("the token is not valid yet ('nbf' in the future)")
    if issued is not None and not issued <= now + leeway:
        raise NotYetValidError("the token was issued in the future ('iat')")
    if max_lifetime is not None and not expires - now <= max_lifetime + leeway:
        raise LifetimeError(
            f"the token stays valid for more than the verifier's cap of {max_lifetime:g} s"
        )
    if issuer is not None and claims.get("iss") != issuer:
        raise ClaimsError("claim 'iss' is not the expected issuer")


def _verify_source(
    token: str,
    source: TrustSource,
    audience: str | SpiffeId,
    now: float,
    leeway: float,
    max_lifetime: float | None,
    issuer: str | None,
    seen: _jws.Seen,
) -> Caller:
    """:func:`verify` through a trust source: the ``sub``'s trust domain picks the rules.

    The header is checked against every algorithm a JWT-SVID may use before
    the claims are decoded; once the subject's document is known, a spiffile
    bundle narrows that to ES256 and a single-string ``aud`` (profile v0).
    Either way one token costs at most two signature checks.
    """
    alg, kid, claims, signing_input, signature = _standard.parse(token, seen, defer_floats=True)
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise ClaimsError("claim 'sub' is missing or not a string")
    token_audience = claims.get("aud")
    if not isinstance(token_audience, str | list):
        raise AudienceError("claim 'aud' must be a string or an array of strings")
    expires = _numeric_date(claims, "exp")
    if expires is None:
        raise ClaimsError("claim 'exp' is missing")
    try:
        subject_id = SpiffeId.parse(subject)
    except InvalidSpiffeIdError as exc:
        raise ClaimsError(f"claim 'sub' is not a SPIFFE ID: {exc}") from None
    document = source.bundle_for(subject_id.trust_domain)
    expected = audience if isinstance(audience, str) else str(audience)

    if isinstance(document, SpiffeBundle):
        # JWT-SVID standard: a domain authority, named by kid, one check.
        if isinstance(token_audience, list) and (
            not token_audience or not all(isinstance(a, str) for a in token_audience)
        ):
            raise AudienceError("claim 'aud' must be a string or a non-empty array of strings")
        authority = document.authority(kid)
        if authority is None:
            raise SignatureError(
                f"no JWT authority of trust domain {subject_id.trust_domain!r} has kid {kid[:64]!r}"
            )
        _standard.verify_signature(authority, alg, signing_input, signature)
        audiences = token_audience if isinstance(token_audience, list) else (token_audience,)
        if expected not in audiences:
            raise AudienceError("the token is for another audience")
        _check_times(claims, expires, *_optional_dates(claims), now, leeway, max_lifetime, issuer)
        return Caller(subject_id, _wire.resolve_floats(claims), TrustKind.SPIFFE)

    # A spiffile bundle: every rule of profile v0 (PROFILE.md §6.1).
    if alg != "ES256":
        raise AlgorithmError(f"algorithm {alg!r} is not allowed; the profile allows ES256 only")
    if not isinstance(token_audience, str):
        raise AudienceError("claim 'aud' must be a single string")
    if len(signature) != _jws.SIGNATURE_BYTES:
        raise MalformedTokenError("an ES256 signature must be 64 bytes (r||s)")
    entry = document.lookup(subject)
    der = _wire.raw_to_der(signature)
    for key in _candidates(entry.keys, kid):
        try:
            key.public_key.verify(der, signing_input, _jws.ES256)
        except InvalidSignature:
            continue
        break
    else:
        raise SignatureError(f"signature does not verify with the keys bound to {subject[:200]}")
    if token_audience != expected:
        raise AudienceError("the token is for another audience")
    _check_times(claims, expires, *_optional_dates(claims), now, leeway, max_lifetime, issuer)
    return Caller(entry.id, _wire.resolve_floats(claims), TrustKind.SPIFFILE)


def mint(
    private_key: ec.EllipticCurvePrivateKey,
    kid: str,
    subject: str | SpiffeId,
    audience: str | SpiffeId,
    *,
    now: float,
    ttl: int = DEFAULT_TTL,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Sign a JWT-SVID for *subject* to *audience*, valid from *now* for *ttl* seconds.

    *extra_claims* may add claims but never override ``sub``, ``aud``,
    ``exp`` or ``iat``.
    """
    if type(ttl) is not int or ttl <= 0:
        raise ValueError("ttl must be a positive integer number of seconds")
    issued = int(now)
    if extra_claims:
        clash = _RESERVED_CLAIMS.intersection(extra_claims)
        if clash:
            raise ValueError(f"extra_claims may not set {', '.join(sorted(clash))}")
        claims: dict[str, Any] = dict(extra_claims)
        claims["sub"] = str(subject)
        claims["aud"] = str(audience)
        claims["iat"] = issued
        claims["exp"] = issued + ttl
        text = _CLAIMS_ENCODER.encode(claims)
    else:
        # The same text json.dumps gives for {"sub", "aud", "iat", "exp"} with
        # compact separators (tests/svid/test_svid_jwt.py), written directly
        # because json.dumps builds an encoder per call (row "svid.mint").
        text = (
            f'{{"sub":{_wire.json_string(str(subject))},"aud":{_wire.json_string(str(audience))},'
            f'"iat":{issued},"exp":{issued + ttl}}}'
        )
    payload = _wire.b64url_encode(text.encode("utf-8"))
    signing_input = f"{_jws.encoded_header(kid)}.{payload}"
    der = private_key.sign(signing_input.encode("ascii"), _jws.ES256)
    return f"{signing_input}.{_wire.b64url_encode(_wire.der_to_raw(der))}"
