"""The ``spiffile`` command line, driven as a user drives it.

Subprocesses (``python -m spiffile``) with real environment variables and
files prove the wiring end to end; click's CliRunner covers the many small
cases cheaply.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from spiffile import Identity
from spiffile.cli import cli

TD = "example.org"
ORDERS = f"spiffe://{TD}/orders"
BILLING = f"spiffe://{TD}/billing"


def run(
    *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m spiffile ARGS`` with exactly the SPIFFILE_* variables given."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "spiffile", *args],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def invoke(*args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> Result:
    """CliRunner with a clean SPIFFILE_* environment (CliRunner env=None unsets a variable)."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SPIFFILE_")}
    clean.update(env or {})
    return CliRunner().invoke(cli, list(args), env=clean, input=stdin)


def assert_one_line_error(code: int, stderr: str, stdout: str = "", *, exit_code: int = 1) -> str:
    """A failure: the expected status, one `Error:` line on stderr, no traceback anywhere."""
    assert code == exit_code, (code, stdout, stderr)
    assert "Traceback" not in stderr + stdout
    lines = stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("Error: "), stderr
    if exit_code == 1:
        assert len(lines) == 1, stderr
    return lines[-1]


def assert_result_error(result: Result, *, exit_code: int = 1) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return assert_one_line_error(
        result.exit_code, result.stderr, result.stdout, exit_code=exit_code
    )


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root with `orders` and `billing`, provisioned through the CLI (in-process)."""
    path = tmp_path / "identity"
    ok(invoke("init", "--root", str(path), "--trust-domain", TD))
    ok(invoke("add", "--root", str(path), "orders", "billing"))
    return path


def env_of(root: Path, name: str) -> dict[str, str]:
    variables: dict[str, str] = json.loads(
        ok(invoke("env", "--root", str(root), name, "--format", "json"))
    )
    return variables


def services(root: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(ok(invoke("list", "--root", str(root), "--json")))
    return {entry["name"]: entry for entry in data}


# --- end to end through real processes --------------------------------------------------------


def test_provisioned_root_loads_and_two_services_authenticate(tmp_path: Path) -> None:
    root = tmp_path / "identity"
    first = run("init", "--trust-domain", TD, env={"SPIFFILE_ROOT": str(root)})
    assert first.returncode == 0, first.stderr
    added = run("add", "orders", "billing", "--json", env={"SPIFFILE_ROOT": str(root)})
    assert added.returncode == 0, added.stderr
    assert [entry["id"] for entry in json.loads(added.stdout)] == [ORDERS, BILLING]
    key_file = root / "services" / "orders" / "key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    printed = run("env", "orders", "--root", str(root), "--format", "json")
    orders_env = json.loads(printed.stdout)
    assert set(orders_env) == {"SPIFFILE_ID_FILE", "SPIFFILE_KEY_FILE", "SPIFFILE_BUNDLE_FILE"}
    identity = Identity.from_env(orders_env)
    assert str(identity.id) == ORDERS
    billing_env = json.loads(run("env", "billing", "--root", str(root), "--format", "json").stdout)

    minted = run("token", "--audience", BILLING, env=orders_env)
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    assert token.count(".") == 2

    verified = run("verify", token, env=billing_env)
    assert (verified.returncode, verified.stdout) == (0, ORDERS + "\n"), verified.stderr
    as_json = run("verify", "-", "--json", env=billing_env, stdin=f"Bearer {token}\n")
    caller = json.loads(as_json.stdout)
    assert caller["id"] == ORDERS and caller["claims"]["aud"] == BILLING

    # The token was for billing: orders itself must reject it, with the reason and exit 1.
    rejected = run("verify", token, env=orders_env)
    line = assert_one_line_error(rejected.returncode, rejected.stderr, rejected.stdout)
    assert "(audience)" in line and rejected.stdout == ""


def test_shell_format_survives_eval_with_hostile_path(tmp_path: Path) -> None:
    root = tmp_path / "it's a $root `x`"
    ok(invoke("init", "--root", str(root), "--trust-domain", TD))
    ok(invoke("add", "--root", str(root), "orders"))
    exported = ok(invoke("env", "--root", str(root), "orders"))
    assert all(line.startswith("export SPIFFILE_") for line in exported.splitlines())
    script = exported + '"$PY" -m spiffile whoami --json\n'
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    environment["PY"] = sys.executable
    shell = subprocess.run(
        ["sh", "-c", script], env=environment, capture_output=True, text=True, timeout=60
    )
    assert shell.returncode == 0, shell.stderr
    status = json.loads(shell.stdout)
    assert status["id"] == ORDERS and status["healthy"] is True
    assert status["key_file"] == str(root / "services" / "orders" / "key.pem")


def test_dotenv_format(root: Path) -> None:
    lines = ok(invoke("env", "--root", str(root), "billing", "--format", "dotenv")).splitlines()
    parsed = dict(line.split("=", 1) for line in lines)
    assert parsed == env_of(root, "billing")  # Plain paths are written unquoted.


def test_help_and_errors_of_the_real_script_have_no_traceback(tmp_path: Path) -> None:
    helped = run("--help")
    assert helped.returncode == 0 and "_SPIFFILE_COMPLETE=bash_source spiffile" in helped.stdout
    missing = run("add", "orders", "--root", str(tmp_path / "nowhere"))
    assert_one_line_error(missing.returncode, missing.stderr)
    unconfigured = run("token", "--audience", BILLING)
    assert "SPIFFILE_" in assert_one_line_error(unconfigured.returncode, unconfigured.stderr)


_HEAVY = ("cryptography", "jwt", "watchfiles")
_LOADED_AFTER = "import sys\n{setup}\nprint(sorted(m for m in {heavy!r} if m in sys.modules))\n"
_HELP = (
    "from spiffile.cli import cli\n"
    "cli.main(['--help'], prog_name='spiffile', standalone_mode=False)"
)


def _heavy_modules_after(setup: str) -> list[str]:
    code = _LOADED_AFTER.format(setup=setup, heavy=_HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1].replace("'", '"'))
    return loaded


def test_help_does_not_load_crypto_or_watchfiles() -> None:
    """`spiffile --help` and completion must not pay for cryptography, PyJWT or watchfiles."""
    assert _heavy_modules_after(_HELP) == []


def test_shell_completion(root: Path) -> None:
    environment = {**os.environ, "_SPIFFILE_COMPLETE": "bash_source"}
    source = subprocess.run(
        [sys.executable, "-m", "spiffile"], env=environment, capture_output=True, text=True
    )
    assert "complete " in source.stdout and "_SPIFFILE_COMPLETE=bash_complete" in source.stdout
    completing = {
        **os.environ,
        "_SPIFFILE_COMPLETE": "bash_complete",
        "COMP_WORDS": "spiffile rotate o",
        "COMP_CWORD": "2",
        "SPIFFILE_ROOT": str(root),
    }
    names = subprocess.run(
        [sys.executable, "-m", "spiffile"], env=completing, capture_output=True, text=True
    )
    assert names.stdout.splitlines() == ["plain,orders"]


# --- producer commands (CliRunner) ------------------------------------------------------------


def test_every_command_has_help() -> None:
    for name, command in cli.commands.items():
        text = ok(invoke(name, "--help"))
        assert text.startswith("Usage: ") and (command.help or "") != "", name


def test_init_is_idempotent_and_refuses_another_domain(root: Path) -> None:
    data = json.loads(ok(invoke("init", "--root", str(root), "--trust-domain", TD, "--json")))
    assert data["trust_domain"] == TD
    assert set(services(root)) == {"orders", "billing"}
    assert_result_error(invoke("init", "--root", str(root), "--trust-domain", "other.org"))


def test_add_is_idempotent_and_supports_nested_names(root: Path) -> None:
    before = services(root)["orders"]["kid"]
    ok(invoke("add", "--root", str(root), "orders"))
    assert services(root)["orders"]["kid"] == before
    nested = json.loads(ok(invoke("add", "--root", str(root), "team/payments", "--json")))
    assert nested[0]["id"] == f"spiffe://{TD}/team/payments"
    for bad in ("../escape", "a//b", "/abs", "bad~name", "."):
        line = assert_result_error(invoke("add", "--root", str(root), bad))
        assert "\n" not in line
    assert set(services(root)) == {"orders", "billing", "team/payments"}


def test_add_with_one_bad_name_adds_none(root: Path) -> None:
    """A failing `add good bad~` leaves the root as it was: every name is checked first."""
    bundle = (root / "bundle.json").read_bytes()
    too_long_for_the_id = "/".join(["x" * 200] * 10) + "/" + "y" * 22  # 2032: ID > 2048 bytes
    for bad in ("bad~name", too_long_for_the_id, "good/id"):
        assert_result_error(invoke("add", "--root", str(root), "good", bad))
        assert not (root / "services" / "good").exists()
        assert (root / "bundle.json").read_bytes() == bundle


def test_rotate_keep_drop_prune_revoke(root: Path) -> None:
    first = services(root)["orders"]["kid"]
    kept = json.loads(ok(invoke("rotate", "--root", str(root), "orders", "--json")))
    second = kept["kid"]
    assert second != first and set(kept["bound_kids"]) == {first, second}

    dropped = json.loads(
        ok(invoke("rotate", "--root", str(root), "orders", "--drop-old", "--json"))
    )
    third = dropped["kid"]
    # --drop-old removes the key it replaced; an older kept key stays until pruned or revoked.
    assert second not in dropped["bound_kids"] and third in dropped["bound_kids"]
    assert_result_error(invoke("revoke", "--root", str(root), "orders", "--kid", third))
    if first in dropped["bound_kids"]:
        ok(invoke("revoke", "--root", str(root), "orders", "--kid", first))
    assert services(root)["orders"]["bound_kids"] == [third]
    # Idempotent: a kid that is not bound (a second revoke) is reported, exit 0.
    again = ok(invoke("revoke", "--root", str(root), "orders", "--kid", "no-such-kid"))
    assert "nothing to revoke" in again
    revoked = invoke("revoke", "--root", str(root), "orders", "--kid", "no-such-kid", "--json")
    assert json.loads(ok(revoked)) == {"name": "orders", "kid": "no-such-kid", "revoked": False}

    ok(invoke("rotate", "--root", str(root), "orders"))
    assert_result_error(invoke("prune", "--root", str(root), "orders"))  # Within 90 s.
    pruned = json.loads(ok(invoke("prune", "--root", str(root), "orders", "--force", "--json")))
    assert pruned["removed_kids"] == [third]
    assert "nothing to prune" in ok(invoke("prune", "--root", str(root), "orders"))


def test_two_phase_rotation(root: Path) -> None:
    env = env_of(root, "billing")
    old = services(root)["billing"]["kid"]
    staged = ok(invoke("rotate", "--root", str(root), "billing", "--stage"))
    entry = services(root)["billing"]
    assert entry["kid"] == old and entry["staged_kid"] in entry["bound_kids"]
    assert entry["staged_kid"] in staged
    assert Identity.from_env(env).kid == old  # Still signing with the old key.
    committed = json.loads(
        ok(invoke("rotate", "--root", str(root), "billing", "--commit", "--json"))
    )
    assert committed["kid"] == entry["staged_kid"] and committed["staged_kid"] is None
    assert Identity.from_env(env).kid == committed["kid"]
    assert_result_error(invoke("rotate", "--root", str(root), "billing", "--commit"))
    usage = invoke("rotate", "--root", str(root), "billing", "--stage", "--commit")
    assert_result_error(usage, exit_code=2)


def test_remove_revokes_the_identity(root: Path) -> None:
    orders_env = env_of(root, "orders")
    billing = Identity.from_env(env_of(root, "billing"))
    token = Identity.from_env(orders_env).token(BILLING)
    assert str(billing.verify(token).id) == ORDERS
    assert "removed orders" in ok(invoke("remove", "--root", str(root), "orders"))
    assert not (root / "services" / "orders").exists()
    rejected = invoke("verify", token, env=env_of(root, "billing"))
    assert "(unknown_identity)" in assert_result_error(rejected)
    # Idempotent: removing it again is reported, exit 0.
    assert "nothing to remove" in ok(invoke("remove", "--root", str(root), "orders"))
    again = json.loads(ok(invoke("remove", "--root", str(root), "orders", "--json")))
    assert again == {"name": "orders", "removed": False}
    removed = json.loads(ok(invoke("remove", "--root", str(root), "billing", "--json")))
    assert removed == {"name": "billing", "removed": True}


def test_list_human_and_empty(tmp_path: Path, root: Path) -> None:
    table = ok(invoke("list", "--root", str(root))).splitlines()
    assert table[0].split() == ["NAME", "SPIFFE", "ID", "KID", "KEYS", "STAGED"]
    assert any(line.startswith("orders") and ORDERS in line for line in table)
    empty = tmp_path / "empty"
    ok(invoke("init", "--root", str(empty), "--trust-domain", TD))
    assert ok(invoke("list", "--root", str(empty))) == "no services\n"
    assert json.loads(ok(invoke("list", "--root", str(empty), "--json"))) == []


def test_root_is_required(tmp_path: Path) -> None:
    assert "SPIFFILE_ROOT" in assert_result_error(invoke("list"), exit_code=2)
    assert_result_error(invoke("list", "--root", str(tmp_path / "missing")))
    plain_file = tmp_path / "file"
    plain_file.write_text("x")
    assert_result_error(invoke("list", "--root", str(plain_file)), exit_code=2)
    # An OSError from below the library (not a directory) is one line too.
    under_file = invoke("init", "--root", str(plain_file / "sub"), "--trust-domain", TD)
    assert "Not a directory" in assert_result_error(under_file)
    assert_result_error(invoke("init", "--root", str(tmp_path / "r"), "--trust-domain", "A.b"))
    assert_result_error(invoke("init", "--root", str(tmp_path / "r")), exit_code=2)


def test_version() -> None:
    assert ok(invoke("--version")).startswith("spiffile, version ")


def test_unknown_service_errors(root: Path) -> None:
    for args in (
        ("rotate", "ghost"),
        ("prune", "ghost"),
        ("env", "ghost"),
        ("export", "ghost"),
        ("export-jwks", "ghost"),
        ("revoke", "ghost", "--kid", "k"),
    ):
        assert_result_error(invoke(*args, "--root", str(root)))


def test_export_kubernetes(root: Path) -> None:
    text = ok(invoke("export", "--root", str(root), "orders", "--namespace", "shop"))
    for needle in ('kind: "Secret"', 'kind: "ConfigMap"', 'namespace: "shop"', "SPIFFILE_KEY_FILE"):
        assert needle in text
    assert "BEGIN PRIVATE KEY" not in text  # Secret data is base64, never raw PEM in the clear.


def test_export_jwks(root: Path) -> None:
    jwks = json.loads(ok(invoke("export-jwks", "--root", str(root), "orders")))
    kid = services(root)["orders"]["kid"]
    assert [key["kid"] for key in jwks["keys"]] == [kid]
    assert all("d" not in key and key["use"] == "jwt-svid" for key in jwks["keys"])


# --- workload commands (CliRunner) ------------------------------------------------------------


def test_token_and_verify_options(root: Path) -> None:
    orders_env, billing_env = env_of(root, "orders"), env_of(root, "billing")
    token = ok(invoke("token", "-a", BILLING, "--ttl", "30", env=orders_env)).strip()
    claims = json.loads(ok(invoke("verify", "--json", env=billing_env, stdin=token)))["claims"]
    assert claims["exp"] - claims["iat"] == 30
    # --audience overrides the default (the verifier's own ID).
    assert ok(invoke("verify", token, "-a", BILLING, env=orders_env)) == ORDERS + "\n"
    assert_result_error(invoke("token", "-a", BILLING, "--ttl", "0", env=orders_env), exit_code=2)
    assert_result_error(invoke("token", "-a", "not a spiffe id", env=orders_env))


def test_token_ttl_above_the_lifetime_cap_is_a_usage_error(root: Path) -> None:
    """The library refuses a ttl above max_lifetime (ValueError): one line, no traceback."""
    for ttl in ("3601", "99999999999999999999"):
        result = run("token", "-a", BILLING, "--ttl", ttl, env=env_of(root, "orders"))
        assert "--ttl" in assert_one_line_error(result.returncode, result.stderr, exit_code=2)
    assert ok(invoke("token", "-a", BILLING, "--ttl", "3600", env=env_of(root, "orders")))


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"), "signature"),
        (lambda t: "not.a.token", "malformed"),
        (lambda t: "x" * 9000, "too_large"),
    ],
)
def test_verify_rejections_report_code(root: Path, mutate: Any, code: str) -> None:
    token = Identity.from_env(env_of(root, "orders")).token(BILLING)
    billing_env = env_of(root, "billing")
    result = invoke("verify", mutate(token), env=billing_env)
    assert f"({code})" in assert_result_error(result)
    as_json = invoke("verify", mutate(token), "--json", env=billing_env)
    assert_result_error(as_json)
    assert json.loads(as_json.stdout)["error"]["code"] == code


def test_whoami(root: Path) -> None:
    data = json.loads(ok(invoke("whoami", "--json", env=env_of(root, "orders"))))
    assert data["id"] == ORDERS and data["healthy"] is True and data["key_bound"] is True
    assert data["kid"] == services(root)["orders"]["kid"] and data["identities"] == 2
    assert ORDERS in ok(invoke("whoami", env=env_of(root, "orders")))


def test_workload_commands_need_an_identity(tmp_path: Path) -> None:
    assert_result_error(invoke("token", "-a", BILLING))
    assert_result_error(invoke("verify", "abc"))
    broken = {"SPIFFILE_DIR": str(tmp_path)}
    (tmp_path / "id").write_text(ORDERS + "\n")
    assert_result_error(invoke("whoami", env=broken))


def test_closed_stdin_is_a_usage_error(root: Path) -> None:
    """`verify` and `check -` started with no stdin at all (`<&-`): one line, no traceback."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    for args in (["verify"], ["verify", "-"], ["check", "-"]):
        result = subprocess.run(
            [sys.executable, "-m", "spiffile", *args],
            env={**environment, **env_of(root, "billing")},
            preexec_fn=lambda: os.close(0),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "stdin" in assert_one_line_error(result.returncode, result.stderr, exit_code=2)


# --- check -------------------------------------------------------------------------------------


def test_check_good_and_bad_bundles(tmp_path: Path, root: Path) -> None:
    good = root / "bundle.json"
    assert ok(invoke("check", str(good))).endswith(": ok\n")
    assert json.loads(ok(invoke("check", str(good), "--json")))["ok"] is True

    document = json.loads(good.read_text())
    orders_keys = document["identities"][ORDERS]["keys"]
    orders_keys[0]["d"] = orders_keys[0]["x"]  # A private member in a public bundle.
    document["identities"]["spiffe://other.org/x"] = {"keys": []}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    result = invoke("check", str(bad))
    line = assert_result_error(result)
    problems = result.stdout.splitlines()
    assert len(problems) >= 2 and all(p.startswith(f"{bad}: ") for p in problems)
    assert line == f"Error: {bad}: {len(problems)} problems"
    report = json.loads(invoke("check", str(bad), "--json").stdout)
    assert report["ok"] is False and len(report["problems"]) == len(problems)

    from_stdin = invoke("check", "-", stdin='{"spiffile_version": 2}')
    assert_result_error(from_stdin)
    assert_result_error(invoke("check", str(tmp_path / "absent.json")), exit_code=2)
