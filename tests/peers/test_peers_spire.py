"""The SPIRE tier: a real SPIRE v1.13.3 server and agent on 127.0.0.1 (``pytest -m spire``).

What SPIRE really issues (``spire-agent api fetch jwt``, ``spire-server
bundle show -format spiffe``) is checked for the shapes spiffile reads, then
verified through spiffile's public API and CLI (SPIFFE bundles, federation:
PROFILE.md §9), and a mixed fleet is run live: a spiffile service accepts a
SPIRE-issued token while a SPIRE-identity service (files laid out as
spiffe-helper writes them) accepts the spiffile service's token.

The deployment comes from ``tests/spirerealm.py``; the binaries from
``tests/peerbuild.py``. Without Go the tier skips with the reason;
``.ci/run`` makes that a failure.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from peerbuild import require_peer, run_peer
from spirerealm import SpireDeployment

from spiffile.errors import InvalidTokenError, UnknownIdentityError
from spiffile.identity import Identity
from spiffile.provision import Root, add_service, init_root, load_identity, service_env

pytestmark = pytest.mark.spire

SPIFFILE_TD = "spiffile.test"
ORDERS = f"spiffe://{SPIFFILE_TD}/orders"
#: JWT-SVID §3 algorithms by the server's jwt_key_type.
ALGORITHMS = {"ec-p256": "ES256", "rsa-2048": "RS256"}


@pytest.fixture(scope="module", params=sorted(ALGORITHMS))
def spire(request: pytest.FixtureRequest) -> Iterator[SpireDeployment]:
    bin_dir = require_peer("spire").parent
    with SpireDeployment(bin_dir, jwt_key_type=request.param) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A test CA and a 127.0.0.1 certificate for SPIRE's https_web bundle endpoint."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    base = tmp_path_factory.mktemp("tls")
    ca_file, chain, key = base / "ca.pem", base / "endpoint.pem", base / "endpoint.key"
    ca.cert_pem.write_to_path(str(ca_file))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return ca_file, chain, key


@pytest.fixture(scope="module")
def spire_endpoint(tls_ca: tuple[Path, Path, Path]) -> Iterator[SpireDeployment]:
    """A SPIRE server that also serves its bundle endpoint (https_web, a serving cert file)."""
    bin_dir = require_peer("spire").parent
    _, chain, key = tls_ca
    with SpireDeployment(bin_dir, bundle_endpoint=(chain, key)) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def spiffepeer() -> Path:
    return require_peer("spiffepeer")


@pytest.fixture
def root(tmp_path: Path) -> Root:
    root = init_root(tmp_path / "identity", SPIFFILE_TD)
    add_service(root, "orders")
    return root


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    def decode(part: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return value

    header, payload, _ = token.split(".")
    return decode(header), decode(payload)


def tampered(token: str) -> str:
    """The same token with ``exp`` moved a day later and the old signature kept."""
    header, _, signature = token.split(".")
    claims = segments(token)[1]
    claims["exp"] += 86400
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


# --- what SPIRE issues -------------------------------------------------------------------------


def test_spire_jwt_svid_has_the_shape_spiffile_reads(spire: SpireDeployment) -> None:
    token, bundles = spire.fetch_jwt(ORDERS)
    header, claims = segments(token)
    assert header["alg"] == ALGORITHMS[spire.jwt_key_type]
    assert header["typ"] == "JWT"
    assert len(header["kid"]) == 32  # SPIRE's random key ids, not RFC 7638 thumbprints
    assert claims["sub"] == spire.workload_id
    assert claims["aud"] == [ORDERS]  # always an array (JWT-SVID §3)
    assert claims["exp"] > claims["iat"]
    assert set(bundles) == {spire.trust_domain}


def test_spire_agent_bundle_is_a_plain_jwks(spire: SpireDeployment) -> None:
    token, bundles = spire.fetch_jwt(ORDERS)
    jwks = json.loads(bundles[spire.trust_domain])
    assert set(jwks) == {"keys"}
    assert all("use" not in key for key in jwks["keys"])
    assert segments(token)[0]["kid"] in {key["kid"] for key in jwks["keys"]}


def test_spire_bundle_show_spiffe_mixes_x509_and_jwt_authorities(
    spire: SpireDeployment,
) -> None:
    token, _ = spire.fetch_jwt(ORDERS)
    document = json.loads(spire.bundle_spiffe())
    assert isinstance(document["spiffe_sequence"], int)
    # SPIRE writes spiffe_refresh_hint only when its federation endpoint sets one.
    assert "spiffe_refresh_hint" not in document
    uses = {key["use"] for key in document["keys"]}
    assert uses == {"x509-svid", "jwt-svid"}
    assert all("x5c" in key for key in document["keys"] if key["use"] == "x509-svid")
    jwt_kids = {key["kid"] for key in document["keys"] if key["use"] == "jwt-svid"}
    assert segments(token)[0]["kid"] in jwt_kids


def test_go_spiffe_accepts_the_spire_token(spire: SpireDeployment, spiffepeer: Path) -> None:
    """The reference SDK agrees the deployment is sound (the baseline for the tests below)."""
    token, bundles = spire.fetch_jwt(ORDERS)
    jwks = spire.base / "agent-jwks.json"
    jwks.write_bytes(bundles[spire.trust_domain])
    done = run_peer(
        spiffepeer,
        "validate-jwt",
        "-trust-domain",
        spire.trust_domain,
        "-bundle",
        str(jwks),
        "-audience",
        ORDERS,
        input=token,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spiffe_id"] == spire.workload_id


def test_go_spiffe_on_the_spire_side_accepts_a_spiffile_token_through_its_export(
    spire: SpireDeployment, spiffepeer: Path, root: Root, tmp_path: Path
) -> None:
    """A SPIRE-identity Go service verifies spiffile's orders with orders' per-identity export."""
    exported = subprocess.run(
        [sys.executable, "-m", "spiffile", "export-jwks", "--root", str(root.path), "orders"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    jwks = tmp_path / "orders.jwks.json"
    jwks.write_text(exported.stdout)
    with load_identity(root, "orders") as orders:
        token = orders.token(spire.workload_id)
    done = run_peer(
        spiffepeer,
        "validate-jwt",
        "-trust-domain",
        SPIFFILE_TD,
        "-bundle",
        str(jwks),
        "-audience",
        spire.workload_id,
        input=token,
    )
    assert done.returncode == 0, done.stderr
    # The receiver's own `sub` check (PROFILE.md §9).
    assert json.loads(done.stdout)["spiffe_id"] == ORDERS


def test_spiffile_without_trust_for_spire_refuses_its_token(
    spire: SpireDeployment, root: Root
) -> None:
    """No document for spire.test: its token never verifies (an unknown identity or domain)."""
    token, _ = spire.fetch_jwt(ORDERS)
    with (
        load_identity(root, "orders") as orders,
        pytest.raises((InvalidTokenError, UnknownIdentityError)),
    ):
        orders.verify(token)


# --- through the SPIFFE-bundle trust path ------------------------------------------------------


def trust_dir(base: Path, documents: dict[str, bytes]) -> Path:
    """A federation directory: one ``<trust-domain>.json`` per trust domain."""
    base.mkdir(exist_ok=True)
    for trust_domain, document in documents.items():
        (base / f"{trust_domain}.json").write_bytes(document)
    return base


def cli_verify(
    directory: Path, audience: str, token: str, at: int
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "spiffile",
            "verify",
            "--trust-dir",
            str(directory),
            "--audience",
            audience,
            "--at",
            str(at),
            "--json",
            token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("source", ["bundle-show-spiffe", "agent-jwks"])
def test_cli_verifies_a_spire_token_with_a_trust_dir(
    spire: SpireDeployment, tmp_path: Path, source: str
) -> None:
    token, bundles = spire.fetch_jwt(ORDERS)
    document = (
        spire.bundle_spiffe() if source == "bundle-show-spiffe" else bundles[spire.trust_domain]
    )
    directory = trust_dir(tmp_path / "trust", {spire.trust_domain: document})
    done = cli_verify(directory, ORDERS, token, segments(token)[1]["iat"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["id"] == spire.workload_id
    assert result["claims"]["aud"] == [ORDERS]


def test_cli_refuses_a_tampered_spire_token(spire: SpireDeployment, tmp_path: Path) -> None:
    token, _ = spire.fetch_jwt(ORDERS)
    directory = trust_dir(tmp_path / "trust", {spire.trust_domain: spire.bundle_spiffe()})
    at = segments(token)[1]["iat"]
    assert cli_verify(directory, ORDERS, token, at).returncode == 0
    done = cli_verify(directory, ORDERS, tampered(token), at)
    assert done.returncode == 1
    assert done.stderr.startswith("Error:") or json.loads(done.stdout)
    assert "Traceback" not in done.stderr


def test_cli_refuses_a_spire_token_for_another_audience(
    spire: SpireDeployment, tmp_path: Path
) -> None:
    token, _ = spire.fetch_jwt(ORDERS)
    directory = trust_dir(tmp_path / "trust", {spire.trust_domain: spire.bundle_spiffe()})
    at = segments(token)[1]["iat"]
    assert cli_verify(directory, ORDERS, token, at).returncode == 0
    assert cli_verify(directory, f"spiffe://{SPIFFILE_TD}/billing", token, at).returncode == 1


def test_cli_refuses_a_spire_token_after_it_expired(spire: SpireDeployment, tmp_path: Path) -> None:
    token, _ = spire.fetch_jwt(ORDERS)
    directory = trust_dir(tmp_path / "trust", {spire.trust_domain: spire.bundle_spiffe()})
    assert cli_verify(directory, ORDERS, token, segments(token)[1]["exp"] + 3600).returncode == 1


def spiffe_helper_files(spire: SpireDeployment, base: Path, audience: str) -> Path:
    """The files spiffe-helper writes for one JWT audience, and its HCL configuration.

    ``jwt_bundle.json`` maps the trust domain to the base64 of the agent's
    JWK Set and each audience gets a token file, as spiffe-helper writes them
    from the same Workload API answer.
    """
    token, bundles = spire.fetch_jwt(audience)
    base.mkdir()
    (base / "orders.token").write_text(token)
    (base / "jwt_bundle.json").write_text(
        json.dumps({td: base64.b64encode(jwks).decode() for td, jwks in bundles.items()}, indent=2)
    )
    config = base / "helper.conf"
    config.write_text(
        f"""agent_address = "{spire.agent_socket}"
cmd = ""
cmd_args = ""
cert_dir = "{base}"
jwt_bundle_file_name = "jwt_bundle.json"
jwt_svids = [{{jwt_audience = "{audience}", jwt_svid_file_name = "orders.token"}}]
"""
    )
    return config


def test_live_mixed_fleet(spire: SpireDeployment, root: Root, tmp_path: Path) -> None:
    """A spiffile service and a SPIRE-identity service verify each other's tokens.

    orders is a spiffile workload of spiffile.test that federates with
    spire.test through ``SPIFFILE_TRUST_DIR`` (SPIRE's ``bundle show -format
    spiffe``). The SPIRE workload is a spiffile :class:`Identity` over
    spiffe-helper's files, federating with spiffile.test through the root's
    own bundle document.
    """
    orders_trust = trust_dir(tmp_path / "orders-trust", {spire.trust_domain: spire.bundle_spiffe()})
    spire_trust = trust_dir(
        tmp_path / "spire-trust", {SPIFFILE_TD: (root.path / "bundle.json").read_bytes()}
    )
    helper_config = spiffe_helper_files(spire, tmp_path / "helper", ORDERS)
    orders_env = {**service_env(root, "orders"), "SPIFFILE_TRUST_DIR": str(orders_trust)}
    spire_env = {
        "SPIFFILE_SPIFFE_HELPER_CONFIG": str(helper_config),
        "SPIFFILE_TRUST_DIR": str(spire_trust),
    }
    with Identity.from_env(orders_env) as orders, Identity.from_env(spire_env) as workload:
        assert str(workload.id) == spire.workload_id
        # SPIRE-issued, served by the SPIRE-identity service, accepted by spiffile's orders.
        caller = orders.verify(workload.token(ORDERS))
        assert str(caller.id) == spire.workload_id
        # spiffile-minted, accepted by the SPIRE-identity service.
        caller = workload.verify(orders.token(spire.workload_id))
        assert str(caller.id) == ORDERS
        # And neither accepts a token meant for someone else.
        with pytest.raises(InvalidTokenError):
            orders.verify(tampered(workload.token(ORDERS)))
        with pytest.raises(InvalidTokenError):
            workload.verify(orders.token(f"spiffe://{SPIFFILE_TD}/billing"))


# --- SPIRE's own bundle endpoint ---------------------------------------------------------------


def test_cli_fetches_spires_bundle_endpoint_and_verifies_its_token(
    spire_endpoint: SpireDeployment, tls_ca: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """SPIRE serves its bundle (https_web); spiffile fetches it and verifies SPIRE's tokens."""
    assert spire_endpoint.bundle_endpoint_url is not None
    trust = tmp_path / "trust"
    trust.mkdir()
    out = trust / f"{spire_endpoint.trust_domain}.json"
    done = subprocess.run(
        [sys.executable, "-m", "spiffile", "bundle", "fetch", spire_endpoint.bundle_endpoint_url,
         "--trust-domain", spire_endpoint.trust_domain, "--out", str(out),
         "--ca-file", str(tls_ca[0]), "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["refresh_hint"] == spire_endpoint.refresh_hint
    assert isinstance(result["sequence"], int)
    document = json.loads(out.read_bytes())
    assert {key["use"] for key in document["keys"]} == {"x509-svid", "jwt-svid"}

    token, _ = spire_endpoint.fetch_jwt(ORDERS)
    done = cli_verify(trust, ORDERS, token, segments(token)[1]["iat"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == spire_endpoint.workload_id


def test_sync_keeps_spires_bundle_and_the_last_good_copy(
    spire_endpoint: SpireDeployment, tls_ca: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    from spiffile.endpoint import BundleSync, Endpoint

    assert spire_endpoint.bundle_endpoint_url is not None
    td = spire_endpoint.trust_domain
    good = Endpoint(td, spire_endpoint.bundle_endpoint_url, str(tmp_path / f"{td}.json"))
    syncer = BundleSync([good], ca_file=tls_ca[0])
    assert syncer.sync_all()
    kept = (tmp_path / f"{td}.json").read_bytes()
    # The same endpoint under a CA that does not vouch for it: refused, file kept.
    other = trustme.CA()
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    assert not BundleSync([good], ca_file=tmp_path / "other.pem").sync_all()
    assert (tmp_path / f"{td}.json").read_bytes() == kept


def test_spire_jwt_authority_rotation_reaches_spiffile_through_sync(
    tls_ca: tuple[Path, Path, Path], root: Root, tmp_path: Path
) -> None:
    """SPIRE rotates its JWT authority (prepare, activate, taint, revoke); a running
    spiffile service follows through ``BundleSync`` into its trust directory, with
    no restart: the new authority's tokens verify, the revoked one's stop verifying.
    """
    from spiffile.endpoint import BundleSync, Endpoint

    ca_file, chain, key = tls_ca
    with SpireDeployment(require_peer("spire").parent, bundle_endpoint=(chain, key)) as spire:
        assert spire.bundle_endpoint_url is not None
        td = spire.trust_domain
        trust = tmp_path / "trust"
        trust.mkdir()
        syncer = BundleSync(
            [Endpoint(td, spire.bundle_endpoint_url, str(trust / f"{td}.json"))], ca_file=ca_file
        )
        assert syncer.sync_all()
        env = {**service_env(root, "orders"), "SPIFFILE_TRUST_DIR": str(trust)}

        def authority(state: str) -> str:
            shown = json.loads(spire.server("localauthority", "jwt", "show", "-output", "json"))
            kid: str = shown[state]["authority_id"]
            return kid

        with Identity.from_env(env) as orders:
            old_kid = authority("active")
            before = spire.fetch_jwt(ORDERS)[0]
            assert segments(before)[0]["kid"] == old_kid
            assert str(orders.verify(before).id) == spire.workload_id

            spire.server("localauthority", "jwt", "prepare")
            new_kid = authority("prepared")
            spire.server("localauthority", "jwt", "activate", "-authorityID", new_kid)
            # A new audience set: the agent's cache has no token for it, so the
            # server signs one with the now active authority.
            after = spire.fetch_jwt(f"{ORDERS},rotation")[0]
            assert segments(after)[0]["kid"] == new_kid
            assert syncer.sync_all()
            assert str(orders.verify(after).id) == spire.workload_id
            assert str(orders.verify(before).id) == spire.workload_id  # both published

            spire.server("localauthority", "jwt", "taint", "-authorityID", old_kid)
            spire.server("localauthority", "jwt", "revoke", "-authorityID", old_kid)
            assert syncer.sync_all()
            with pytest.raises((InvalidTokenError, UnknownIdentityError)):
                orders.verify(before)
            assert str(orders.verify(after).id) == spire.workload_id
