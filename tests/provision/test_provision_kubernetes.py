"""Tests for spiffile/kubernetes.py and provision.export_kubernetes.

PyYAML is not a dependency, so the output is read back by a strict parser for
the one YAML subset the emitter writes (block mappings and sequences whose
scalars are JSON); it refuses anything else.  When PyYAML happens to be
installed, it reads the output too.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from spiffile.errors import ExportError, ServiceNotFoundError
from spiffile.identity import Identity
from spiffile.provision import Root, add_service, export_kubernetes, init_root, load_identity
from spiffile.provision.kubernetes import (
    BUNDLE_MOUNT,
    IDENTITY_MOUNT,
    Node,
    bundle_configmap_name,
    render_kubernetes,
    secret_name,
    to_yaml,
)

TD = "example.org"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


# -- a strict reader for the emitted subset ---------------------------------------------


def _split_key(text: str) -> tuple[str, str]:
    if text.startswith('"'):
        key, end = json.JSONDecoder().raw_decode(text)
        rest = text[end:]
    else:
        key, colon, after = text.partition(":")
        assert colon and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", key), text
        rest = ":" + after
    assert rest == ":" or rest.startswith(": "), text
    assert isinstance(key, str)
    return key, rest[2:]


def _scalar(text: str) -> Any:
    value = json.loads(text)
    assert not isinstance(value, float)
    assert value in ({}, []) or not isinstance(value, dict | list), text
    return value


def _parse_block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- "):
        items: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            rest = lines[i][1][2:]
            if _is_scalar(rest):
                items.append(_scalar(rest))
                i += 1
            else:
                lines[i] = (indent + 2, rest)
                item, i = _parse_block(lines, i, indent + 2)
                items.append(item)
        return items, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("- "):
        key, value = _split_key(lines[i][1])
        assert key not in mapping, key
        i += 1
        if value:
            mapping[key] = _scalar(value)
        else:
            assert i < len(lines) and lines[i][0] > indent, key
            mapping[key], i = _parse_block(lines, i, lines[i][0])
    return mapping, i


def _is_scalar(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def parse_documents(text: str) -> list[Any]:
    documents = []
    for chunk in re.split(r"^---$", text, flags=re.MULTILINE):
        lines = []
        for raw in chunk.splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            assert "\t" not in raw
            stripped = raw.lstrip(" ")
            lines.append((len(raw) - len(stripped), stripped))
        if not lines:
            continue
        assert lines[0][0] == 0
        node, end = _parse_block(lines, 0, 0)
        assert end == len(lines), f"unparsed line: {lines[end]}"
        documents.append(node)
    return documents


def snippet_of(text: str) -> Any:
    body = [line[4:] for line in text.splitlines() if line.startswith("#   ")]
    (snippet,) = parse_documents("\n".join(body))
    return snippet


# -- tests --------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Root:
    root = init_root(tmp_path / "root", TD)
    add_service(root, "team/orders")
    add_service(root, "billing")
    return root


def test_export_holds_the_service_files(root: Root) -> None:
    text = export_kubernetes(root, "team/orders", namespace="prod")
    secret, configmap = parse_documents(text)
    directory = root.path / "services" / "team" / "orders"

    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "spiffile-team-orders"
    assert secret["metadata"]["namespace"] == "prod"
    assert secret["metadata"]["annotations"]["spiffile/spiffe-id"] == f"spiffe://{TD}/team/orders"
    assert set(secret["data"]) == {"id", "key.pem"}
    assert base64.b64decode(secret["data"]["id"]) == (directory / "id").read_bytes()
    assert base64.b64decode(secret["data"]["key.pem"]) == (directory / "key.pem").read_bytes()

    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == "spiffile-bundle-example.org"
    assert configmap["data"] == {"bundle.json": root.bundle_path.read_text()}


def test_export_wires_env_and_mounts(root: Root) -> None:
    text = export_kubernetes(root, "team/orders")
    secret, configmap = parse_documents(text)
    assert "namespace" not in secret["metadata"]
    snippet = snippet_of(text)
    (container,) = snippet["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in snippet["volumes"]}
    assert env == {
        "SPIFFILE_ID_FILE": f"{IDENTITY_MOUNT}/id",
        "SPIFFILE_KEY_FILE": f"{IDENTITY_MOUNT}/key.pem",
        "SPIFFILE_BUNDLE_FILE": f"{BUNDLE_MOUNT}/bundle.json",
    }
    assert all("subPath" not in m for m in container["volumeMounts"])
    identity_volume = volumes["spiffile-identity"]["secret"]
    bundle_volume = volumes["spiffile-bundle"]["configMap"]
    assert identity_volume == {"secretName": secret["metadata"]["name"], "defaultMode": 0o400}
    assert bundle_volume == {"name": configmap["metadata"]["name"]}
    assert mounts == {"spiffile-identity": IDENTITY_MOUNT, "spiffile-bundle": BUNDLE_MOUNT}


def test_the_exported_objects_make_a_working_workload(root: Root, tmp_path: Path) -> None:
    # Materialize the volumes the way the kubelet does, then load the identity
    # through the environment the snippet sets.
    text = export_kubernetes(root, "team/orders")
    secret, configmap = parse_documents(text)
    env = {item["name"]: item["value"] for item in snippet_of(text)["containers"][0]["env"]}
    pod = tmp_path / "pod"
    for mount, files in (
        (IDENTITY_MOUNT, {k: base64.b64decode(v) for k, v in secret["data"].items()}),
        (BUNDLE_MOUNT, {k: v.encode() for k, v in configmap["data"].items()}),
    ):
        directory = pod / mount.lstrip("/")
        directory.mkdir(parents=True)
        for name, content in files.items():
            fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            os.write(fd, content)
            os.close(fd)
    workload = Identity.from_env({k: str(pod) + v for k, v in env.items()})
    billing = load_identity(root, "billing")
    assert str(billing.verify(workload.token(str(billing.id))).id) == f"spiffe://{TD}/team/orders"


def test_pyyaml_reads_the_export_when_installed(root: Root) -> None:
    yaml = pytest.importorskip("yaml")
    text = export_kubernetes(root, "team/orders", namespace="prod")
    assert [d for d in yaml.safe_load_all(text) if d] == parse_documents(text)


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("orders", "spiffile-orders"),
        ("team/orders", "spiffile-team-orders"),
        ("a.b", "spiffile-a.b"),
    ],
)
def test_secret_names(service: str, expected: str) -> None:
    assert secret_name(service) == expected


SANITIZED_ALIKE = [
    "orders",
    "Orders",
    "ORDERS",
    "a-b",
    "a_b",
    "A_b",
    "a.b",
    "a..b",
    "x",
    "x-",
    "x_",
]


def test_secret_names_are_always_valid_and_distinct() -> None:
    names = [secret_name(service) for service in [*SANITIZED_ALIKE, ".hidden", "_", "A" * 300]]
    for name in names:
        assert len(name) <= 253 and _DNS_SUBDOMAIN.fullmatch(name), name
    assert len(set(names)) == len(names)


def test_configmap_names() -> None:
    assert bundle_configmap_name("example.org") == "spiffile-bundle-example.org"
    name = bundle_configmap_name("my_domain")
    assert _DNS_SUBDOMAIN.fullmatch(name) and name.startswith("spiffile-bundle-my-domain-")


@pytest.mark.parametrize("namespace", ["", "Prod", "a.b", "-x", "x" * 64])
def test_invalid_namespaces_are_refused(root: Root, namespace: str) -> None:
    with pytest.raises(ExportError, match="namespace"):
        export_kubernetes(root, "billing", namespace=namespace)


def test_a_bundle_too_large_for_a_configmap_is_refused() -> None:
    with pytest.raises(ExportError, match="ConfigMap"):
        render_kubernetes(
            name="orders",
            spiffe_id=f"spiffe://{TD}/orders",
            trust_domain=TD,
            kid="k",
            id_file=b"spiffe://example.org/orders\n",
            key_pem=b"",
            bundle_json=b" " * (1024 * 1024 + 1),
        )


def test_export_of_an_unknown_service(root: Root) -> None:
    with pytest.raises(ServiceNotFoundError):
        export_kubernetes(root, "nobody")


TRICKY = ["yes", "no", "on", "null", "~", "#x", "a: b", "- x", "x\ny", "'q'", '"dq"', "é", "", "1"]


def test_scalars_and_keys_cannot_be_misread() -> None:
    tree: dict[str, Node] = {
        "plain": {value: value for value in TRICKY if value},
        "list": [*TRICKY, 7, True, None, {}, []],
        "nested": [{"a": [1, {"b": "c"}]}, [1, 2]],
    }
    text = to_yaml(tree)
    assert parse_documents(text) == [tree]
    for word in ("yes", "no", "on", "null"):
        assert f'\n  "{word}": "{word}"' in text
