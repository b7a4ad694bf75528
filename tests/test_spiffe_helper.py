"""Identity.from_spiffe_helper: SPIRE-issued files as spiffe-helper writes them, behind Identity."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st
from spiffeforge import SpiffeRealm, authority
from tokenforge import NOW

from spiffile import Identity
from spiffile.caller import TrustKind
from spiffile.errors import (
    AudienceError,
    ConfigurationError,
    TokenUnavailableError,
    UnknownIdentityError,
)
from spiffile.files import RECHECK_INTERVAL, atomic_write
from spiffile.keys import generate_private_key, private_key_to_pem
from spiffile.provision import add_service, init_root, service_env
from spiffile.provision.x509 import make_authority, make_svid
from spiffile.spiffe_helper import SpiffeHelperIdentity, load_config, parse_config
from spiffile.spiffe_id import SpiffeId

SPIRE = SpiffeRealm(trust_domain="example.org", authorities=[authority("ES256", "spire-key-1")])
ME = "spiffe://example.org/myservice"
SPIRE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "interop" / "spire"

CONFIG = """
agent_address = "/tmp/spire-agent/public/api.sock"
cmd = ""
cert_dir = "certs"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_bundle_file_name = "jwt_bundle.json"
daemon_mode = true
jwt_svids = [
  {jwt_audience = "spiffe://example.org/billing", jwt_svid_file_name = "billing.token"},
  {jwt_audience = "mys3", jwt_svid_file_name = "s3.token", jwt_extra_audiences = ["mys3-backup"]}
]
"""


def helper_map(*realms: SpiffeRealm) -> bytes:
    return json.dumps(
        {r.trust_domain: base64.b64encode(r.jwks_bytes()).decode() for r in realms}
    ).encode()


def write_x509(certs: Path, spiffe_id: str, *, now: int = NOW) -> None:
    """An X.509-SVID, its key and its authority under spiffe-helper's default names."""
    ca_key, key = generate_private_key(), generate_private_key()
    ca = make_authority("example.org", ca_key, now=now, ttl=86400)
    leaf = make_svid(SpiffeId.parse(spiffe_id), key, ca, ca_key, now=now, ttl=3600)
    atomic_write(certs / "svid_key.pem", private_key_to_pem(key), mode=0o600)
    atomic_write(certs / "svid.pem", leaf.public_bytes(serialization.Encoding.PEM))
    atomic_write(certs / "svid_bundle.pem", ca.public_bytes(serialization.Encoding.PEM))


class Helper:
    """What spiffe-helper leaves on disk: a config and cert_dir with its files."""

    def __init__(self, base: Path, config: str = CONFIG) -> None:
        self.base = base
        self.certs = base / "certs"
        self.certs.mkdir(parents=True, exist_ok=True)
        self.config = base / "helper.conf"
        self.config.write_text(config)
        self.write_bundle(SPIRE)

    def write_bundle(self, *realms: SpiffeRealm) -> None:
        atomic_write(self.certs / "jwt_bundle.json", helper_map(*realms))

    def token(self, audience: str | list[str], *, now: int = NOW, ttl: int = 300) -> str:
        return SPIRE.token("myservice", audience, now=now, ttl=ttl)

    def write_token(self, name: str, text: str) -> None:
        # spiffe-helper writes in place (truncate, then write), not by rename.
        with open(self.certs / name, "w") as handle:
            handle.write(text)

    @staticmethod
    def wait_out_the_bound() -> None:
        """Let the 50 ms pass after which a consumer sees another process's write.

        Sleeping at least the bound is enough whatever the machine's load:
        the views time their looks with the same monotonic clock
        (PROFILE.md §7.2).
        """
        time.sleep(RECHECK_INTERVAL)

    def standard(self, *, now: int = NOW) -> None:
        self.write_token("billing.token", self.token(["spiffe://example.org/billing"], now=now))
        self.write_token("s3.token", self.token(["mys3", "mys3-backup"], now=now))


@pytest.fixture
def helper(tmp_path: Path) -> Helper:
    files = Helper(tmp_path / "helper")
    files.standard()
    return files


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the configuration -----------------------------------------------------------------------------


def test_config_is_read_with_paths_under_cert_dir(helper: Helper) -> None:
    config = load_config(helper.config)
    assert config.cert_dir == helper.certs
    assert config.jwt_bundle_file == helper.certs / "jwt_bundle.json"
    assert config.svid_file == helper.certs / "svid.pem"
    assert [(s.audience, s.path.name, s.extra_audiences) for s in config.jwt_svids] == [
        ("spiffe://example.org/billing", "billing.token", ()),
        ("mys3", "s3.token", ("mys3-backup",)),
    ]


def test_absolute_cert_dir_and_block_syntax(tmp_path: Path) -> None:
    text = f"""
cert_dir = "{tmp_path}/abs"
jwt_bundle_file_name = "b.json"
jwt_svids {{
  jwt_audience = "a"
  jwt_svid_file_name = "a.token"
}}
"""
    config = parse_config(text, tmp_path / "x.conf")
    assert config.cert_dir == tmp_path / "abs"
    assert [s.audience for s in config.jwt_svids] == ["a"]
    assert config.svid_file is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('jwt_bundle_file_name = "b.json"', "cert_dir is required"),
        ('cert_dir = "c"', "jwt_bundle_file_name is required"),
        ('cert_dir = "c"\njwt_bundle_file_name = "b"\njwt_svids = "x"', "list of objects"),
        ('cert_dir = "c"\njwt_bundle_file_name = "b"\njwt_svids = [{jwt_audience = "a"}]', "needs"),
        ('cert_dir = "${env.HOME}"\njwt_bundle_file_name = "b"', "interpolation"),
        ('cert_dir = 5\njwt_bundle_file_name = "b"', "must be a string"),
        ("cert_dir = ", "not valid HCL"),
        (
            'cert_dir = "c"\njwt_bundle_file_name = "b"\njwt_svids = ['
            '{jwt_audience = "a", jwt_svid_file_name = "1"},'
            '{jwt_audience = "a", jwt_svid_file_name = "2"}]',
            "two jwt_svids",
        ),
    ],
)
def test_bad_configurations_say_why(text: str, reason: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=reason.replace("$", r"\$").replace("{", r"\{")):
        parse_config(text, tmp_path / "helper.conf")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(tmp_path / "absent.conf")


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_config_text_raises_only_configuration_errors(text: str) -> None:
    try:
        parse_config(text, "/nonexistent/helper.conf")
    except ConfigurationError:
        pass


# -- serving tokens --------------------------------------------------------------------------------


def test_tokens_are_served_per_audience_and_the_id_comes_from_them(helper: Helper) -> None:
    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    assert isinstance(identity, SpiffeHelperIdentity)
    assert str(identity.id) == ME
    billing = identity.token("spiffe://example.org/billing")
    assert billing == (helper.certs / "billing.token").read_text()
    assert identity.token("mys3") == identity.token("mys3-backup")
    assert identity.kid == "spire-key-1"
    assert identity.status().healthy


def test_the_x509_svid_names_the_identity_when_present(helper: Helper) -> None:
    write_x509(helper.certs, ME)
    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    assert str(identity.id) == ME and identity.x509.id == identity.id


def test_a_token_for_another_identity_than_the_x509_svid_is_not_served(helper: Helper) -> None:
    write_x509(helper.certs, "spiffe://example.org/someone-else")
    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    with pytest.raises(TokenUnavailableError, match="not this identity"):
        identity.token("mys3")


def test_unknown_audience_is_a_clear_error(helper: Helper) -> None:
    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    with pytest.raises(TokenUnavailableError, match=r"no JWT-SVID for audience 'other'.*jwt_svids"):
        identity.token("other")


def test_an_expired_token_file_is_a_clear_error(helper: Helper) -> None:
    clock = Clock()
    identity = Identity.from_spiffe_helper(helper.config, clock=clock)
    clock.now = NOW + 301
    with pytest.raises(TokenUnavailableError, match=r"expired .* is spiffe-helper running"):
        identity.token("mys3")
    assert not identity.status().healthy


def test_a_rewritten_token_file_is_served_anew(helper: Helper) -> None:
    clock = Clock()
    identity = Identity.from_spiffe_helper(helper.config, clock=clock)
    first = identity.token("mys3")
    later = helper.token(["mys3"], now=NOW + 150)
    helper.write_token("s3.token", later)
    helper.wait_out_the_bound()
    clock.now = NOW + 151
    assert identity.token("mys3") == later != first


def test_a_half_written_token_file_is_never_served(helper: Helper) -> None:
    clock = Clock()
    identity = Identity.from_spiffe_helper(helper.config, clock=clock)
    first = identity.token("mys3")
    later = helper.token(["mys3"], now=NOW + 150)
    for cut in (0, 10, len(later) // 2, len(later) - 1):
        helper.write_token("s3.token", later[:cut])
        helper.wait_out_the_bound()
        served = identity.token("mys3")
        assert served == first  # The last good token, never the torn one.
    helper.write_token("s3.token", later)
    helper.wait_out_the_bound()
    assert identity.token("mys3") == later


def test_a_token_file_not_written_yet_is_retried(tmp_path: Path) -> None:
    files = Helper(tmp_path / "h")
    files.write_token("billing.token", files.token(["spiffe://example.org/billing"]))
    files.write_token("s3.token", "eyJhbGciOi")  # Torn at start-up.
    identity = Identity.from_spiffe_helper(files.config, clock=Clock())
    with pytest.raises(TokenUnavailableError, match="no usable JWT-SVID"):
        identity.token("mys3")
    token = files.token(["mys3"])
    files.write_token("s3.token", token)
    assert identity.token("mys3") == token


def test_no_source_of_the_id_is_a_configuration_error(tmp_path: Path) -> None:
    files = Helper(tmp_path / "h")
    with pytest.raises(ConfigurationError, match=r"no usable X\.509-SVID or JWT-SVID"):
        Identity.from_spiffe_helper(files.config)


def test_a_token_signed_by_an_authority_missing_from_the_bundle_is_not_served(
    helper: Helper,
) -> None:
    rogue = SpiffeRealm(trust_domain="example.org", authorities=[authority("ES256", "rogue")])
    helper.write_token("billing.token", rogue.token("myservice", ["spiffe://example.org/billing"]))
    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    with pytest.raises(TokenUnavailableError, match="does not verify"):
        identity.token("spiffe://example.org/billing")
    assert identity.token("mys3")


def test_from_env_reads_the_helper_config(helper: Helper) -> None:
    identity = Identity.from_env({"SPIFFILE_SPIFFE_HELPER_CONFIG": str(helper.config)})
    assert isinstance(identity, SpiffeHelperIdentity) and str(identity.id) == ME


def test_bundle_property_points_at_trust(helper: Helper) -> None:
    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    with pytest.raises(ConfigurationError, match=r"identity\.trust"):
        _ = identity.bundle


# -- verifying callers, and the mixed fleet ----------------------------------------------------


def test_verifies_spire_tokens_of_its_domain_and_federated_ones(helper: Helper) -> None:
    partner = SpiffeRealm(trust_domain="partner.test")
    helper.write_bundle(SPIRE, partner)
    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    peer = SPIRE.token("frontend", [ME])
    caller = identity.verify(peer)
    assert (str(caller.id), caller.trust) == ("spiffe://example.org/frontend", TrustKind.SPIFFE)
    assert identity.verify(partner.token("x", ME)).trust is TrustKind.SPIFFE
    with pytest.raises(AudienceError):
        identity.verify(SPIRE.token("frontend", ["someone-else"]))
    with pytest.raises(UnknownIdentityError):
        identity.verify(SpiffeRealm(trust_domain="nobody.test").token("x", ME))


def test_mixed_fleet_spiffile_and_spire_services_accept_each_other(
    helper: Helper, tmp_path: Path
) -> None:
    """A spiffile domain and a SPIRE domain, each trusting the other through its trust files."""
    root = init_root(tmp_path / "root", trust_domain="shop.test")
    add_service(root, "orders")
    # The SPIRE side trusts shop.test through SPIFFILE_TRUST_DIR (the spiffile bundle as is).
    spire_trust = tmp_path / "spire-trust"
    spire_trust.mkdir()
    atomic_write(spire_trust / "shop.test.json", (tmp_path / "root" / "bundle.json").read_bytes())
    migrated = Identity.from_env(
        {
            "SPIFFILE_SPIFFE_HELPER_CONFIG": str(helper.config),
            "SPIFFILE_TRUST_DIR": str(spire_trust),
        },
        clock=Clock(),
    )
    # The spiffile side trusts example.org through its trust dir (the helper's bundle map).
    shop_trust = tmp_path / "shop-trust"
    shop_trust.mkdir()
    atomic_write(shop_trust / "example.org.json", (helper.certs / "jwt_bundle.json").read_bytes())
    env = dict(service_env(root, "orders"))
    env["SPIFFILE_TRUST_DIR"] = str(shop_trust)
    orders = Identity.from_env(env, clock=Clock())

    to_spire = orders.token(ME)
    seen_by_spire = migrated.verify(to_spire)
    assert (str(seen_by_spire.id), seen_by_spire.trust) == (
        "spiffe://shop.test/orders",
        TrustKind.SPIFFILE,
    )
    to_shop = migrated.token("spiffe://example.org/billing")
    seen_by_shop = orders.verify(to_shop, audience="spiffe://example.org/billing")
    assert (str(seen_by_shop.id), seen_by_shop.trust) == (ME, TrustKind.SPIFFE)


@pytest.mark.skipif(not SPIRE_DIR.is_dir(), reason=f"no SPIRE interop data at {SPIRE_DIR}")
def test_a_real_spire_token_in_a_spiffe_helper_layout(tmp_path: Path) -> None:
    text = """
cert_dir = "certs"
jwt_bundle_file_name = "jwt_bundle.json"
jwt_svids = [{jwt_audience = "ib-claims", jwt_svid_file_name = "ib.token"}]
"""
    files = tmp_path / "h"
    (files / "certs").mkdir(parents=True)
    (files / "helper.conf").write_text(text)
    jwks = (SPIRE_DIR / "ec_2023.jwks.json").read_bytes()
    (files / "certs" / "jwt_bundle.json").write_text(
        json.dumps({"example.org": base64.b64encode(jwks).decode()})
    )
    token = (SPIRE_DIR / "ec_2023.token").read_text().strip()
    (files / "certs" / "ib.token").write_text(token)
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    identity = Identity.from_spiffe_helper(files / "helper.conf", clock=lambda: payload["iat"])
    assert str(identity.id) == payload["sub"]
    assert identity.token("ib-claims") == token
    assert identity.verify(token, audience="ib-claims").trust is TrustKind.SPIFFE


def test_cli_token_verify_and_whoami_through_the_helper(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    now = int(time.time())
    files = Helper(tmp_path / "h")
    files.standard(now=now)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    env["SPIFFILE_SPIFFE_HELPER_CONFIG"] = str(files.config)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spiffile", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    token = cli("token", "-a", "mys3")
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip() == (files.certs / "s3.token").read_text()
    missing = cli("token", "-a", "nobody")
    assert missing.returncode == 1 and "no JWT-SVID for audience 'nobody'" in missing.stderr
    peer = SPIRE.token("frontend", [ME], now=now)
    verified = cli("verify", "--json", peer)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["trust"] == "spiffe"
    whoami = cli("whoami", "--json")
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["id"] == ME


def test_on_change_reports_a_rewritten_jwt_bundle(helper: Helper) -> None:
    import queue

    from spiffile.changes import Change, ChangeKind

    identity = Identity.from_spiffe_helper(helper.config, clock=Clock())
    changes: queue.Queue[Change] = queue.Queue()
    identity.on_change(changes.put)
    try:
        for _ in range(10):
            helper.write_bundle(SPIRE)  # The same document under a new inode.
            try:
                change = changes.get(timeout=3)
            except queue.Empty:
                continue
            assert ChangeKind.BUNDLE in change.what
            assert change.status.bundle.reloads >= 1
            break
        else:
            raise AssertionError("no change reported")
    finally:
        identity.close()
