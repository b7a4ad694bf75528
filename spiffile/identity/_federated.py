"""The trust an identity with a trust directory verifies against (PROFILE.md §12)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from spiffile.bundle import Bundle
from spiffile.files import FileView
from spiffile.trust import TrustDocument

if TYPE_CHECKING:
    from spiffile.federation import Served, TrustDirectory

__all__ = ["_FederatedTrust"]


class _FederatedTrust:
    """The identity's own bundle for its trust domain, the trust directory for the others."""

    __slots__ = ("_bundle_view", "_directory", "_own", "_served")

    def __init__(
        self,
        own: str,
        bundle_view: FileView[Bundle],
        directory: TrustDirectory,
        served: Served | None = None,
    ) -> None:
        self._own = own
        self._bundle_view = bundle_view
        self._directory = directory
        self._served = served

    def bundle_for(self, trust_domain: str) -> TrustDocument:
        if trust_domain == self._own:
            return self._bundle_view.get().bundle_for(trust_domain)
        if self._served is not None:
            return self._served.bundle_for(trust_domain)
        return self._directory.bundle_for(trust_domain)

    def for_call(self) -> _FederatedTrust:
        """This trust for one verification, remembering the federated document it served."""
        return _FederatedTrust(
            self._own, self._bundle_view, self._directory, self._directory.served()
        )

    def replaced(self) -> bool:
        """Whether the federated document served is replaced once a load under way is done."""
        return self._served is not None and self._served.replaced()
