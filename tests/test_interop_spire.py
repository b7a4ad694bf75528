"""Real SPIRE-issued JWT-SVIDs (../shared/interop/spire/) verify through the public API.

Each token is verified at its own ``iat`` (they expired long ago) against
the JWT bundle its deployment published; the hand-edited copy must fail.
The data is read at test time and never copied into the repository.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from spiffile.bundle.spiffe import SpiffeBundle
from spiffile.errors import SignatureError
from spiffile.svid import verify
from spiffile.trust import TrustKind, TrustSet, parse_trust_document

SPIRE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "interop" / "spire"
pytestmark = pytest.mark.skipif(
    not SPIRE_DIR.is_dir(), reason=f"no SPIRE interop data at {SPIRE_DIR} (shared/ absent)"
)
#: token file -> its deployment's JWT bundle file.
TOKENS = {"ec_2023": "ec_2023", "rsa_2020": "rsa_2020"}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def load(name: str) -> tuple[str, bytes, dict[str, Any]]:
    token = (SPIRE_DIR / f"{name}.token").read_text().strip()
    return (
        token,
        (SPIRE_DIR / f"{TOKENS.get(name, 'ec_2023')}.jwks.json").read_bytes(),
        claims_of(token),
    )


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_real_spire_token_verifies_at_its_iat(name: str) -> None:
    token, jwks, claims = load(name)
    bundle = parse_trust_document(jwks, "example.org")
    assert isinstance(bundle, SpiffeBundle)
    for audience in claims["aud"]:
        caller = verify(token, bundle, audience=audience, now=claims["iat"])
        assert str(caller.id) == claims["sub"]
        assert caller.trust is TrustKind.SPIFFE
        assert caller.claims == claims
    # Through a trust set too, as a federated verifier sees it.
    assert verify(token, TrustSet.of(bundle), audience=claims["aud"][0], now=claims["iat"])


def test_rsa_token_issuer_is_checked_when_asked() -> None:
    token, jwks, claims = load("rsa_2020")
    bundle = parse_trust_document(jwks, "example.org")
    assert verify(token, bundle, audience="mys3", now=claims["iat"], issuer=claims["iss"])


def test_hand_edited_spire_token_is_rejected() -> None:
    token, jwks, claims = load("ec_2023_alt_exp2028")
    bundle = parse_trust_document(jwks, "example.org")
    with pytest.raises(SignatureError):
        verify(token, bundle, audience=claims["aud"][0], now=claims["iat"])


def test_spire_token_in_a_spiffe_helper_bundle_map() -> None:
    token, jwks, claims = load("ec_2023")
    helper_map = json.dumps({"example.org": base64.b64encode(jwks).decode()})
    bundle = parse_trust_document(helper_map, "example.org")
    assert str(verify(token, bundle, audience="ib-claims", now=claims["iat"]).id) == claims["sub"]
