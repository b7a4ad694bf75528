"""spiffile.provision.doctor: the survey of a whole root, over real roots on disk."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from spiffile.bundle import Bundle
from spiffile.keys import generate_private_key, public_jwk
from spiffile.provision import add_service, init_root, republish_bundle, rotate_service
from spiffile.provision.doctor import survey

TD = "example.org"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "identity"
    init_root(path, TD)
    add_service(path, "orders")
    return path


def _codes(root: Path) -> dict[str, str | None]:
    return {finding.code: finding.repair for finding in survey(root).findings}


def _rewrite_bundle(root: Path, change: dict[str, object]) -> None:
    document = json.loads((root / "bundle.json").read_text())
    document.update(change)
    (root / "bundle.json").write_text(json.dumps(document))


def test_a_fresh_root_is_healthy_and_lists_every_service(root: Path) -> None:
    add_service(root, "billing")
    found = survey(root)
    assert found.healthy and found.findings == []
    assert [entry.name for entry in found.entries] == ["billing", "orders"]
    assert all(entry.error is None and entry.info is not None for entry in found.entries)


def test_a_rotation_leaves_no_finding_and_a_staged_one_only_a_notice(root: Path) -> None:
    rotate_service(root, "orders")
    assert survey(root).findings == []
    from spiffile.provision import stage_rotation

    stage_rotation(root, "orders")
    found = survey(root)
    assert found.healthy
    assert [(f.code, f.severity) for f in found.findings] == [("staged_rotation", "notice")]
    assert found.findings[0].repair is not None and "--commit" in found.findings[0].repair


def test_orphan_entries_are_listed_with_their_repair(root: Path) -> None:
    key = generate_private_key()
    document = json.loads((root / "bundle.json").read_text())
    bundle = Bundle.from_document(document)
    bundle = bundle.with_keys(f"spiffe://{TD}/ghost", [public_jwk(key.public_key())])
    bundle = bundle.with_keys(
        f"spiffe://{TD}/a/id", [public_jwk(generate_private_key().public_key())]
    )
    (root / "bundle.json").write_bytes(bundle.to_json())
    found = survey(root)
    assert not found.healthy
    orphans = {f.subject: f for f in found.findings if f.code == "orphan_entry"}
    assert set(orphans) == {f"spiffe://{TD}/ghost", f"spiffe://{TD}/a/id"}
    assert orphans[f"spiffe://{TD}/ghost"].repair == f"spiffile remove --root {root} ghost"
    # No valid service name maps to a/id ('id' is a file name): no command can remove it.
    assert orphans[f"spiffe://{TD}/a/id"].repair is None
    assert {entry.id for entry in found.entries} >= set(orphans)


def test_key_unbound_and_case_collision(root: Path) -> None:
    add_service(root, "Orders")
    document = json.loads((root / "bundle.json").read_text())
    del document["identities"][f"spiffe://{TD}/orders"]
    (root / "bundle.json").write_text(json.dumps(document))
    codes = _codes(root)
    assert codes["key_unbound"] == f"spiffile add --root {root} orders"
    assert codes["case_collision"] == f"spiffile remove --root {root} orders"


def test_sequence_beyond_exact_doubles_is_a_warning(root: Path) -> None:
    _rewrite_bundle(root, {"spiffe_sequence": 2**60})
    found = survey(root)
    assert [(f.code, f.severity) for f in found.findings] == [("sequence_inexact", "warning")]
    assert not found.healthy


def test_findings_from_the_file_system_rules_come_through(root: Path) -> None:
    directory = root / "services" / "orders"
    os.chmod(directory, 0o777)
    try:
        found = survey(root)
    finally:
        os.chmod(directory, 0o700)
    unsafe = [f for f in found.findings if f.code == "unsafe_directory"]
    assert unsafe and unsafe[0].repair is not None and "chmod go-w" in unsafe[0].repair
    # The service behind it is listed as unreadable, never as an orphan to remove.
    assert {f.code for f in found.findings} == {"unsafe_directory"}
    (entry,) = found.entries
    assert entry.name == "orders" and entry.error is not None and "not safe" in entry.error
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("change", "code"),
    [({"spiffe_sequence": None}, "sequence_missing"), ({"spiffe_sequence": 1}, "sequence_behind")],
    ids=["missing", "behind"],
)
def test_a_bundle_rewritten_by_another_tool_gets_a_republish_repair(
    root: Path, change: dict[str, object], code: str
) -> None:
    """Another producer dropped or lowered spiffe_sequence: the repair writes above the mark."""
    add_service(root, "billing")  # Publishes sequence 3: above the 1 written below.
    document = json.loads((root / "bundle.json").read_text())
    if change["spiffe_sequence"] is None:
        del document["spiffe_sequence"]
    else:
        document.update(change)
    (root / "bundle.json").write_text(json.dumps(document))
    found = survey(root)
    assert [(f.code, f.severity) for f in found.findings] == [(code, "warning")]
    repair = found.findings[0].repair
    assert repair is not None and repair.startswith("spiffile republish --root ")
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    done = subprocess.run(
        ["sh", "-c", repair], env={**os.environ, "PATH": path}, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((root / "bundle.json").read_text())["spiffe_sequence"] == 4
    assert survey(root).healthy


def test_republish_bundle_keeps_every_entry(root: Path) -> None:
    before = Bundle.parse((root / "bundle.json").read_bytes())
    assert republish_bundle(root) == (before.sequence or 0) + 1
    after = Bundle.parse((root / "bundle.json").read_bytes())
    assert after.to_document()["identities"] == before.to_document()["identities"]
