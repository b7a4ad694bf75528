"""The producer side: identity roots, services, rotation, revocation, exports.

``spiffile.provision`` is what a producer holds.  ``root`` owns the root
directory and its lock, ``services`` the operations on services, and
``kubernetes`` renders an identity as Kubernetes objects.
"""

from __future__ import annotations

from spiffile.provision.services import (
    BUNDLE_FILE,
    DEFAULT_LOCK_TIMEOUT,
    ID_FILE,
    KEY_FILE,
    SERVICES_DIR,
    STAGED_KEY_FILE,
    Root,
    RootLike,
    ServiceInfo,
    add_service,
    commit_rotation,
    export_kubernetes,
    init_root,
    list_services,
    load_identity,
    open_root,
    prune_service,
    remove_service,
    revoke_key,
    rotate_service,
    service_env,
    service_info,
    stage_rotation,
    validate_service_name,
)

__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_LOCK_TIMEOUT",
    "ID_FILE",
    "KEY_FILE",
    "SERVICES_DIR",
    "STAGED_KEY_FILE",
    "Root",
    "RootLike",
    "ServiceInfo",
    "add_service",
    "commit_rotation",
    "export_kubernetes",
    "init_root",
    "list_services",
    "load_identity",
    "open_root",
    "prune_service",
    "remove_service",
    "revoke_key",
    "rotate_service",
    "service_env",
    "service_info",
    "stage_rotation",
    "validate_service_name",
]
