"""Fuzz targets: one function of ``bytes`` each, with its seeds and its oracle.

Each target feeds its input to the pure core and checks two things:

- only the documented errors come out (anything else propagates, and the
  fuzzer records the input as a crash);
- what is accepted deserves it (an oracle written independently of the code
  under test raises :class:`Finding`).

The keys are derived from fixed scalars so that a corpus saved by a long run
keeps its meaning in the next one: a seed token signed today still verifies
against tomorrow's realm.  Nothing here imports atheris.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spiffile._wire import der_to_raw
from spiffile.bundle import BoundKey, Bundle, lint_bundle
from spiffile.errors import (
    InvalidBundleError,
    InvalidSpiffeIdError,
    InvalidTokenError,
    UnknownIdentityError,
)
from spiffile.keys import kid_for, public_jwk
from spiffile.spiffe_id import MAX_ID_BYTES, MAX_TRUST_DOMAIN_BYTES, SpiffeId
from spiffile.svid import DEFAULT_LEEWAY, DEFAULT_MAX_LIFETIME, Caller, mint, verify
from spiffile.svid._jws import ES256

__all__ = ["TARGETS", "Finding", "Target"]

TRUST_DOMAIN: Final = "example.org"
ORDERS: Final = f"spiffe://{TRUST_DOMAIN}/orders"
BILLING: Final = f"spiffe://{TRUST_DOMAIN}/billing"
LEDGER: Final = f"spiffe://{TRUST_DOMAIN}/ledger"
#: A fixed "now": time is a parameter of the core.
NOW: Final = 1_750_000_000


class Finding(AssertionError):  # noqa: N818 - it is what the fuzzer reports, not an error kind
    """The oracle caught the code under test accepting what it must refuse."""


def _key(scalar: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(scalar, ec.SECP256R1())


# Fixed scalars: any value in [1, n-1] is a valid P-256 private key.
_KEYS: Final[dict[str, tuple[ec.EllipticCurvePrivateKey, ...]]] = {
    ORDERS: (_key(0x0A11CE),),
    BILLING: (_key(0xB0B),),
    LEDGER: (_key(0x1ED6E1), _key(0x1ED6E2)),
}
#: A P-256 key bound to no identity.
_STRANGER: Final = _key(0x5778A6E)
_SIGNERS: Final = [
    (ORDERS, _KEYS[ORDERS][0]),
    (LEDGER, _KEYS[LEDGER][0]),
    (LEDGER, _KEYS[LEDGER][1]),
    (ORDERS, _STRANGER),
]
_BUNDLE: Final = Bundle.from_document(
    {
        "trust_domain": TRUST_DOMAIN,
        "spiffile_version": 1,
        "spiffe_sequence": 7,
        "identities": {
            name: {"keys": [public_jwk(key.public_key()) for key in keys]}
            for name, keys in _KEYS.items()
        },
    }
)
_TOKEN_ERRORS: Final = (InvalidTokenError, UnknownIdentityError)
_POINT: Final = (serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _strict_object(data: bytes) -> dict[str, Any] | None:
    """RFC 8259 object with unique member names, or ``None`` (the oracle's own parser)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            raise ValueError("duplicate member")
        return result

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=unique, parse_constant=no_constants
        )
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _check_time_claims(claims: dict[str, Any]) -> None:
    """What JWT-SVID §3 and PROFILE.md §6.2 demand of an accepted token's dates."""
    expires = claims.get("exp")
    if type(expires) is not int:
        raise Finding(f"accepted a token whose exp is {type(expires).__name__}")
    if not expires > NOW - DEFAULT_LEEWAY:
        raise Finding("accepted an expired token")
    if not expires - NOW <= DEFAULT_MAX_LIFETIME + DEFAULT_LEEWAY:
        raise Finding("accepted a token beyond the lifetime cap")
    for name in ("iat", "nbf"):
        if name in claims:
            value = claims[name]
            if type(value) is not int or not value <= NOW + DEFAULT_LEEWAY:
                raise Finding(f"accepted a token with {name}={value!r}")


# --- token: arbitrary text against a realm ------------------------------------------------------


def _token_seeds() -> list[bytes]:
    seeds = []
    for subject, key in _SIGNERS[:3]:
        kid = kid_for(key.public_key())
        seeds.append(mint(key, kid, subject, BILLING, now=NOW).encode())
        seeds.append(
            mint(key, kid, subject, BILLING, now=NOW, extra_claims={"nbf": NOW, "x": [1]}).encode()
        )
    seeds.append(
        mint(_STRANGER, kid_for(_STRANGER.public_key()), ORDERS, BILLING, now=NOW).encode()
    )
    header = b'{"alg":"none","typ":"JWT"}'
    payload = json.dumps({"sub": ORDERS, "aud": BILLING, "exp": NOW + 60}).encode()
    seeds.append(_b64(header) + b"." + _b64(payload) + b".")
    return seeds


_MINTED: Final = {seed.rpartition(b".")[0].decode() for seed in _token_seeds()[:6]}


def check_token(data: bytes) -> None:
    """Any text as a token: only token errors, and nothing accepted that no bound key signed.

    The oracle: an accepted token's signing input must be one the realm's
    real keys signed for BILLING (the seeds); a mutation of it is accepted
    only if it leaves header and payload intact.
    """
    token = data.decode("latin-1")
    try:
        caller = verify(token, _BUNDLE, audience=BILLING, now=NOW)
    except _TOKEN_ERRORS:
        return
    if not isinstance(caller, Caller):
        raise Finding(f"verify returned {type(caller).__name__}")
    if token.rpartition(".")[0] not in _MINTED:
        raise Finding("accepted a token whose header and payload no bound key signed")


# --- signed claims: any header and payload, really signed ----------------------------------------


def _signed_claims_seeds() -> list[bytes]:
    seeds = []
    for index, (subject, key) in enumerate(_SIGNERS):
        header = json.dumps({"alg": "ES256", "kid": kid_for(key.public_key()), "typ": "JWT"})
        claims = {"sub": subject, "aud": BILLING, "iat": NOW, "exp": NOW + 60}
        seeds.append(bytes([index]) + header.encode() + b"\x00" + json.dumps(claims).encode())
    seeds.append(b"\x00" + b'{"alg":"ES256"}\x00' + b'{"sub":"spiffe://example.org/orders"}')
    return seeds


def check_signed_claims(data: bytes) -> None:
    """Any header and payload bytes, signed by a real key: the claim rules alone must hold.

    Input: one byte choosing the signer (three bound keys and one stranger),
    then ``header NUL payload``.  The signature is always valid over what is
    sent, so everything the verifier rejects here it rejects for the header
    or the claims (JWT-SVID §3, PROFILE.md §6.1).
    """
    if not data:
        return
    subject, key = _SIGNERS[data[0] % len(_SIGNERS)]
    header, _, payload = data[1:].partition(b"\x00")
    signing_input = _b64(header) + b"." + _b64(payload)
    signature = der_to_raw(key.sign(signing_input, ES256))
    token = (signing_input + b"." + _b64(signature)).decode("ascii")
    try:
        caller = verify(token, _BUNDLE, audience=BILLING, now=NOW)
    except _TOKEN_ERRORS:
        return
    if key is _STRANGER:
        raise Finding("accepted a token signed by a key bound to no identity")
    fields = _strict_object(header)
    if fields is None or fields.get("alg") != "ES256" or not set(fields) <= {"alg", "kid", "typ"}:
        raise Finding("accepted a token whose header is not a strict ES256 JOSE header")
    claims = _strict_object(payload)
    if claims is None:
        raise Finding("accepted a token whose payload is not a strict JSON object")
    if claims.get("sub") != subject or str(caller.id) != subject:
        raise Finding(f"accepted a token as {str(caller.id)!r}, signed by {subject!r}'s key")
    if claims.get("aud") != BILLING:
        raise Finding("accepted a token for another audience")
    _check_time_claims(claims)


# --- bundle documents ----------------------------------------------------------------------------


def _bundle_seeds() -> list[bytes]:
    jwk = public_jwk(_KEYS[ORDERS][0].public_key())
    return [
        _BUNDLE.to_json(),
        Bundle.empty(TRUST_DOMAIN).to_json(),
        json.dumps(
            {
                "trust_domain": TRUST_DOMAIN,
                "spiffile_version": 1,
                "identities": {
                    ORDERS: {"keys": [jwk, {**jwk, "kid": "other"}]},
                    BILLING: {"keys": [{**jwk, "d": "AAAA"}]},
                    "spiffe://other.org/x": {"keys": []},
                    LEDGER: [],
                },
            },
            indent=1,
        ).encode(),
    ]


def _key_facts(keys: tuple[BoundKey, ...]) -> list[tuple[str, bytes]]:
    return sorted((key.kid, key.public_key.public_bytes(*_POINT)) for key in keys)


def check_bundle(data: bytes) -> None:
    """Any bytes as a bundle: only bundle errors; what parses survives its own serialization."""
    problems = lint_bundle(data)
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        raise Finding("lint_bundle returned something other than a list of messages")
    try:
        bundle = Bundle.parse(data)
    except InvalidBundleError:
        if not problems:
            raise Finding("lint_bundle passed a document the reader refuses") from None
        return
    bound: dict[str, list[tuple[str, bytes]]] = {}
    for spiffe_id in bundle.identities():
        if not spiffe_id.member_of(bundle.trust_domain):
            raise Finding(f"bundle binds {str(spiffe_id)!r} outside its trust domain")
        try:
            keys = bundle.keys_for(spiffe_id)
        except UnknownIdentityError:
            continue  # A malformed entry is skipped (PROFILE.md §4.3).
        if not keys:
            raise Finding(f"{str(spiffe_id)!r} is listed with no usable key")
        bound[str(spiffe_id)] = _key_facts(keys)
    again = Bundle.parse(bundle.to_json())
    if again.trust_domain != bundle.trust_domain or again.sequence != bundle.sequence:
        raise Finding("trust domain or sequence changed through to_json")
    for name, expected in bound.items():
        if _key_facts(again.keys_for(name)) != expected:
            raise Finding(f"keys of {name!r} changed through to_json")


# --- SPIFFE IDs ----------------------------------------------------------------------------------

_TRUST_DOMAIN_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_SEGMENT_CHARACTERS: Final = _TRUST_DOMAIN_CHARACTERS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _reference_split(text: str) -> tuple[str, str] | None:
    """The SPIFFE-ID standard's grammar (§2.1, §2.2) with the profile's length caps, by hand."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return None
    if not text.startswith("spiffe://"):
        return None
    trust_domain, slash, path = text[len("spiffe://") :].partition("/")
    if not trust_domain or len(trust_domain) > MAX_TRUST_DOMAIN_BYTES:
        return None
    if not set(trust_domain) <= _TRUST_DOMAIN_CHARACTERS:
        return None
    if not slash:
        return trust_domain, ""
    for segment in path.split("/"):
        if segment in ("", ".", "..") or not set(segment) <= _SEGMENT_CHARACTERS:
            return None
    return trust_domain, "/" + path


def _spiffe_id_seeds() -> list[bytes]:
    return [
        b"spiffe://example.org",
        b"spiffe://example.org/a/b/c.d_e-f",
        b"spiffe://ex-ample_2.org/UPPER.case",
        b"spiffe://example.org/a/../b",
        b"spiffe://Example.org/x",
        b"spiffe://example.org/%41",
        "spiffe://example.org/\u0130".encode(),
    ]


def check_spiffe_id(data: bytes) -> None:
    """Any text as a SPIFFE ID: accepted exactly when the standard's grammar accepts it."""
    text = data.decode("utf-8", "surrogateescape")
    expected = _reference_split(text)
    try:
        parsed = SpiffeId.parse(text)
    except InvalidSpiffeIdError:
        if expected is not None:
            raise Finding(f"refused the valid SPIFFE ID {text!r}") from None
        return
    if expected is None:
        raise Finding(f"accepted the invalid SPIFFE ID {text!r}")
    if (parsed.trust_domain, parsed.path, str(parsed)) != (*expected, text):
        raise Finding(f"parsed {text!r} into {parsed.trust_domain!r} + {parsed.path!r}")
    if SpiffeId.from_parts(*expected) != parsed or hash(SpiffeId(text)) != hash(parsed):
        raise Finding(f"{text!r} is not equal to itself rebuilt from its parts")


# --- canary ------------------------------------------------------------------------------------


def check_canary(data: bytes) -> None:
    """A planted bug the fuzzer finds in a moment: proves that a finding fails the run."""
    if data[:4] == b"FUZZ":
        raise Finding("the canary found its planted bug")


# --- registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A fuzz target: its check, the seeds it starts from, the longest input worth trying."""

    name: str
    check: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    max_len: int


TARGETS: Final = {
    target.name: target
    for target in (
        Target("token", check_token, _token_seeds, 4096),
        Target("signed-claims", check_signed_claims, _signed_claims_seeds, 2048),
        Target("bundle", check_bundle, _bundle_seeds, 8192),
        Target("spiffe-id", check_spiffe_id, _spiffe_id_seeds, 2300),
        # Not run unless named: the driver's own test.
        Target("_canary", check_canary, lambda: [b"F"], 16),
    )
}
