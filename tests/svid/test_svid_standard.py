"""svid.verify under SPIFFE-bundle trust: the JWT-SVID standard's rules; v0's where they apply."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from spiffeforge import ALGORITHMS, SpiffeRealm, authority, jwk_of
from tokenforge import BILLING, NOW, ORDERS, Forge, b64, b64json, compact, make_realm

from spiffile.bundle.spiffe import SpiffeBundle
from spiffile.errors import (
    AlgorithmError,
    AudienceError,
    ClaimsError,
    ExpiredTokenError,
    HeaderError,
    LifetimeError,
    MalformedTokenError,
    NotYetValidError,
    SignatureError,
    TokenTooLargeError,
    UnknownIdentityError,
)
from spiffile.svid import verify
from spiffile.trust import TrustKind, TrustSet

AUD = "spiffe://example.org/billing"


def bundle_of(realm: SpiffeRealm) -> SpiffeBundle:
    return SpiffeBundle.parse(realm.jwks_bytes(), realm.trust_domain)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_jwt_svid_algorithm_verifies_with_its_key_type(alg: str) -> None:
    realm = SpiffeRealm(authorities=[authority(alg)])
    caller = verify(realm.token(), bundle_of(realm), audience=AUD, now=NOW)
    assert str(caller.id) == "spiffe://spire.test/workload"
    assert caller.trust is TrustKind.SPIFFE


@pytest.mark.parametrize(
    ("key_alg", "token_alg"),
    [("ES256", "ES384"), ("ES384", "ES256"), ("RS256", "ES256"), ("ES256", "RS256")],
)
def test_an_algorithm_that_does_not_fit_the_key_is_refused(key_alg: str, token_alg: str) -> None:
    realm = SpiffeRealm(authorities=[authority(key_alg)])
    signer = authority(token_alg, "other")
    # Signed correctly with a key of the token's algorithm, under the kid of the bundle's key.
    token = realm.token(by=signer, header={"kid": realm.authorities[0].kid})
    with pytest.raises(AlgorithmError):
        verify(token, bundle_of(realm), audience=AUD, now=NOW)


def test_jwk_alg_pins_one_algorithm() -> None:
    rsa_authority = authority("RS256", "pinned")
    jwk = rsa_authority.jwk()
    jwk["alg"] = "RS256"
    bundle = SpiffeBundle.from_document({"keys": [jwk]}, "spire.test")
    realm = SpiffeRealm(authorities=[rsa_authority])
    assert verify(realm.token(alg="RS256"), bundle, audience=AUD, now=NOW)
    with pytest.raises(AlgorithmError):
        verify(realm.token(alg="PS256"), bundle, audience=AUD, now=NOW)


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "EdDSA", "RS1", "es256"])
def test_none_hmac_and_others_never_pass_the_header(alg: str) -> None:
    realm = SpiffeRealm()
    token = realm.token(header={"alg": alg})
    with pytest.raises(AlgorithmError):
        verify(token, bundle_of(realm), audience=AUD, now=NOW)


@pytest.mark.parametrize("member", ["jwk", "jku", "x5c", "x5u", "crit", "cty"])
def test_header_allow_list(member: str) -> None:
    realm = SpiffeRealm()
    with pytest.raises(HeaderError):
        verify(realm.token(header={member: "x"}), bundle_of(realm), audience=AUD, now=NOW)


def test_kid_is_required_and_must_name_an_authority() -> None:
    realm = SpiffeRealm()
    bundle = bundle_of(realm)
    with pytest.raises(HeaderError):
        verify(realm.token(header={"kid": ""}), bundle, audience=AUD, now=NOW)
    with pytest.raises(SignatureError, match="no JWT authority"):
        verify(realm.token(header={"kid": "unknown"}), bundle, audience=AUD, now=NOW)


def test_a_key_outside_the_bundle_does_not_verify() -> None:
    realm = SpiffeRealm()
    stranger = authority("ES256", realm.authorities[0].kid)
    with pytest.raises(SignatureError):
        verify(realm.token(by=stranger), bundle_of(realm), audience=AUD, now=NOW)


@pytest.mark.parametrize(
    "audience",
    [AUD, [AUD], ["mys3", AUD], "spiffe://example.org/billing"],
)
def test_aud_string_or_array_containing_the_audience(audience: Any) -> None:
    realm = SpiffeRealm()
    assert verify(realm.token(audience=audience), bundle_of(realm), audience=AUD, now=NOW)


def test_audiences_are_any_string() -> None:
    realm = SpiffeRealm()
    token = realm.token(audience=["mys3"])
    assert verify(token, bundle_of(realm), audience="mys3", now=NOW)
    with pytest.raises(AudienceError):
        verify(token, bundle_of(realm), audience="mys", now=NOW)


@pytest.mark.parametrize("audience", [[], ["other"], [AUD, 5], 5, None, {"a": AUD}])
def test_bad_or_other_audiences_are_refused(audience: Any) -> None:
    realm = SpiffeRealm()
    token = realm.token(claims={"aud": audience})
    with pytest.raises(AudienceError):
        verify(token, bundle_of(realm), audience=AUD, now=NOW)


def test_exp_required_and_times_checked() -> None:
    realm = SpiffeRealm()
    bundle = bundle_of(realm)
    token = realm.token(claims={"exp": None})
    with pytest.raises(ClaimsError):
        verify(token, bundle, audience=AUD, now=NOW)
    # exp dropped altogether
    raw = realm.token()
    head, _, _ = raw.split(".")
    body = {"aud": AUD, "iat": NOW, "sub": realm.sid("w")}
    a = realm.authorities[0]
    from spiffeforge import sign

    no_exp = compact(head, b64json(body), lambda data: sign(a.key, a.alg, data))
    with pytest.raises(ClaimsError, match="'exp' is missing"):
        verify(no_exp, bundle, audience=AUD, now=NOW)
    with pytest.raises(ExpiredTokenError):
        verify(realm.token(ttl=300), bundle, audience=AUD, now=NOW + 331)
    with pytest.raises(NotYetValidError):
        verify(realm.token(now=NOW + 100), bundle, audience=AUD, now=NOW)
    with pytest.raises(LifetimeError):
        verify(realm.token(ttl=7200), bundle, audience=AUD, now=NOW)
    assert verify(realm.token(ttl=7200), bundle, audience=AUD, now=NOW, max_lifetime=None)


def test_issuer_checked_when_asked() -> None:
    realm = SpiffeRealm()
    bundle = bundle_of(realm)
    token = realm.token(claims={"iss": "https://oidc.example"})
    assert verify(token, bundle, audience=AUD, now=NOW, issuer="https://oidc.example")
    assert verify(token, bundle, audience=AUD, now=NOW)
    with pytest.raises(ClaimsError, match="iss"):
        verify(token, bundle, audience=AUD, now=NOW, issuer="https://other")
    with pytest.raises(ClaimsError, match="iss"):
        verify(realm.token(), bundle, audience=AUD, now=NOW, issuer="https://oidc.example")


def test_subject_of_another_trust_domain_is_unknown() -> None:
    realm = SpiffeRealm()
    token = realm.token(subject="spiffe://elsewhere.test/w")
    with pytest.raises(UnknownIdentityError):
        verify(token, bundle_of(realm), audience=AUD, now=NOW)


def test_signature_of_the_wrong_length_is_malformed() -> None:
    realm = SpiffeRealm(authorities=[authority("ES384")])
    head, body, _ = realm.token().split(".")
    with pytest.raises(MalformedTokenError):
        verify(f"{head}.{body}.{b64(bytes(64))}", bundle_of(realm), audience=AUD, now=NOW)
    rsa_realm = SpiffeRealm(authorities=[authority("RS256")])
    head, body, _ = rsa_realm.token().split(".")
    with pytest.raises(MalformedTokenError):
        verify(f"{head}.{body}.{b64(bytes(255))}", bundle_of(rsa_realm), audience=AUD, now=NOW)


def test_size_cap_applies() -> None:
    realm = SpiffeRealm()
    token = realm.token(claims={"pad": "x" * 9000})
    with pytest.raises(TokenTooLargeError):
        verify(token, bundle_of(realm), audience=AUD, now=NOW)


def test_non_canonical_base64_is_malformed() -> None:
    realm = SpiffeRealm()
    head, body, sig = realm.token().split(".")
    with pytest.raises(MalformedTokenError):
        verify(f"{head}=.{body}.{sig}", bundle_of(realm), audience=AUD, now=NOW)


def test_domain_authority_may_sign_for_any_id_of_its_domain() -> None:
    """The documented difference of SPIFFE-bundle trust: one authority, every ID."""
    realm = SpiffeRealm()
    bundle = bundle_of(realm)
    for path in ("a", "b/c", "admin"):
        assert str(verify(realm.token(path), bundle, audience=AUD, now=NOW).id).endswith(path)


# -- a trust set: each trust domain with its own kind ------------------------------------------


def test_trust_set_applies_each_domains_own_rules() -> None:
    spiffile_realm = make_realm({ORDERS: 1, BILLING: 1})
    spire = SpiffeRealm()
    trust = TrustSet.of(spiffile_realm.bundle, bundle_of(spire))
    forge = Forge(spiffile_realm)

    ours = verify(forge.token(), trust, audience=BILLING, now=NOW)
    assert (str(ours.id), ours.trust) == (ORDERS, TrustKind.SPIFFILE)
    theirs = verify(spire.token(audience=[BILLING]), trust, audience=BILLING, now=NOW)
    assert theirs.trust is TrustKind.SPIFFE
    with pytest.raises(UnknownIdentityError):
        verify(SpiffeRealm(trust_domain="nobody.test").token(), trust, audience=BILLING, now=NOW)


def test_spiffile_domain_in_a_trust_set_keeps_every_v0_rule() -> None:
    realm = make_realm({ORDERS: 1, BILLING: 1})
    trust = TrustSet.of(realm.bundle)
    forge = Forge(realm)
    # An aud array is refused even when it holds the right audience.
    with pytest.raises(AudienceError):
        verify(forge.token(claims=forge.claims(aud=[BILLING])), trust, audience=BILLING, now=NOW)
    # Any algorithm but ES256 is refused, even a standard one.
    p384 = ec.generate_private_key(ec.SECP384R1())
    from tokenforge import es256_raw

    token = forge.token(header=forge.header(alg="ES384"), signer=lambda data: es256_raw(p384, data))
    with pytest.raises(AlgorithmError):
        verify(token, trust, audience=BILLING, now=NOW)
    # The key of one identity never vouches for another.
    impostor = Forge(realm, subject=BILLING, audience=ORDERS)
    stolen = impostor.token(header=impostor.header(kid=realm.kid(ORDERS)), signer=forge.es256())
    with pytest.raises(SignatureError):
        verify(stolen, trust, audience=ORDERS, now=NOW)
    nobody = forge.token(claims=forge.claims(sub="spiffe://example.org/nobody"))
    with pytest.raises(UnknownIdentityError):
        verify(nobody, trust, audience=BILLING, now=NOW)
    assert verify(forge.token(), trust, audience=BILLING, now=NOW).trust is TrustKind.SPIFFILE


def test_spiffile_key_published_in_a_spiffe_bundle_is_domain_wide() -> None:
    """What PROFILE.md §9 warns about, shown: a merged set lets one key speak for all."""
    realm = make_realm({ORDERS: 1, BILLING: 1})
    merged = {"keys": [jwk_of(realm.key(ORDERS), realm.kid(ORDERS))]}
    trust = SpiffeBundle.from_document(merged, "example.org")
    forge = Forge(realm, subject=BILLING, audience=ORDERS)
    forged = forge.token(header=forge.header(kid=realm.kid(ORDERS)), signer=Forge(realm).es256())
    assert str(verify(forged, trust, audience=ORDERS, now=NOW).id) == BILLING


def test_at_most_one_signature_check_under_spiffe_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hostile token names one kid: one check, never a scan of the authorities."""
    from spiffile.svid import _standard

    realm = SpiffeRealm(authorities=[authority("ES256", f"k{i}") for i in range(5)])
    bundle = bundle_of(realm)
    checks: list[str] = []
    real = _standard.verify_signature

    def counting(authority: Any, *args: Any) -> None:
        checks.append(authority.kid)
        real(authority, *args)

    monkeypatch.setattr(_standard, "verify_signature", counting)
    with pytest.raises(SignatureError):
        verify(realm.token(by=authority("ES256", "k3")), bundle, audience=AUD, now=NOW)
    assert checks == ["k3"]
