"""The code blocks of README.md and docs/ run as written (watchfiles' practice).

Each ``python`` block runs in its own interpreter (``-W error``) against a
freshly provisioned root: ``SPIFFILE_DIR`` names ``orders``' directory,
``BILLING_DIR`` ``billing``'s (each holding ``id``, ``key.pem`` and
``bundle.json``, as a mounted secret would), as docs/index.md says.  A block
that cannot run on its own (it serves forever, or is a fragment inside a
request handler) is listed in ``NOT_RUN`` with the reason; it is still
compiled.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spiffile.files import atomic_write
from spiffile.provision import add_service, init_root, service_env

REPO = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
#: A README block containing this text is compiled but not run, for this reason.
NOT_RUN = {
    "serve_forever()": "serves until killed",
    "token_from_request": "a fragment of a request handler",
    "FastAPI()": "a route declaration for a server the block does not start",
    "Identity.from_spiffe_helper": "needs a running spiffe-helper",
    "SPIFFILE_TRUST_DIR": "needs another trust domain's documents",
    "httpx.Client(": "clients for a server the block does not start",
    "secure_channel(identity": "needs X.509 files and a gRPC server the block does not start",
    'issuer="https://': "needs a token from another issuer",
}


def _blocks(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    out = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 2
        out.append((f"{path.relative_to(REPO)}:{line}", match.group(1)))
    return out


DOCS = sorted(p for p in (REPO / "docs").rglob("*.md") if "api" not in p.parts)
BLOCKS = [b for p in [REPO / "README.md", *DOCS] for b in _blocks(p)]


def test_every_page_with_code_is_found() -> None:
    assert any(where.startswith("docs/guides/") for where, _ in BLOCKS)
    assert any(where.startswith("README.md") for where, _ in BLOCKS)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("docs")
    root = init_root(base / "identity", "example.org")
    add_service(root, "orders")
    add_service(root, "billing")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    for name, variable in (("orders", "SPIFFILE_DIR"), ("billing", "BILLING_DIR")):
        directory = base / name
        directory.mkdir()
        files = service_env(root, name)
        for file, key in (("id", "SPIFFILE_ID_FILE"), ("bundle.json", "SPIFFILE_BUNDLE_FILE")):
            atomic_write(directory / file, Path(files[key]).read_bytes())
        key_pem = Path(files["SPIFFILE_KEY_FILE"]).read_bytes()
        atomic_write(directory / "key.pem", key_pem, mode=0o600)
        environ[variable] = str(directory)
    return environ


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_code_block(where: str, code: str, env: dict[str, str], tmp_path: Path) -> None:
    compile(code, where, "exec")
    reasons = [reason for marker, reason in NOT_RUN.items() if marker in code]
    if reasons:
        pytest.skip(f"compiled only: {reasons[0]}")
    for module in ("prometheus_client", "fastapi", "httpx", "requests"):
        if f"import {module}" in code or f"from {module}" in code:
            pytest.importorskip(module)
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, f"{where}\n{completed.stdout}{completed.stderr}"


def test_api_reference_builds_strict_and_shows_public_defaults(tmp_path: Path) -> None:
    """``mkdocs build --strict`` passes, and signatures show no private sentinel."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    completed = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "WARNING" not in completed.stderr
    page = html.unescape(re.sub(r"<[^>]+>", "", (site / "api/identity/index.html").read_text()))
    assert "leeway: float | Configured = Configured.VALUE" in page
    for text in (p.read_text() for p in site.rglob("*.html")):
        assert "object at 0x" not in text
