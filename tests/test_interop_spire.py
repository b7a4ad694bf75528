"""Real SPIRE-issued JWT-SVIDs (../shared/interop/spire/) verify through the public API.

Each token is verified at its own ``iat`` (they expired long ago) against
the JWT bundle its deployment published; the hand-edited copy must fail.
The data is read at test time and never copied into the repository.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
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


# -- the command line: spiffile verify --trust-dir DIR --at IAT ---------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    return subprocess.run(
        [sys.executable, "-m", "spiffile", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def trust_dir_for(tmp_path: Path, jwks_name: str) -> Path:
    directory = tmp_path / "trust"
    directory.mkdir(exist_ok=True)
    shutil.copyfile(SPIRE_DIR / f"{jwks_name}.jwks.json", directory / "example.org.json")
    return directory


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_real_spire_token_verifies_through_the_cli_at_its_iat(name: str, tmp_path: Path) -> None:
    token, _jwks, claims = load(name)
    directory = trust_dir_for(tmp_path, TOKENS[name])
    at = str(claims["iat"])
    audience = claims["aud"][0]
    plain = cli("verify", "--trust-dir", str(directory), "-a", audience, "--at", at, token)
    assert (plain.returncode, plain.stdout.strip()) == (0, claims["sub"]), plain.stderr
    done = cli("verify", "--trust-dir", str(directory), "-a", audience, "--at", at, "--json", token)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["id"], result["trust"], result["claims"]) == (claims["sub"], "spiffe", claims)
    # Now, long after it expired: rejected, one line, no token in the message.
    late = cli("verify", "--trust-dir", str(directory), "-a", audience, token)
    assert late.returncode == 1 and "(expired)" in late.stderr and token not in late.stderr


def test_hand_edited_spire_token_is_rejected_by_the_cli(tmp_path: Path) -> None:
    token, _jwks, claims = load("ec_2023_alt_exp2028")
    directory = trust_dir_for(tmp_path, "ec_2023")
    done = cli(
        "verify",
        "--trust-dir",
        str(directory),
        "-a",
        "ib-claims",
        "--at",
        str(claims["iat"]),
        "--json",
        token,
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] == "signature"
    assert "Traceback" not in done.stderr


def test_cli_trust_dir_without_the_domain_is_unknown_identity(tmp_path: Path) -> None:
    token, _jwks, claims = load("ec_2023")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = cli(
        "verify", "--trust-dir", str(empty), "-a", "ib-claims", "--at", str(claims["iat"]), token
    )
    assert done.returncode == 1 and "(unknown_identity)" in done.stderr


def test_cli_trust_dir_needs_an_audience_without_an_identity(tmp_path: Path) -> None:
    token, _jwks, _claims = load("ec_2023")
    done = cli("verify", "--trust-dir", str(trust_dir_for(tmp_path, "ec_2023")), token)
    assert done.returncode == 2 and "--audience is required" in done.stderr
