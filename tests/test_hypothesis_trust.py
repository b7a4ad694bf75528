"""Property tests for SPIFFE bundles and trust sources: arbitrary input raises only our errors.

The same guarantees as the profile's own parser and verifier (tests/test_hypothesis.py):
whatever bytes, JSON or token mutation reaches the SPIFFE-bundle reader, the
trust-document recogniser or the verifier under SPIFFE-bundle trust, the only
exceptions are the documented ones, and a changed token is never accepted.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spiffeforge import SpiffeRealm, authority
from tokenforge import BILLING, NOW, ORDERS, Forge, make_realm

from spiffile.bundle.spiffe import SpiffeBundle, parse_bundle_map
from spiffile.errors import InvalidBundleError, InvalidTokenError, UnknownIdentityError
from spiffile.svid import verify
from spiffile.trust import TrustSet, parse_trust_document

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKEN_ERRORS = (InvalidTokenError, UnknownIdentityError)

SPIRE = SpiffeRealm(
    authorities=[authority("ES256", "e1"), authority("RS256", "r1"), authority("PS384", "p1")]
)
SPIRE_BUNDLE = SpiffeBundle.parse(SPIRE.jwks_bytes(), SPIRE.trust_domain)
REALM = make_realm({ORDERS: 1, BILLING: 1})
TRUST = TrustSet.of(REALM.bundle, SPIRE_BUNDLE)
VALID = [
    SPIRE.token(audience=[BILLING], by=a, alg=alg)
    for a, alg in zip(SPIRE.authorities, ("ES256", "RS256", "PS384"), strict=True)
] + [Forge(REALM).token()]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
jwk_members = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["EC", "RSA", "OKP", "oct"]) | json_scalars,
        "crv": st.sampled_from(["P-256", "P-384", "P-521", "X"]) | json_scalars,
        "kid": st.text(max_size=8) | json_scalars,
        "use": st.sampled_from(["jwt-svid", "x509-svid", "sig"]) | json_scalars,
        "alg": st.sampled_from(["ES256", "RS256", "PS512", "HS256", "none"]) | json_scalars,
        "x": st.sampled_from(["", "AA", SPIRE.jwks()["keys"][0]["x"]]) | json_scalars,
        "y": st.sampled_from(["", "AA", SPIRE.jwks()["keys"][0]["y"]]) | json_scalars,
        "n": st.sampled_from(["", "AQAB", SPIRE.jwks()["keys"][1]["n"]]) | json_scalars,
        "e": st.sampled_from(["", "AQAB", "Aw", "AA"]) | json_scalars,
        "d": json_scalars,
    },
)
jwks_documents = st.fixed_dictionaries(
    {"keys": st.lists(jwk_members | json_values, max_size=4)},
    optional={
        "spiffe_sequence": json_scalars,
        "spiffe_refresh_hint": json_scalars,
    },
)


@SETTINGS
@given(jwks_documents | json_values)
def test_spiffe_bundle_from_any_json_raises_only_invalid_bundle(document: Any) -> None:
    try:
        bundle = SpiffeBundle.from_document(document, "spire.test")
    except InvalidBundleError:
        return
    for item in bundle:
        assert item.algorithms and item.kid
    assert isinstance(bundle.warnings, list)


@SETTINGS
@given(
    st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | jwks_documents.map(lambda d: json.dumps(d).encode())
)
def test_trust_document_of_arbitrary_bytes(data: bytes) -> None:
    try:
        parse_trust_document(data, "spire.test")
    except InvalidBundleError:
        pass


@SETTINGS
@given(
    st.dictionaries(
        st.text(max_size=12),
        st.text(max_size=40)
        | jwks_documents.map(lambda d: base64.b64encode(json.dumps(d).encode()).decode()),
        max_size=3,
    )
    | json_values
)
def test_bundle_map_raises_only_invalid_bundle(document: Any) -> None:
    if not isinstance(document, dict):
        document = {"spire.test": document}
    try:
        parse_bundle_map(document)
    except InvalidBundleError:
        pass


@SETTINGS
@given(st.text(max_size=200) | st.binary(max_size=100) | json_values)
def test_verify_any_value_under_a_trust_set(value: object) -> None:
    try:
        verify(value, TRUST, audience=BILLING, now=NOW)
    except TOKEN_ERRORS:
        return
    raise AssertionError("arbitrary input was accepted")


def mutate(token: str, position: int, replacement: str) -> str:
    index = position % len(token)
    return token[:index] + replacement + token[index + 1 :]


@SETTINGS
@given(
    st.sampled_from(VALID),
    st.integers(min_value=0),
    st.sampled_from([*"ABCDEFabcdef0123456789-_.=+/ ", "", "AA", "é"]),
)
def test_mutated_tokens_are_never_accepted(token: str, position: int, replacement: str) -> None:
    changed = mutate(token, position, replacement)
    if changed == token:
        return
    try:
        caller = verify(changed, TRUST, audience=BILLING, now=NOW)
    except TOKEN_ERRORS:
        return
    # Only a change in the signature's unused trailing bits could keep it valid,
    # and canonical base64url forbids exactly that.
    raise AssertionError(f"a changed token was accepted for {caller.id}")


def test_valid_tokens_verify() -> None:
    for token in VALID:
        assert verify(token, TRUST, audience=BILLING, now=NOW)
