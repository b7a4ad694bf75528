"""Every JWT-SVID algorithm, signed by go-jose v4, verified by spiffile under SPIFFE-bundle trust.

An independent JOSE implementation (the one go-spiffe builds on) mints
tokens with RSA (PKCS#1 v1.5 and PSS) and ECDSA keys (JWT-SVID §3); spiffile
verifies them through a trust directory holding a SPIFFE bundle of those
keys, and go-spiffe's own ``ParseAndValidate`` agrees on the same inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from peerbuild import peer_json, require_peer

from spiffile.errors import InvalidTokenError
from spiffile.federation import TrustDirectory

pytestmark = pytest.mark.peers

TD = "standard.test"
SUB = f"spiffe://{TD}/signer"
AUD = "mys3"  # a non-SPIFFE audience, as SPIRE users configure them

#: alg -> the key that signs it.
KEYS = {
    "RS256": "rsa2048",
    "RS384": "rsa2048",
    "RS512": "rsa3072",
    "PS256": "rsa2048",
    "PS384": "rsa3072",
    "PS512": "rsa3072",
    "ES256": "p256",
    "ES384": "p384",
    "ES512": "p521",
}


@pytest.fixture(scope="module")
def spiffepeer() -> Path:
    return require_peer("spiffepeer")


@pytest.fixture(scope="module")
def authorities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(directory of <name>.pem PKCS#8 keys, trust directory with standard.test.json)."""
    base = tmp_path_factory.mktemp("authorities")
    private: dict[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey] = {
        "rsa2048": rsa.generate_private_key(65537, 2048),
        "rsa3072": rsa.generate_private_key(65537, 3072),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
    }
    keys = []
    for name, key in private.items():
        (base / f"{name}.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        else:
            jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        jwk.update(kid=f"kid-{name}", use="jwt-svid")
        keys.append(jwk)
    trust = base / "trust"
    trust.mkdir()
    (trust / f"{TD}.json").write_text(json.dumps({"keys": keys, "spiffe_sequence": 1}))
    return base, trust


def mint(spiffepeer: Path, base: Path, alg: str, *extra: str) -> str:
    name = KEYS[alg]
    args = ["-key", str(base / f"{name}.pem"), "-kid", f"kid-{name}", "-sub", SUB]
    token: str = peer_json(spiffepeer, "mint-jwt", *args, "-alg", alg, *extra)["token"]
    return token


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_spiffile_verifies_go_jose_tokens_under_spiffe_bundle_trust(
    spiffepeer: Path, authorities: tuple[Path, Path], alg: str
) -> None:
    base, trust = authorities
    token = mint(spiffepeer, base, alg, "-aud", AUD, "-aud", "other")
    caller = TrustDirectory(trust).verify(token, AUD)
    assert str(caller.id) == SUB
    assert caller.claims["aud"] == [AUD, "other"]
    # go-spiffe agrees on the same token and keys.
    jwks = trust / f"{TD}.json"
    svid = peer_json(
        spiffepeer, "validate-jwt", "-trust-domain", TD, "-bundle", str(jwks),
        "-audience", AUD, input=token,
    )  # fmt: skip
    assert svid["spiffe_id"] == SUB


@pytest.mark.parametrize("alg", ["RS256", "ES384"])
def test_spiffile_refuses_go_jose_tokens_for_another_audience_or_kid(
    spiffepeer: Path, authorities: tuple[Path, Path], alg: str
) -> None:
    base, trust = authorities
    directory = TrustDirectory(trust)
    with pytest.raises(InvalidTokenError):
        directory.verify(mint(spiffepeer, base, alg, "-aud", "elsewhere"), AUD)
    # Signed with the key of one authority, naming another authority's kid.
    name = KEYS[alg]
    other = "p256" if name.startswith("rsa") else "rsa2048"
    forged = peer_json(
        spiffepeer, "mint-jwt", "-key", str(base / f"{name}.pem"), "-kid", f"kid-{other}",
        "-sub", SUB, "-alg", alg, "-aud", AUD,
    )["token"]  # fmt: skip
    with pytest.raises(InvalidTokenError):
        directory.verify(forged, AUD)
