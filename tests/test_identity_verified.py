"""The verified-token cache of ``Identity.verify``: only what stays true is remembered.

A token verified once is accepted again from its exact text, but every
check that depends on the call (audience, expiry, not-before, the lifetime
cap, the issuer) is made again, and any new bundle (a revoked or rotated key)
sends the token through the full verification.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spiffile import Identity, svid
from spiffile.bundle import Bundle
from spiffile.errors import (
    AudienceError,
    ClaimsError,
    ExpiredTokenError,
    LifetimeError,
    NotYetValidError,
    SignatureError,
    UnknownIdentityError,
)
from spiffile.files import atomic_write
from spiffile.identity._verified_cache import _Verified
from spiffile.keys import generate_private_key, kid_for, private_key_to_pem, public_jwk

TD = "example.org"
ORDERS = f"spiffe://{TD}/orders"
BILLING = f"spiffe://{TD}/billing"
NOW = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Realm:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.orders = generate_private_key()
        self.billing = generate_private_key()
        self.bundle_path = root / "bundle.json"
        self.sequence = 0
        atomic_write(root / "id", f"{BILLING}\n".encode())
        atomic_write(root / "key.pem", private_key_to_pem(self.billing), mode=0o600)
        self.publish()

    def publish(self, *, orders: bool = True) -> None:
        self.sequence += 1
        bundle = Bundle.empty(TD).with_keys(BILLING, [public_jwk(self.billing.public_key())])
        if orders:
            bundle = bundle.with_keys(ORDERS, [public_jwk(self.orders.public_key())])
        atomic_write(self.bundle_path, bundle.with_sequence(self.sequence).to_json())

    def identity(self, clock: Clock, **options: object) -> Identity:
        return Identity.from_dir(self.root, clock=clock, **options)

    def token(self, *, now: float = NOW, ttl: int = 60, audience: str = BILLING) -> str:
        kid = kid_for(self.orders.public_key())
        return svid.mint(self.orders, kid, ORDERS, audience, now=now, ttl=ttl)


@pytest.fixture
def realm(tmp_path: Path) -> Realm:
    return Realm(tmp_path)


def test_a_repeated_token_verifies_again(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock)
    token = realm.token()
    first = identity.verify(token)
    again = identity.verify(token)
    assert again.id == first.id and again.claims == first.claims


def test_a_revoked_key_stops_working_at_once(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock)
    token = realm.token()
    identity.verify(token)
    identity.verify(token)
    realm.publish(orders=False)
    clock.now += 1  # The bundle is looked at again within its freshness bound.
    with pytest.raises(UnknownIdentityError):
        identity.verify(token)


def test_a_rotated_key_sends_the_token_through_the_full_check(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock)
    token = realm.token()
    identity.verify(token)
    realm.orders = generate_private_key()  # The old key is no longer bound.
    realm.publish()
    clock.now += 1
    with pytest.raises(SignatureError):
        identity.verify(token)


def test_the_audience_is_checked_on_every_call(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock)
    token = realm.token()
    identity.verify(token)
    with pytest.raises(AudienceError) as info:
        identity.verify(token, audience=f"spiffe://{TD}/reports")
    assert info.value.expected_audience == f"spiffe://{TD}/reports"
    assert identity.verify(token).id == ORDERS


def test_expiry_is_checked_on_every_call(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock, leeway=5)
    token = realm.token(ttl=60)
    identity.verify(token)
    clock.now = NOW + 64
    assert identity.verify(token).id == ORDERS
    clock.now = NOW + 65
    with pytest.raises(ExpiredTokenError) as info:
        identity.verify(token)
    assert info.value.expires == NOW + 60
    # A per-call leeway applies to the cached token too.
    assert identity.verify(token, leeway=30).id == ORDERS


def test_not_before_lifetime_and_issuer_are_checked_on_every_call(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock, leeway=0)
    token = realm.token(now=NOW, ttl=600)
    identity.verify(token)
    with pytest.raises(LifetimeError):
        identity.verify(token, max_lifetime=60)
    with pytest.raises(ClaimsError):
        identity.verify(token, issuer="https://issuer.example")
    clock.now = NOW - 10  # A clock stepped back: the token is issued in the future.
    with pytest.raises(NotYetValidError):
        identity.verify(token)


def test_only_verified_tokens_enter(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock, verified_cache_size=8)
    cache = identity._verified
    assert cache is not None
    wrong = realm.token(audience=f"spiffe://{TD}/reports")
    with pytest.raises(AudienceError):
        identity.verify(wrong)
    with pytest.raises(AudienceError):
        identity.verify(wrong)
    assert len(cache) == 0
    identity.verify(realm.token())
    assert len(cache) == 1


def test_a_flood_of_distinct_tokens_keeps_the_hot_ones_and_the_size(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock, verified_cache_size=16)
    cache = identity._verified
    assert cache is not None
    hot = [realm.token(now=NOW - n, ttl=1000) for n in range(4)]
    for token in hot * 2:  # Used twice: promoted out of probation.
        identity.verify(token)
    for n in range(200):  # Each verified once, as a flood of fresh tokens would be.
        identity.verify(realm.token(now=NOW - 10 - n, ttl=1000))
        assert len(cache) <= 16
    assert all(cache.get(token) is not None for token in hot)


def test_a_callers_edit_of_the_claims_does_not_reach_the_next_call(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock)
    token = realm.token()
    first = identity.verify(token)
    first.claims["sub"] = "spiffe://example.org/mallory"  # type: ignore[index]
    second = identity.verify(token)
    second.claims["aud"] = "x"  # type: ignore[index]
    assert identity.verify(token).claims["sub"] == ORDERS
    assert identity.verify(token).claims["aud"] == BILLING


def test_the_cache_can_be_turned_off(realm: Realm) -> None:
    identity = realm.identity(Clock(), verified_cache_size=0)
    token = realm.token()
    assert identity.verify(token).id == identity.verify(token).id
    assert identity._verified is None


def test_a_reload_drops_the_entries_of_the_old_bundle(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock)
    cache = identity._verified
    assert cache is not None
    for n in range(5):
        identity.verify(realm.token(now=NOW - n))
    assert len(cache) == 5
    realm.publish()  # Same keys, a new bundle object: the old one must not be kept.
    clock.now += 1
    identity.verify(realm.token())
    assert len(cache) == 1


@pytest.mark.parametrize("size", [1, 2, 1024])
def test_the_first_reuse_checks_what_the_entry_was_verified_for(realm: Realm, size: int) -> None:
    # An entry's check fields are filled in on its first reuse (out of
    # probation), with or without a protected segment to move it to.
    clock = Clock()
    identity = realm.identity(clock, leeway=0, verified_cache_size=size)
    token = realm.token(ttl=60)
    identity.verify(token)
    with pytest.raises(AudienceError):
        identity.verify(token, audience=f"spiffe://{TD}/reports")
    clock.now = NOW + 60
    with pytest.raises(ExpiredTokenError):
        identity.verify(token)
    clock.now = NOW + 59
    for _ in range(3):
        assert identity.verify(token).claims["exp"] == NOW + 60


def test_an_entry_verified_again_while_protected_is_ready_for_the_next_hit(realm: Realm) -> None:
    clock = Clock()
    identity = realm.identity(clock)
    cache = identity._verified
    assert cache is not None
    token = realm.token(ttl=60)
    caller = identity.verify(token)
    assert cache.get(token) is not None  # Promoted to the protected segment.
    bundle = identity.bundle
    cache.add(token, _Verified(bundle, caller))  # As a second thread's full verify would.
    entry = cache.get(token)
    assert entry is not None
    assert entry.still_valid(BILLING, NOW, 0, None)
    assert not entry.still_valid(BILLING, NOW + 61, 0, None)
    assert not entry.still_valid(ORDERS, NOW, 0, None)
