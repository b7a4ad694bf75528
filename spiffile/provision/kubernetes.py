"""Kubernetes manifests for one provisioned service (``spiffile export --format kubernetes``).

Pure rendering: bytes in, YAML text out; :func:`spiffile.provision.export_kubernetes`
reads the files.  The YAML is written by hand so that PyYAML is not a runtime
dependency: every scalar is a JSON string or number, and JSON scalars are
valid YAML (YAML 1.2 §1.3; also read the same way by YAML 1.1 parsers), so no
value can be misread as a boolean, a number, a comment or a new key.

The Secret holds ``id`` and ``key.pem``; the ConfigMap holds ``bundle.json``
and is shared by every service of the trust domain, so re-applying any
service's export refreshes the bundle for all of them.  Both are mounted as
directories, never with ``subPath``: only whole-volume mounts receive
updates, which is how rotation reaches a running pod without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

from spiffile.errors import ExportError

__all__ = [
    "BUNDLE_MOUNT",
    "IDENTITY_MOUNT",
    "bundle_configmap_name",
    "render_kubernetes",
    "secret_name",
    "to_yaml",
]

IDENTITY_MOUNT: Final = "/var/run/spiffile/identity"
BUNDLE_MOUNT: Final = "/var/run/spiffile/bundle"
#: The API server refuses objects larger than this (etcd's request limit).
MAX_OBJECT_DATA: Final = 1024 * 1024
_MAX_NAME: Final = 253
_DNS_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_PLAIN_KEY: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# Plain keys YAML 1.1 would read as booleans or null.
_YAML11_WORDS: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})

#: What :func:`to_yaml` renders.
Node: TypeAlias = "str | int | bool | Mapping[str, Node] | Sequence[Node] | None"


def _dns_name(prefix: str, text: str) -> str:
    """``prefix + text`` if that is a valid object name, else a sanitized name plus a hash.

    The hash keeps two names that sanitize alike (``Orders``/``orders``) apart.
    """
    candidate = prefix + text
    if len(candidate) <= _MAX_NAME and _DNS_SUBDOMAIN.fullmatch(candidate):
        return candidate
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    cleaned = cleaned[: _MAX_NAME - len(prefix) - len(digest) - 1].strip("-")
    return f"{prefix}{cleaned}-{digest}" if cleaned else f"{prefix}{digest}"


def secret_name(service: str) -> str:
    """``spiffile-<name with '/' as '-'>``, e.g. ``spiffile-team-orders``."""
    return _dns_name("spiffile-", service.replace("/", "-"))


def bundle_configmap_name(trust_domain: str) -> str:
    """``spiffile-bundle-<trust domain>``: one ConfigMap per trust domain and namespace."""
    return _dns_name("spiffile-bundle-", trust_domain)


def _key(name: str) -> str:
    if _PLAIN_KEY.fullmatch(name) and name.lower() not in _YAML11_WORDS:
        return name
    return json.dumps(name)


def _scalar(value: Node) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{}"
    return "[]"


def _is_block(value: Node) -> bool:
    return isinstance(value, Mapping | list | tuple) and len(value) > 0


def _emit(node: Node, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(node, Mapping):
        for name, value in node.items():
            if _is_block(value):
                lines.append(f"{pad}{_key(name)}:")
                _emit(value, indent + 2, lines)
            else:
                lines.append(f"{pad}{_key(name)}: {_scalar(value)}")
    elif isinstance(node, list | tuple):
        for item in node:
            if _is_block(item):
                nested: list[str] = []
                _emit(item, indent + 2, nested)
                lines.append(f"{pad}- {nested[0][indent + 2 :]}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(node)}")


def to_yaml(node: Node) -> str:
    """Block-style YAML for a tree of mappings, sequences, strings, ints, bools and None."""
    lines: list[str] = []
    _emit(node, 0, lines)
    return "\n".join(lines) + "\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _pod_snippet(name: str, secret: str, configmap: str) -> dict[str, Node]:
    container = name.rsplit("/", 1)[-1].lower()
    return {
        "containers": [
            {
                "name": container if _DNS_LABEL.fullmatch(container) else "app",
                "env": [
                    {"name": "SPIFFILE_ID_FILE", "value": f"{IDENTITY_MOUNT}/id"},
                    {"name": "SPIFFILE_KEY_FILE", "value": f"{IDENTITY_MOUNT}/key.pem"},
                    {"name": "SPIFFILE_BUNDLE_FILE", "value": f"{BUNDLE_MOUNT}/bundle.json"},
                ],
                "volumeMounts": [
                    {"name": "spiffile-identity", "mountPath": IDENTITY_MOUNT, "readOnly": True},
                    {"name": "spiffile-bundle", "mountPath": BUNDLE_MOUNT, "readOnly": True},
                ],
            }
        ],
        "volumes": [
            # 256 = 0400: the key file readable by its owner only.
            {"name": "spiffile-identity", "secret": {"secretName": secret, "defaultMode": 256}},
            {"name": "spiffile-bundle", "configMap": {"name": configmap}},
        ],
    }


def render_kubernetes(
    *,
    name: str,
    spiffe_id: str,
    trust_domain: str,
    kid: str,
    id_file: bytes,
    key_pem: bytes,
    bundle_json: bytes,
    namespace: str | None = None,
) -> str:
    """A Secret and a ConfigMap, then a commented pod-spec snippet wiring them in.

    Raises :class:`ExportError` for a namespace that is not a DNS label or
    data too large for one Kubernetes object.
    """
    if namespace is not None and not _DNS_LABEL.fullmatch(namespace):
        raise ExportError(f"namespace {namespace[:80]!r} is not a valid Kubernetes namespace name")
    if len(bundle_json) > MAX_OBJECT_DATA:
        raise ExportError(
            f"bundle.json is {len(bundle_json)} bytes; a ConfigMap holds at most {MAX_OBJECT_DATA}"
        )
    try:
        bundle_text = bundle_json.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExportError("bundle.json is not UTF-8") from exc
    secret = secret_name(name)
    configmap = bundle_configmap_name(trust_domain)

    def metadata(object_name: str, annotations: dict[str, Node]) -> dict[str, Node]:
        meta: dict[str, Node] = {"name": object_name}
        if namespace is not None:
            meta["namespace"] = namespace
        meta["labels"] = {"app.kubernetes.io/managed-by": "spiffile"}
        meta["annotations"] = annotations
        return meta

    secret_doc: dict[str, Node] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(secret, {"spiffile/spiffe-id": spiffe_id, "spiffile/kid": kid}),
        "type": "Opaque",
        "data": {"id": _b64(id_file), "key.pem": _b64(key_pem)},
    }
    configmap_doc: dict[str, Node] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(configmap, {"spiffile/trust-domain": trust_domain}),
        "data": {"bundle.json": bundle_text},
    }
    snippet = to_yaml(_pod_snippet(name, secret, configmap))
    commented = "".join(f"#   {line}\n" for line in snippet.splitlines())
    return (
        f"# spiffile identity for {spiffe_id} (service {name!r}).\n"
        "# The Secret holds a PRIVATE KEY: apply it, do not commit it.\n"
        "---\n"
        + to_yaml(secret_doc)
        + "---\n"
        + to_yaml(configmap_doc)
        + "# Wire it into the workload's pod template (spec.template.spec of a Deployment).\n"
        "# Mount whole volumes (no subPath) so key rotations and bundle updates reach\n"
        "# the running pod; spiffile reloads the files without a restart.\n" + commented
    )
