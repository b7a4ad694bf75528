"""go-spiffe v2.9.0 as a live peer for JWT-SVIDs (PROFILE.md §9, JWT-SVID §3).

Both directions of the JWT interop promise, against the reference Go SDK
built from ``tests/peers/spiffepeer`` (see ``tests/peerbuild.py``):

- go-spiffe's ``jwtsvid.ParseAndValidate`` accepts a spiffile-minted token
  against that identity's per-identity export (``spiffile export-jwks``),
  and nothing signed by another identity's key.
- spiffile's verifier accepts a token that go-jose builds with a service's
  key, under the profile's rules (single-string ``aud``, ES256, its ``kid``).

Without Go these tests skip with the reason; ``.ci/run`` makes that a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from peerbuild import peer_json, require_peer, run_peer

from spiffile.errors import InvalidTokenError
from spiffile.identity import Identity
from spiffile.provision import Root, add_service, init_root, load_identity, service_info

pytestmark = pytest.mark.peers

TD = "example.org"
ORDERS = f"spiffe://{TD}/orders"
BILLING = f"spiffe://{TD}/billing"


@pytest.fixture(scope="module")
def spiffepeer() -> Path:
    return require_peer("spiffepeer")


@pytest.fixture
def root(tmp_path: Path) -> Root:
    root = init_root(tmp_path / "identity", TD)
    add_service(root, "orders")
    add_service(root, "billing")
    return root


def export_jwks(root: Root, name: str, out: Path) -> Path:
    """The real CLI's per-identity export, written where go-spiffe loads it."""
    done = subprocess.run(
        [sys.executable, "-m", "spiffile", "export-jwks", "--root", str(root.path), name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out.write_text(done.stdout)
    return out


def validate(
    spiffepeer: Path, bundle: Path, token: str, audience: str
) -> subprocess.CompletedProcess[str]:
    return run_peer(
        spiffepeer,
        "validate-jwt",
        "-trust-domain",
        TD,
        "-bundle",
        str(bundle),
        "-audience",
        audience,
        input=token,
    )


def test_go_spiffe_accepts_a_spiffile_token_against_its_export(
    spiffepeer: Path, root: Root, tmp_path: Path
) -> None:
    bundle = export_jwks(root, "orders", tmp_path / "orders.jwks.json")
    with load_identity(root, "orders") as orders:
        token = orders.token(BILLING)
    done = validate(spiffepeer, bundle, token, BILLING)
    assert done.returncode == 0, done.stderr
    svid = json.loads(done.stdout)
    # The relying code's own check (PROFILE.md §9): the subject is the exported identity.
    assert svid["spiffe_id"] == ORDERS
    assert svid["audience"] == [BILLING]
    assert svid["claims"]["sub"] == ORDERS


def test_go_spiffe_refuses_another_identitys_token_against_an_export(
    spiffepeer: Path, root: Root, tmp_path: Path
) -> None:
    """The export binds only orders' keys: billing's token finds no authority in it."""
    bundle = export_jwks(root, "orders", tmp_path / "orders.jwks.json")
    with load_identity(root, "billing") as billing:
        token = billing.token(ORDERS)
    done = validate(spiffepeer, bundle, token, ORDERS)
    assert done.returncode == 1
    assert "no JWT authority" in done.stderr


def test_go_spiffe_refuses_a_spiffile_token_for_another_audience(
    spiffepeer: Path, root: Root, tmp_path: Path
) -> None:
    bundle = export_jwks(root, "orders", tmp_path / "orders.jwks.json")
    with load_identity(root, "orders") as orders:
        token = orders.token(BILLING)
    done = validate(spiffepeer, bundle, token, f"spiffe://{TD}/reports")
    assert done.returncode == 1
    assert "audience" in done.stderr


def test_go_spiffe_refuses_a_rotated_out_key_after_export_again(
    spiffepeer: Path, root: Root, tmp_path: Path
) -> None:
    """Export again after a rotation (PROFILE.md §9): the new export lacks a dropped key."""
    from spiffile.provision import rotate_service

    with load_identity(root, "orders") as orders:
        old_token = orders.token(BILLING)
    rotate_service(root, "orders", keep_old=False)
    bundle = export_jwks(root, "orders", tmp_path / "orders.jwks.json")
    done = validate(spiffepeer, bundle, old_token, BILLING)
    assert done.returncode == 1
    assert "no JWT authority" in done.stderr
    with load_identity(root, "orders") as orders:
        assert validate(spiffepeer, bundle, orders.token(BILLING), BILLING).returncode == 0


def mint(spiffepeer: Path, root: Root, name: str, *extra: str) -> str:
    info = service_info(root, name)
    result = peer_json(
        spiffepeer,
        "mint-jwt",
        "-key",
        str(info.directory / "key.pem"),
        "-kid",
        info.kid,
        "-sub",
        str(info.id),
        *extra,
    )
    token: str = result["token"]
    return token


def test_spiffile_accepts_a_go_jose_token_signed_with_a_bound_key(
    spiffepeer: Path, root: Root
) -> None:
    token = mint(spiffepeer, root, "orders", "-aud", BILLING, "-aud-string")
    with load_identity(root, "billing") as billing:
        caller = billing.verify(token)
    assert str(caller.id) == ORDERS
    assert caller.claims["aud"] == BILLING


def test_spiffile_refuses_a_go_jose_token_naming_another_subject(
    spiffepeer: Path, root: Root
) -> None:
    """orders' key, orders' kid, but ``sub`` billing: the key does not vouch for billing."""
    info = service_info(root, "orders")
    token = peer_json(
        spiffepeer,
        "mint-jwt",
        "-key",
        str(info.directory / "key.pem"),
        "-kid",
        info.kid,
        "-sub",
        BILLING,
        "-aud",
        BILLING,
        "-aud-string",
    )["token"]
    with load_identity(root, "billing") as billing, pytest.raises(InvalidTokenError):
        billing.verify(token)


def test_spiffile_v0_refuses_a_go_jose_token_with_an_audience_array(
    spiffepeer: Path, root: Root
) -> None:
    """Profile v0 requires one string ``aud`` for spiffile-bound identities (PROFILE.md §5.2)."""
    token = mint(spiffepeer, root, "orders", "-aud", BILLING)
    with load_identity(root, "billing") as billing, pytest.raises(InvalidTokenError):
        billing.verify(token)


def test_spiffile_refuses_a_go_jose_token_for_another_audience(
    spiffepeer: Path, root: Root
) -> None:
    token = mint(spiffepeer, root, "orders", "-aud", f"spiffe://{TD}/reports", "-aud-string")
    with load_identity(root, "billing") as billing, pytest.raises(InvalidTokenError):
        billing.verify(token)


def test_round_trip_go_jose_token_through_go_spiffe_and_spiffile(
    spiffepeer: Path, root: Root, tmp_path: Path
) -> None:
    """One token, both verifiers: go-spiffe over the export, spiffile over the bundle."""
    token = mint(spiffepeer, root, "orders", "-aud", BILLING, "-aud-string")
    bundle = export_jwks(root, "orders", tmp_path / "orders.jwks.json")
    assert validate(spiffepeer, bundle, token, BILLING).returncode == 0
    billing: Identity
    with load_identity(root, "billing") as billing:
        assert str(billing.verify(token).id) == ORDERS
