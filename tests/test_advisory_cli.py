"""One regression test per finding against the producer and the command line, named for it.

Each test runs the real ``spiffile`` script (a child process) or the library
against a real root on disk, and asserts the attack or the hostile input
fails safely: one ``Error:`` line, no traceback, nothing secret or raw in any
message.  The docstring says what the finding was.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from tokenforge import b64json, compact, es256_raw

from conformance._impl import Command, InProcess
from conformance.run import load_vectors, run_vectors
from spiffile.bundle import Bundle
from spiffile.errors import HeaderError, SpiffileError
from spiffile.keys import generate_private_key, kid_for, load_private_key_pem, private_key_to_pem
from spiffile.provision import add_service, init_root, service_env
from spiffile.svid import verify

TD = "example.org"
ORDERS = f"spiffe://{TD}/orders"
BILLING = f"spiffe://{TD}/billing"
# Anything a terminal acts on: C0 controls (newline aside, it ends a line), DEL, C1 controls.
_RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def spiffile(
    *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``python -m spiffile ARGS`` with exactly the SPIFFILE_* variables given (bytes out)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "spiffile", *args],
        env=environment,
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[bytes], exit_code: int = 1) -> str:
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == exit_code, (done.returncode, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), stderr
    return lines[-1]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "identity"
    opened = init_root(path, TD)
    add_service(opened, "orders")
    add_service(opened, "billing")
    return path


def _orders_key(root: Path) -> Any:
    return load_private_key_pem((root / "services" / "orders" / "key.pem").read_bytes())


# --- secrets never reach a message ------------------------------------------------------------


def _leaks(body: str, text: str) -> list[str]:
    """Every 16-character run of *body* (a key's base64) that appears in *text*."""
    return [body[i : i + 16] for i in range(len(body) - 15) if body[i : i + 16] in text]


def _error_text(exc: BaseException) -> str:
    parts = []
    current: BaseException | None = exc
    while current is not None:
        parts += [str(current), repr(current), *map(str, current.args)]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


def test_advisory_key_copied_over_the_id_file_is_never_quoted(root: Path) -> None:
    """Information exposure (CWE-209): a producer error quoted 200 characters of a
    service's ``id`` file.  With the key copied over ``id`` (``cp key.pem id``, an
    operator's typo) ``spiffile env orders`` printed the private scalar.  File
    content is now quoted only when it is one line that starts like a SPIFFE ID
    (the identity file rule), on every producer path.
    """
    from spiffile import provision

    directory = root / "services" / "orders"
    pem = (directory / "key.pem").read_bytes()
    (directory / "id").write_bytes(pem)
    body = "".join(pem.decode().splitlines()[1:-1])
    kid = kid_for(_orders_key(root).public_key())
    r = str(root)
    commands = [
        ("add", "--root", r, "orders"),
        ("rotate", "--root", r, "orders"),
        ("rotate", "--root", r, "orders", "--stage"),
        ("rotate", "--root", r, "orders", "--drop-old"),
        ("prune", "--root", r, "orders"),
        ("revoke", "--root", r, "orders", "--kid", kid),
        ("remove", "--root", r, "orders"),
        ("env", "--root", r, "orders"),
        ("env", "--root", r, "orders", "--format", "json"),
        ("export", "--root", r, "orders"),
        ("export-jwks", "--root", r, "orders"),
        ("list", "--root", r),
        ("list", "--root", r, "--json"),
        ("exec", "--root", r, "orders", "--", sys.executable, "-c", "pass"),
    ]
    refused = 0
    for args in commands:
        done = spiffile(*args)
        output = done.stdout.decode() + done.stderr.decode()
        assert not _leaks(body, output), (args, output)
        assert "Traceback" not in output, (args, output)
        refused += done.returncode != 0
    assert refused >= 10  # Every command that works on orders' directory refuses it.

    calls: list[Callable[[], object]] = [
        lambda: provision.add_service(root, "orders"),
        lambda: provision.rotate_service(root, "orders"),
        lambda: provision.rotate_service(root, "orders", keep_old=False),
        lambda: provision.stage_rotation(root, "orders"),
        lambda: provision.commit_rotation(root, "orders"),
        lambda: provision.prune_service(root, "orders"),
        lambda: provision.revoke_key(root, "orders", kid),
        lambda: provision.remove_service(root, "orders"),
        lambda: provision.service_env(root, "orders"),
        lambda: provision.export_kubernetes(root, "orders"),
        lambda: provision.load_identity(root, "orders"),
    ]
    for call in calls:
        with pytest.raises(SpiffileError) as caught:
            call()
        text = _error_text(caught.value)
        assert not _leaks(body, text), text
        assert str(directory / "id") in str(caught.value)
    # Nothing was changed: the key and the id copy are where they were.
    assert (directory / "key.pem").read_bytes() == pem == (directory / "id").read_bytes()


@pytest.mark.parametrize(
    "directory",
    [
        "$(touch PWNED)",
        "`touch PWNED`",
        'it\'s "quoted"',
        "${HOME} and $HOME",
        "back\\slash; touch PWNED",
        "it's $(touch PWNED)",
        "new\nline $(touch PWNED)",
    ],
)
def test_advisory_dotenv_output_never_runs_a_command_when_sourced(
    tmp_path: Path, directory: str
) -> None:
    """Command injection (CWE-78) through ``spiffile env --format dotenv``: a value in
    double quotes kept ``$`` and backticks live, so a hostile root path ran a
    command when the file was sourced.  Values are now single-quoted, or
    double-quoted only when nothing in them is special there; a value that
    cannot be written safely (``'`` with ``$``, a newline) is refused.
    """
    root = tmp_path / directory / "identity"
    opened = init_root(root, TD)
    add_service(opened, "orders")
    expected = service_env(root, "orders")
    done = spiffile("env", "--root", str(root), "orders", "--format", "dotenv")
    if done.returncode != 0:
        line = one_error_line(done)
        assert "dotenv" in line and ("'" in directory or "\n" in directory)
        assert done.stdout == b""  # Nothing half-written.
        return
    dotenv = tmp_path / "orders.env"
    dotenv.write_bytes(done.stdout)
    shown = subprocess.run(
        [
            "sh",
            "-c",
            'set -a; . "$1"; printf "%s\\0%s\\0%s" "$SPIFFILE_ID_FILE" '
            '"$SPIFFILE_KEY_FILE" "$SPIFFILE_BUNDLE_FILE"',
            "sh",
            str(dotenv),
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert not (tmp_path / "PWNED").exists()
    assert shown.stdout.decode().split("\0") == [
        expected["SPIFFILE_ID_FILE"],
        expected["SPIFFILE_KEY_FILE"],
        expected["SPIFFILE_BUNDLE_FILE"],
    ]


# --- attacker text in messages ------------------------------------------------------------------


def test_advisory_header_member_names_reach_messages_escaped(root: Path) -> None:
    """Log and terminal injection (CWE-117, CWE-150) through JWS header member names.

    ``HeaderError`` listed unknown member names raw: ``spiffile verify``
    printed terminal escape sequences from a token, and an application
    logging ``str(exc)`` wrote forged lines.  Names now go through repr, and
    the CLI escapes any control character left in a line it prints.
    """
    key = _orders_key(root)
    hostile = "\x1b]0;owned\x07\x1b[2J\nERROR forged line\r\x9b31m"
    header = {"alg": "ES256", "kid": kid_for(key.public_key()), "typ": "JWT", hostile: 1}
    now = int(time.time())
    claims = {"sub": ORDERS, "aud": BILLING, "exp": now + 60, "iat": now}
    token = compact(b64json(header), b64json(claims), lambda data: es256_raw(key, data))
    bundle = Bundle.parse((root / "bundle.json").read_bytes())
    with pytest.raises(HeaderError) as caught:
        verify(token, bundle, audience=BILLING, now=now)
    assert not _RAW_CONTROL.search(str(caught.value)) and "\n" not in str(caught.value)
    assert "\\x1b" in str(caught.value)

    billing = service_env(root, "billing")
    for args in (("verify", token), ("verify", "--json", token)):
        done = spiffile(*args, env=billing)
        assert done.returncode == 1 and b"Traceback" not in done.stderr
        for stream in (done.stdout.decode(), done.stderr.decode()):
            assert not _RAW_CONTROL.search(stream), stream
            assert "ERROR forged line" not in stream.replace("\\n", "\n").splitlines()
    line = one_error_line(spiffile("verify", token, env=billing))
    assert "(header)" in line and "\\x1b" in line


# --- no traceback for any input ----------------------------------------------------------------


@pytest.mark.parametrize("settle", ["inf", "nan", "1e30", "-1", "-inf", "ten"])
def test_advisory_exec_settle_out_of_range_is_a_usage_error(root: Path, settle: str) -> None:
    """Unchecked float option: ``exec --settle inf|nan|1e30`` ended in a traceback
    (an overflowing timer, or a NaN that compares false with every deadline).
    The option now takes a finite number of seconds in [0, 3600].
    """
    done = spiffile("exec", "--root", str(root), "orders", "--settle", settle, "--", "true")
    line = one_error_line(done, exit_code=2)
    assert "--settle" in line


def test_advisory_huge_spiffe_sequence_fails_one_line(root: Path) -> None:
    """Integer string conversion limit (CVE-2020-10735 hardening in Python): a bundle
    whose ``spiffe_sequence`` has 4300 nines parses, but the producer's next write
    (4301 digits) raised ``ValueError`` from ``json.dumps`` with a traceback.
    The producer now refuses to write a sequence above 2^64 - 1, leaving the
    root as it was; the workload commands and ``check`` still read it.
    """
    bundle_file = root / "bundle.json"
    text = re.sub(
        r'"spiffe_sequence": \d+', '"spiffe_sequence": ' + "9" * 4300, bundle_file.read_text()
    )
    bundle_file.write_text(text)
    for args in (("add", "ledger"), ("rotate", "orders"), ("remove", "billing")):
        line = one_error_line(spiffile(*args, "--root", str(root)))
        assert "spiffe_sequence" in line and "2^64" in line
        assert bundle_file.read_text() == text
    assert not (root / "services" / "ledger" / "key.pem").exists()
    assert spiffile("check", str(bundle_file)).returncode == 0
    whoami = spiffile("whoami", "--json", env=service_env(root, "orders"))
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["bundle_sequence"] == int("9" * 4300)


def test_advisory_check_reads_a_bounded_amount(tmp_path: Path) -> None:
    """Unbounded read (CWE-400): ``spiffile check /dev/zero`` read until memory ran out.
    ``check`` reads at most the bundle size cap plus one byte and reports the excess.
    """
    line = one_error_line(spiffile("check", "/dev/zero"))
    assert "/dev/zero" in line
    done = spiffile("check", "--json", "/dev/zero")
    assert done.returncode == 1 and "larger than" in json.loads(done.stdout)["problems"][0]


def test_advisory_verify_stdin_is_capped(root: Path) -> None:
    """Unbounded read (CWE-400): ``spiffile verify -`` read all of stdin before checking
    the token's size.  It now reads at most 64 KiB and refuses more as a usage error.
    """
    billing = service_env(root, "billing")
    line = one_error_line(spiffile("verify", "-", env=billing, stdin=b"e" * (1 << 20)), 2)
    assert "stdin" in line
    # Not UTF-8: a rejected token, not a decoding traceback.
    line = one_error_line(spiffile("verify", env=billing, stdin=b"\xff\xfe.\x80.\x00\n"))
    assert "(malformed)" in line


def _deep(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def test_advisory_conformance_runner_survives_deeply_nested_answers(tmp_path: Path) -> None:
    """Uncaught RecursionError (CWE-674) in the conformance runner: an adapter echoing
    deeply nested claims aborted the whole run (only ``ValueError`` was caught).
    Such an answer now fails its own vector and the run goes on.
    """
    vectors = [v for v in load_vectors() if v.verb == "verify"][:3]
    adapter = tmp_path / "adapter.py"
    adapter.write_text(
        "import json, sys\n"
        "mode, verb = sys.argv[1], sys.argv[2]\n"
        "request = json.loads(sys.stdin.read())\n"
        f"deep = {_deep()!r}\n"
        'answer = \'{"ok": true, "id": "spiffe://x/y", "claims": \' + deep + \'}\'\n'
        'skip = \'{"ok": false, "error": "unsupported"}\'\n'
        "if verb == 'info':\n"
        "    print(json.dumps({'ok': True, 'batch': mode == 'batch'}))\n"
        "elif verb == 'batch':\n"
        "    print('[' + ', '.join([answer] + [skip] * (len(request) - 1)) + ']')\n"
        "else:\n"
        "    print(answer)\n"
    )
    for mode in ("batch", "single"):
        impl = Command("deep", [sys.executable, str(adapter), mode])
        results = run_vectors(impl, vectors)
        assert len(results) == len(vectors)
        assert results[0].status == "fail", results[0]
        statuses = {r.status for r in results[1:]}
        assert statuses == ({"skip"} if mode == "batch" else {"fail"}), results

    def deep_claims(_request: Mapping[str, Any]) -> dict[str, Any]:
        nested: Any = []
        for _ in range(100_000):
            nested = [nested]
        return {"ok": True, "id": "spiffe://x/y", "claims": nested}

    results = run_vectors(InProcess("in-process", {"verify": deep_claims}), vectors)
    assert [r.status for r in results] == ["fail"] * len(vectors)


# --- operators can use the commands as documented ------------------------------------------------


def test_advisory_workload_commands_take_root_and_name(root: Path) -> None:
    """Usability finding: ``token``, ``verify`` and ``whoami`` needed SPIFFILE_* set
    by hand; they now take ``--root ROOT NAME`` as ``exec`` does, ``token`` and
    ``env`` print JSON on ``--json``, and a ``--ttl`` above the cap says what to do.
    """
    r = str(root)
    minted = spiffile("token", "--root", r, "orders", "-a", BILLING, "--json")
    assert minted.returncode == 0, minted.stderr
    token = json.loads(minted.stdout)
    assert token["id"] == ORDERS and token["audience"] == BILLING and token["ttl"] == 60
    verified = spiffile("verify", "--root", r, "billing", token["token"])
    assert (verified.returncode, verified.stdout) == (0, f"{ORDERS}\n".encode()), verified.stderr
    piped = spiffile("verify", "--root", r, "billing", "--json", stdin=token["token"].encode())
    assert json.loads(piped.stdout)["id"] == ORDERS
    # NAME and TOKEN with the root from SPIFFILE_ROOT.
    from_env = spiffile("verify", "billing", token["token"], env={"SPIFFILE_ROOT": r})
    assert from_env.stdout == f"{ORDERS}\n".encode(), from_env.stderr
    whoami = spiffile("whoami", "--root", r, "orders", "--json")
    assert json.loads(whoami.stdout)["id"] == ORDERS and whoami.returncode == 0
    env_json = spiffile("env", "--root", r, "orders", "--json")
    assert json.loads(env_json.stdout) == service_env(root, "orders")
    for args in (("token", "--root", r, "-a", BILLING), ("whoami", "--root", r)):
        assert "NAME" in one_error_line(spiffile(*args), exit_code=2)
    line = one_error_line(
        spiffile("token", "--root", r, "orders", "-a", BILLING, "--ttl", "99999"), 2
    )
    assert "--ttl" in line and "at most --ttl 3600" in line and "Identity" not in line


def test_advisory_revoke_and_remove_are_idempotent(root: Path) -> None:
    """Scripts re-running a revocation failed on the second run: ``revoke`` of a kid no
    longer bound and ``remove`` of a removed service now report it and exit 0,
    with ``--json`` saying whether anything was done.
    """
    r = str(root)
    old = kid_for(_orders_key(root).public_key())
    assert spiffile("rotate", "--root", r, "orders").returncode == 0
    for expected in (True, False):
        done = spiffile("revoke", "--root", r, "orders", "--kid", old, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"name": "orders", "kid": old, "revoked": expected}
    for expected in (True, False):
        done = spiffile("remove", "--root", r, "billing", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"name": "billing", "removed": expected}
    assert "nothing to remove" in spiffile("remove", "--root", r, "billing").stdout.decode()


@pytest.mark.parametrize("broken", ["id", "key.pem", "bundle.json"])
def test_advisory_every_file_error_names_the_file(root: Path, broken: str) -> None:
    """An error about a file that does not say which file (``not a PKCS#8 PEM private
    key``, ``bundle is not valid UTF-8 JSON``) left operators guessing which of
    three paths was wrong.  Every such error now names the file.
    """
    path = root / "bundle.json" if broken == "bundle.json" else root / "services/orders" / broken
    path.write_bytes(b"\x00not what it should be\n")
    env = {
        "SPIFFILE_ID_FILE": str(root / "services/orders/id"),
        "SPIFFILE_KEY_FILE": str(root / "services/orders/key.pem"),
        "SPIFFILE_BUNDLE_FILE": str(root / "bundle.json"),
    }
    for args, environment in (
        (("whoami",), env),
        (("token", "-a", BILLING), env),
        (("whoami", "--root", str(root), "orders"), {}),
        (("list", "--root", str(root)), {}),
    ):
        done = spiffile(*args, env=environment)
        line = one_error_line(done)
        if args[0] == "list" and broken != "bundle.json":
            # A per-entry error: the table names the file, the error line counts.
            assert str(path) in done.stdout.decode(), done.stdout
        else:
            assert str(path) in line, (args, done.stderr)


# --- operators can see and repair a root --------------------------------------------------------


def test_advisory_one_broken_service_hides_nothing_and_doctor_repairs_it(root: Path) -> None:
    """Availability and visibility finding: one corrupt ``key.pem`` made ``list`` fail for
    the whole root, and a deleted key hid its service from ``list`` while its public
    key was still trusted.  ``list`` now shows every service and bundle entry with
    a per-entry error and exits 1; ``doctor`` gives each problem the command that
    repairs it, and running those commands leaves a healthy root.
    """
    r = str(root)
    for name in ("ledger", "gone", "team/payments"):
        add_service(root, name)
    # A nested pair as older versions made it (add refuses new pairs): team's
    # key placed by hand in the directory that holds payments', then registered.
    (root / "services" / "team" / "key.pem").write_bytes(private_key_to_pem(generate_private_key()))
    os.chmod(root / "services" / "team" / "key.pem", 0o600)
    (root / "services" / "team" / "id").write_text(f"spiffe://{TD}/team\n")
    add_service(root, "team")
    services = root / "services"
    (services / "orders" / "key.pem").write_text("not a key\n")
    (services / "billing" / "key.pem").unlink()
    ledger_pem = (services / "ledger" / "key.pem").read_bytes()
    (services / "ledger" / "id").write_bytes(ledger_pem)
    for leftover in ("id", "key.pem"):
        (services / "gone" / leftover).unlink()
    (services / "gone").rmdir()
    assert spiffile("rotate", "--root", r, "team", "--stage").returncode == 0

    listed = spiffile("list", "--root", r, "--json")
    assert listed.returncode == 1 and b"Traceback" not in listed.stderr
    entries = {entry["id"]: entry for entry in json.loads(listed.stdout)}
    assert set(entries) == {
        f"spiffe://{TD}/{n}"
        for n in ("orders", "billing", "ledger", "gone", "team", "team/payments")
    }
    assert entries[ORDERS]["error"] and entries[BILLING]["error"]
    assert entries[f"spiffe://{TD}/gone"]["error"] and entries[f"spiffe://{TD}/ledger"]["error"]
    assert entries[f"spiffe://{TD}/team"]["error"] is None
    assert entries[f"spiffe://{TD}/team"]["staged_kid"] is not None
    table = spiffile("list", "--root", r)
    assert "4 entries have problems" in one_error_line(table)
    assert b"team/payments" in table.stdout and b"BROKEN" in table.stdout

    doctor = spiffile("doctor", "--root", r, "--json")
    assert doctor.returncode == 1
    report = json.loads(doctor.stdout)
    assert report["healthy"] is False
    codes = {finding["code"] for finding in report["findings"]}
    assert {"key_invalid", "key_missing", "id_invalid", "orphan_entry", "staged_rotation"} <= codes
    assert "nested_service" in codes
    # Nothing from the key that was copied over ledger's id file.
    body = "".join(ledger_pem.decode().splitlines()[1:-1])
    assert not _leaks(body, doctor.stdout.decode() + doctor.stderr.decode())

    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    for finding in report["findings"]:
        if finding["repair"] and finding["severity"] == "error":
            done = subprocess.run(
                ["sh", "-c", finding["repair"]],
                env={**os.environ, "PATH": path},
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, (finding, done.stderr)
    after = json.loads(spiffile("doctor", "--root", r, "--json").stdout)
    assert {f["code"] for f in after["findings"]} == {"staged_rotation", "nested_service"}
    assert spiffile("rotate", "--root", r, "team", "--commit").returncode == 0
    assert spiffile("list", "--root", r).returncode == 0
    healthy = spiffile("doctor", "--root", r, "--json")
    assert [f["code"] for f in json.loads(healthy.stdout)["findings"]] == ["nested_service"]
    assert healthy.returncode == 1  # A nested layout stays a warning until it is moved.
    assert spiffile("remove", "--root", r, "team/payments").returncode == 0
    clean = spiffile("doctor", "--root", r)
    assert clean.returncode == 0 and clean.stdout.endswith(b": healthy\n"), clean.stdout
