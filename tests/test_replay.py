"""Tests for spiffile/replay.py and one-time tokens (identity.token(jti=True, claims=...))."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from servicerealm import Realm, provision_realm

from spiffile import ClaimsError, InvalidSpiffeIdError, ReplayCacheFullError, ReplayedTokenError
from spiffile.replay import ReplayCache


@pytest.fixture
def realm(tmp_path: Path) -> Realm:
    return provision_realm(tmp_path)


def _forge_malleated(token: str) -> str:
    """The same claims under the other valid ECDSA signature (s -> n - s)."""
    header, payload, signature = token.split(".")
    from spiffile import _wire

    raw = _wire.b64url_decode(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    flipped = r.to_bytes(32, "big") + (n - s).to_bytes(32, "big")
    return f"{header}.{payload}.{_wire.b64url_encode(flipped)}"


def test_jti_tokens_are_fresh_each_call_and_not_cached(realm: Realm) -> None:
    plain = realm.orders.token(realm.billing.id)
    assert realm.orders.token(realm.billing.id) == plain  # the cache serves it
    first = realm.orders.token(realm.billing.id, jti=True)
    second = realm.orders.token(realm.billing.id, jti=True)
    assert first != second != plain
    jti1 = realm.billing.verify(first).claims["jti"]
    jti2 = realm.billing.verify(second).claims["jti"]
    assert isinstance(jti1, str) and len(jti1) >= 22 and jti1 != jti2
    # The plain cache entry is untouched by the one-shot tokens.
    assert realm.orders.token(realm.billing.id) == plain


def test_extra_claims_are_signed_and_never_shared_with_the_plain_entry(realm: Realm) -> None:
    plain = realm.orders.token(realm.billing.id)
    with_claims = realm.orders.token(realm.billing.id, claims={"scope": "read", "n": 3})
    assert with_claims != plain
    caller = realm.billing.verify(with_claims)
    assert caller.claims["scope"] == "read" and caller.claims["n"] == 3
    assert caller.claims["sub"] == str(realm.orders.id)
    assert "scope" not in realm.billing.verify(realm.orders.token(realm.billing.id)).claims


@pytest.mark.parametrize("claim", ["sub", "aud", "exp", "iat"])
def test_extra_claims_never_override_the_registered_ones(realm: Realm, claim: str) -> None:
    with pytest.raises(ValueError, match=claim):
        realm.orders.token(realm.billing.id, claims={claim: "spiffe://example.org/admin"})


def test_jti_and_a_jti_claim_together_are_refused(realm: Realm) -> None:
    with pytest.raises(ValueError, match="jti"):
        realm.orders.token(realm.billing.id, jti=True, claims={"jti": "mine"})


def test_claims_tokens_respect_ttl_and_audience_checks(realm: Realm) -> None:
    with pytest.raises(ValueError, match="lifetime cap"):
        realm.orders.token(realm.billing.id, ttl=100_000, jti=True)
    with pytest.raises(ValueError, match="ttl"):
        realm.orders.token(realm.billing.id, ttl=0, jti=True)
    with pytest.raises(InvalidSpiffeIdError):
        realm.orders.token("billing", jti=True)


def test_replay_cache_accepts_once(realm: Realm) -> None:
    cache = ReplayCache()
    token = realm.orders.token(realm.billing.id, jti=True)
    cache.check(realm.billing.verify(token))
    with pytest.raises(ReplayedTokenError) as info:
        cache.check(realm.billing.verify(token))
    assert info.value.code == "replayed"
    assert info.value.subject == str(realm.orders.id)
    # Another one-shot token from the same sender is fine.
    cache.check(realm.billing.verify(realm.orders.token(realm.billing.id, jti=True)))


def test_replay_cache_is_keyed_on_claims_not_token_text(realm: Realm) -> None:
    """PROFILE.md §10: a malleated signature is another text for the same token."""
    cache = ReplayCache()
    token = realm.orders.token(realm.billing.id, jti=True)
    twin = _forge_malleated(token)
    assert twin != token
    # Whether or not the verifier accepts high-s signatures, the cache must
    # refuse the twin of an accepted token.
    cache.check(realm.billing.verify(token))
    try:
        caller = realm.billing.verify(twin)
    except Exception:
        pytest.skip("the verifier already refuses the malleated signature")
    with pytest.raises(ReplayedTokenError):
        cache.check(caller)


def test_replay_cache_requires_jti_unless_told_otherwise(realm: Realm) -> None:
    plain = realm.billing.verify(realm.orders.token(realm.billing.id))
    with pytest.raises(ClaimsError, match="jti"):
        ReplayCache().check(plain)
    lenient = ReplayCache(require_jti=False)
    lenient.check(plain)
    with pytest.raises(ReplayedTokenError):
        lenient.check(plain)
    with pytest.raises(ClaimsError, match="jti"):
        ReplayCache().check({"sub": "spiffe://example.org/a", "exp": 10, "jti": ""})


def test_replay_cache_forgets_at_exp_plus_leeway() -> None:
    cache = ReplayCache(leeway=30)
    claims = {"sub": "spiffe://example.org/a", "exp": 1000, "jti": "x"}
    cache.check(claims, now=900)
    with pytest.raises(ReplayedTokenError):
        cache.check(claims, now=1029)
    # At exp + leeway the verifier refuses the token anyway; the entry goes.
    cache.check({**claims, "jti": "y"}, now=1030)
    assert len(cache) == 1


def test_replay_cache_is_bounded_and_fails_closed() -> None:
    cache = ReplayCache(max_entries=3, leeway=0)
    for jti in "abc":
        cache.check({"sub": "spiffe://example.org/a", "exp": 100, "jti": jti}, now=0)
    with pytest.raises(ReplayCacheFullError):
        cache.check({"sub": "spiffe://example.org/a", "exp": 100, "jti": "d"}, now=0)
    # The refused token was not remembered, and the old ones still count.
    with pytest.raises(ReplayedTokenError):
        cache.check({"sub": "spiffe://example.org/a", "exp": 100, "jti": "a"}, now=1)
    # Once they expire there is room again.
    cache.check({"sub": "spiffe://example.org/a", "exp": 200, "jti": "d"}, now=100)
    assert len(cache) == 1


def test_replay_cache_same_jti_from_two_senders_are_two_tokens() -> None:
    cache = ReplayCache()
    cache.check({"sub": "spiffe://example.org/a", "exp": 100, "jti": "same"}, now=0)
    cache.check({"sub": "spiffe://example.org/b", "exp": 100, "jti": "same"}, now=0)


def test_replay_cache_admits_each_token_once_across_threads() -> None:
    cache = ReplayCache()
    claims = {"sub": "spiffe://example.org/a", "exp": 10**9, "jti": "race"}
    accepted: list[int] = []
    barrier = threading.Barrier(8)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            cache.check(claims, now=0)
        except ReplayedTokenError:
            return
        accepted.append(n)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(accepted) == 1
