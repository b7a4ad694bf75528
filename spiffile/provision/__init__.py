"""The producer side: identity roots, services, rotation, revocation, exports.

``spiffile.provision`` is what a producer holds.  ``root`` owns the root
directory and its lock, ``services`` the operations on services, and
``kubernetes`` renders an identity as Kubernetes objects, ``doctor`` surveys a
root for problems and ``x509`` is the X.509 CA extension.  This package
re-exports the producer API of ``services`` (its ``__all__``).
"""

from __future__ import annotations

from spiffile.provision import services as _services
from spiffile.provision.services import *  # noqa: F403 - services.__all__ is the producer API

__all__ = list(_services.__all__)
