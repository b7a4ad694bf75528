"""The fixtures published by the other profile v0 implementations (TypeScript, Go, Python).

Read at test time from ``../shared/interop/spiffile-v0-fixtures.json`` (beside
the repository, where CI puts it) and never copied into the repository: it is
another project's data.  Skipped, with the path in the reason, when absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spiffile import keys, svid
from spiffile.bundle import Bundle, lint_bundle
from spiffile.errors import AudienceError, InvalidSpiffeIdError, LifetimeError
from spiffile.identity import Identity
from spiffile.spiffe_id import SpiffeId

FIXTURES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "interop" / "spiffile-v0-fixtures.json"
)
ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"
#: The fixture token's own iat: a fixed clock, so the test never depends on the date.
ISSUED = 1750000000


@pytest.fixture(scope="module")
def fixtures() -> dict[str, Any]:
    if not FIXTURES.is_file():
        pytest.skip(f"interop fixtures not present at {FIXTURES}")
    data: dict[str, Any] = json.loads(FIXTURES.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def bundle(fixtures: dict[str, Any]) -> Bundle:
    return Bundle.parse(json.dumps(fixtures["bundle"]))


@pytest.mark.parametrize("name", ["orders", "billing"])
def test_jwk_and_kid_derived_from_the_pinned_key(fixtures: dict[str, Any], name: str) -> None:
    key = keys.load_private_key_pem(fixtures[f"{name}_private_key_pem"].encode("ascii"))
    assert keys.public_jwk(key.public_key()) == fixtures[f"{name}_jwk"]
    assert keys.kid_for(key.public_key()) == fixtures[f"{name}_jwk"]["kid"]
    assert keys.jwk_thumbprint(fixtures[f"{name}_jwk"]) == fixtures[f"{name}_jwk"]["kid"]


def test_bundle_loads_with_both_identities(fixtures: dict[str, Any], bundle: Bundle) -> None:
    assert bundle.trust_domain == "example.org"
    assert sorted(map(str, bundle.identities())) == [BILLING, ORDERS]
    assert [k.kid for k in bundle.keys_for(ORDERS)] == [fixtures["orders_jwk"]["kid"]]
    assert bundle.warnings == []
    assert lint_bundle(json.dumps(fixtures["bundle"]).encode("utf-8")) == []


def test_their_token_verifies_with_the_lifetime_cap_lifted(
    fixtures: dict[str, Any], bundle: Bundle
) -> None:
    token = fixtures["token_orders_to_billing_exp_2035"]
    caller = svid.verify(token, bundle, audience=BILLING, now=ISSUED, max_lifetime=None)
    assert str(caller.id) == ORDERS
    assert caller.claims["aud"] == BILLING


def test_their_long_lived_token_exceeds_the_default_lifetime_cap(
    fixtures: dict[str, Any], bundle: Bundle
) -> None:
    """Valid until 2035: by design our verifier refuses it unless the caller lifts the cap."""
    with pytest.raises(LifetimeError):
        svid.verify(
            fixtures["token_orders_to_billing_exp_2035"], bundle, audience=BILLING, now=ISSUED
        )


def test_their_token_verifies_in_an_identity_loaded_from_files(
    fixtures: dict[str, Any], tmp_path: Path
) -> None:
    """The whole workload path: billing's three files and the wall clock (valid until 2035)."""
    (tmp_path / "id").write_text(BILLING + "\n")
    key_file = tmp_path / "key.pem"
    key_file.write_text(fixtures["billing_private_key_pem"])
    key_file.chmod(0o600)
    (tmp_path / "bundle.json").write_text(json.dumps(fixtures["bundle"]))
    with Identity.from_dir(tmp_path) as billing:
        caller = billing.verify(fixtures["token_orders_to_billing_exp_2035"], max_lifetime=None)
        assert str(caller.id) == ORDERS


def test_their_multi_audience_token_is_rejected(fixtures: dict[str, Any], bundle: Bundle) -> None:
    token = fixtures["token_orders_to_billing_multi_aud_exp_2035"]
    with pytest.raises(AudienceError):
        svid.verify(token, bundle, audience=BILLING, now=ISSUED, max_lifetime=None)


def test_spiffe_id_vectors(fixtures: dict[str, Any]) -> None:
    for text in fixtures["valid_spiffe_ids"]:
        assert str(SpiffeId.parse(text)) == text
    for text in fixtures["invalid_spiffe_ids"]:
        with pytest.raises(InvalidSpiffeIdError):
            SpiffeId.parse(text)
