"""Graduated services keep their code: an :class:`Identity` over the files spiffe-helper writes.

A workload whose identity moved to SPIRE gets it through spiffe-helper, which
writes SPIRE-issued JWT-SVIDs (one file per configured audience), the JWT
bundle (``jwt_bundle.json``: ``{"<trust domain>": "<base64 JWK Set>"}``) and,
optionally, an X.509-SVID into ``cert_dir``.  :func:`load_config` reads the
helper's own HCL configuration, and :class:`SpiffeHelperIdentity` serves
those files behind the same calls a spiffile identity answers::

    identity = Identity.from_spiffe_helper("/etc/spiffe-helper/helper.conf")
    token = identity.token("spiffe://example.org/billing")   # the helper's file
    caller = identity.verify(inbound)                        # against its bundle

Rules that follow from how spiffe-helper works:

* it rewrites token files **in place**, so a reader can meet half a token: a
  token file is served only once it verifies against the current bundle
  (its signature, its ``sub``, its audience), so a torn file is never
  handed out; the last good token keeps serving meanwhile, and the file is
  read again until it verifies;
* SPIRE chooses a token's lifetime, so ``ttl`` is ignored; a token file
  whose ``exp`` has passed (the helper stopped) raises
  :class:`~spiffile.errors.TokenUnavailableError`, as does an audience the
  helper writes no token for;
* the identity's SPIFFE ID is the X.509-SVID's URI SAN when that file exists,
  else the ``sub`` of its tokens (every token must name the same ID);
* when the configuration names all three X.509 files (``svid_file_name``,
  ``svid_key_file_name``, ``svid_bundle_file_name``, whatever they are called)
  and the SVID exists when the identity is loaded, the identity gets an
  :class:`~spiffile.tls.X509Source` over them: ``server_ssl_context``,
  ``client_ssl_context``, ``identity.x509`` and the certificate's expiry in
  ``status()`` work as on a spiffile identity, and follow the helper's
  renewals.  spiffe-helper writes the bundle file with the authorities of its
  own trust domain; leave ``include_federated_domains`` off and give
  federated authorities through ``trust_dir`` instead, since authorities are
  kept per trust domain (X.509-SVID §5).

HCL is parsed with python-hcl2 (the ``spiffe-helper`` extra): spiffe-helper's
configuration is HCL, and a hand-written subset parser would be a second,
untested dialect of it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509

from spiffile import svid
from spiffile.bundle.spiffe import SpiffeBundle, is_bundle_map, load_json_object, parse_bundle_map
from spiffile.caller import TrustKind
from spiffile.errors import (
    ConfigurationError,
    InvalidBundleError,
    InvalidSpiffeIdError,
    SpiffileError,
    TokenUnavailableError,
)
from spiffile.federation import TrustDirectory
from spiffile.files import FileStatus, FileView, Watcher, read_file
from spiffile.identity import ENV_SPIFFE_HELPER_CONFIG, Identity, IdentityStatus
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import _standard
from spiffile.tls import X509Source
from spiffile.trust import TrustDocument, TrustSet

__all__ = [
    "ENV_SPIFFE_HELPER_CONFIG",
    "JwtSvidFile",
    "SpiffeHelperConfig",
    "SpiffeHelperIdentity",
    "load_config",
    "parse_config",
]

#: A helper configuration is a few hundred bytes.
_MAX_CONFIG_BYTES: Final = 1024 * 1024
_MAX_TOKEN_FILE_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class JwtSvidFile:
    """One ``jwt_svids`` entry: the token file spiffe-helper keeps for an audience."""

    audience: str
    path: Path
    extra_audiences: tuple[str, ...] = ()

    @property
    def audiences(self) -> tuple[str, ...]:
        """Every audience the token carries (the first is the one it was requested for)."""
        return (self.audience, *self.extra_audiences)


@dataclass(frozen=True)
class SpiffeHelperConfig:
    """What spiffile needs from a spiffe-helper configuration, with paths resolved."""

    path: Path
    cert_dir: Path
    jwt_bundle_file: Path
    jwt_svids: tuple[JwtSvidFile, ...]
    svid_file: Path | None = None
    svid_key_file: Path | None = None
    svid_bundle_file: Path | None = None


def _string(config: Mapping[str, Any], name: str, where: str) -> str | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(f"{where}: {name} must be a string")
    if "${" in value:
        raise ConfigurationError(f"{where}: {name} uses interpolation, which spiffe-helper lacks")
    return value


def _file_name(config: Mapping[str, Any], name: str, where: str) -> str | None:
    value = _string(config, name, where)
    if value is None or value == "":
        return None
    if "\0" in value:
        raise ConfigurationError(f"{where}: {name} holds a NUL byte")
    return value


def parse_config(text: str, path: str | os.PathLike[str]) -> SpiffeHelperConfig:
    """Parse spiffe-helper's HCL configuration *text*, read from *path*.

    A relative ``cert_dir`` is taken relative to the configuration file's
    directory (spiffe-helper resolves it against its own working directory,
    which a workload cannot know; keep them the same, or use an absolute
    ``cert_dir``).  Raises :class:`ConfigurationError`.
    """
    where = os.fspath(path)
    try:
        import hcl2
        from hcl2 import SerializationOptions
        from lark.exceptions import LarkError
    except ImportError:
        raise ConfigurationError(
            "reading a spiffe-helper configuration needs python-hcl2: "
            "pip install 'spiffile[spiffe-helper]'"
        ) from None
    options = SerializationOptions(strip_string_quotes=True, with_comments=False)
    try:
        config = hcl2.loads(text, serialization_options=options)
    except (LarkError, ValueError, TypeError, RecursionError, UnicodeError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ConfigurationError(f"{where} is not valid HCL: {first}") from None
    if not isinstance(config, dict):  # pragma: no cover - hcl2 returns a dict
        raise ConfigurationError(f"{where} is not an HCL body")
    cert_dir_text = _string(config, "cert_dir", where)
    if not cert_dir_text:
        raise ConfigurationError(f"{where}: cert_dir is required")
    cert_dir = Path(cert_dir_text)
    if not cert_dir.is_absolute():
        cert_dir = Path(where).parent / cert_dir

    def in_cert_dir(name: str) -> Path | None:
        value = _file_name(config, name, where)
        return None if value is None else cert_dir / value

    bundle_file = in_cert_dir("jwt_bundle_file_name")
    if bundle_file is None:
        raise ConfigurationError(
            f"{where}: jwt_bundle_file_name is required: "
            "spiffile verifies tokens against the JWT bundle spiffe-helper writes"
        )
    entries = config.get("jwt_svids", [])
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigurationError(f"{where}: jwt_svids must be a list of objects")
    svids: list[JwtSvidFile] = []
    for index, entry in enumerate(entries):
        context = f"{where}: jwt_svids[{index}]"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{context} must be an object")
        audience = _string(entry, "jwt_audience", context)
        file_name = _file_name(entry, "jwt_svid_file_name", context)
        if not audience or not file_name:
            raise ConfigurationError(f"{context} needs jwt_audience and jwt_svid_file_name")
        extra = entry.get("jwt_extra_audiences", [])
        if not isinstance(extra, list) or not all(isinstance(a, str) and a for a in extra):
            raise ConfigurationError(f"{context}: jwt_extra_audiences must be a list of strings")
        svids.append(JwtSvidFile(audience, cert_dir / file_name, tuple(extra)))
    seen: set[str] = set()
    for item in svids:
        if item.audience in seen:
            raise ConfigurationError(f"{where}: two jwt_svids entries for {item.audience!r}")
        seen.add(item.audience)
    return SpiffeHelperConfig(
        path=Path(where),
        cert_dir=cert_dir,
        jwt_bundle_file=bundle_file,
        jwt_svids=tuple(svids),
        svid_file=in_cert_dir("svid_file_name"),
        svid_key_file=in_cert_dir("svid_key_file_name"),
        svid_bundle_file=in_cert_dir("svid_bundle_file_name"),
    )


def load_config(path: str | os.PathLike[str]) -> SpiffeHelperConfig:
    """Read and parse the spiffe-helper configuration at *path*."""
    try:
        raw = read_file(path, limit=_MAX_CONFIG_BYTES)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read spiffe-helper configuration: {exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{os.fspath(path)} is not UTF-8") from None
    return parse_config(text, path)


# -- the files ----------------------------------------------------------------------------------


def _parse_jwt_bundle(data: bytes) -> TrustSet:
    """spiffe-helper's JWT bundle file: a bundle map (or, written by hand, one JWK Set)."""
    document = load_json_object(data, "JWT bundle")
    if "keys" in document or not is_bundle_map(document):
        raise InvalidBundleError(
            "the JWT bundle file must be spiffe-helper's map of trust domain -> base64 JWK Set"
        )
    return TrustSet(parse_bundle_map(document))


def _x509_id(path: Path) -> SpiffeId:
    """The SPIFFE ID in the URI SAN of the first certificate of an X.509-SVID file (§2)."""
    try:
        raw = read_file(path)
        certificate = x509.load_pem_x509_certificates(raw)[0]
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.UniformResourceIdentifier)
    except (OSError, ValueError, IndexError, x509.ExtensionNotFound) as exc:
        raise ConfigurationError(f"cannot read the X.509-SVID {path}: {exc}") from None
    spiffe = [name for name in names if name.startswith("spiffe://")]
    if len(spiffe) != 1:
        raise ConfigurationError(f"the X.509-SVID {path} must hold exactly one spiffe:// URI SAN")
    try:
        return SpiffeId.parse(spiffe[0])
    except InvalidSpiffeIdError as exc:
        raise ConfigurationError(f"the X.509-SVID {path}: {exc}") from None


def _x509_source(
    config: SpiffeHelperConfig,
    clock: Callable[[], float],
    trust_dir: str | os.PathLike[str] | TrustDirectory | None,
) -> X509Source | None:
    """The helper's X.509 files under the names its configuration gives, when it wrote them."""
    files = (config.svid_file, config.svid_key_file, config.svid_bundle_file)
    if files[0] is None or files[1] is None or files[2] is None:
        return None
    if not os.path.lexists(files[0]):
        return None  # Not written yet: the ID may come from the tokens meanwhile.
    directory = trust_dir.path if isinstance(trust_dir, TrustDirectory) else trust_dir
    return X509Source(files[0], files[1], files[2], clock=clock, trust_dir=directory)


@dataclass(frozen=True)
class _Token:
    text: str
    subject: SpiffeId
    expires: int
    kid: str


class _HelperTrust:
    """The helper's JWT bundle (its domain and the federated ones), then the trust directory."""

    __slots__ = ("_bundle_view", "_directory")

    def __init__(self, bundle_view: FileView[TrustSet], directory: TrustDirectory | None) -> None:
        self._bundle_view = bundle_view
        self._directory = directory

    def bundle_for(self, trust_domain: str) -> TrustDocument:
        trust = self._bundle_view.get()
        if trust_domain in trust or self._directory is None:
            return trust.bundle_for(trust_domain)
        return self._directory.bundle_for(trust_domain)


class SpiffeHelperIdentity(Identity):
    """An :class:`Identity` whose tokens, bundle and X.509-SVID come from spiffe-helper's files.

    ``token``, ``verify``, ``status``, ``watch``, ``close`` and, with the X.509
    files, ``server_ssl_context`` and ``client_ssl_context`` work as on a
    spiffile identity.  There is no private key: :attr:`kid` is the ``kid``
    of the SPIRE authority that signed the current tokens, and :attr:`bundle`
    is not available (use :attr:`trust`).
    """

    def __init__(
        self,
        config: SpiffeHelperConfig | str | os.PathLike[str],
        *,
        leeway: float = svid.DEFAULT_LEEWAY,
        max_lifetime: float | None = svid.DEFAULT_MAX_LIFETIME,
        clock: Callable[[], float] = time.time,
        trust_dir: str | os.PathLike[str] | TrustDirectory | None = None,
        token_cache_size: int = 0,
        x509: X509Source | None = None,
    ) -> None:
        """Read the configuration, the JWT bundle, the X.509 files and the SPIFFE ID now.

        Raises :class:`ConfigurationError` when the configuration, the bundle,
        the X.509 files it names (once the SVID exists) or every source of the
        ID (X.509-SVID, token files) is unusable.  *x509* replaces the X.509
        files of the configuration.
        """
        del token_cache_size  # The helper's files are the cache.
        self._config = config if isinstance(config, SpiffeHelperConfig) else load_config(config)
        self._clock = clock
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._watcher: Watcher | None = None
        self._lock = threading.Lock()
        try:
            self._helper_bundle = FileView(
                self._config.jwt_bundle_file,
                _parse_jwt_bundle,
                description="JWT bundle",
                clock=clock,
            )
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read spiffe-helper's JWT bundle: {exc}") from exc
        self._trust_dir: TrustDirectory | None = None
        if trust_dir is not None:
            self._trust_dir = (
                trust_dir
                if isinstance(trust_dir, TrustDirectory)
                else TrustDirectory(trust_dir, clock=clock)
            )
        self._helper_trust = _HelperTrust(self._helper_bundle, self._trust_dir)
        # Identity.verify checks callers against _federated when it is set.
        self._federated = self._helper_trust  # type: ignore[assignment]
        self._views: dict[str, FileView[_Token]] = {}
        self._pending: dict[str, str] = {}
        self._x509 = x509 if x509 is not None else _x509_source(self._config, clock, trust_dir)
        x509_file = self._config.svid_file
        self._subject: SpiffeId | None = None
        if self._x509 is not None:
            self._subject = self._x509.id
        elif x509_file is not None and x509_file.exists():
            self._subject = _x509_id(x509_file)
        for item in self._config.jwt_svids:
            self._open(item)
        if self._subject is None:
            reasons = "; ".join(f"{a}: {r}" for a, r in self._pending.items()) or "none configured"
            raise ConfigurationError(
                "spiffe-helper has written no usable X.509-SVID or JWT-SVID to take the "
                f"SPIFFE ID from ({reasons})"
            )
        self._id = self._subject
        self._id_text = str(self._subject)
        if self._id.trust_domain not in self._helper_bundle.get():
            raise ConfigurationError(
                f"spiffe-helper's JWT bundle holds no bundle for {self._id.trust_domain!r}"
            )

    @property
    def config(self) -> SpiffeHelperConfig:
        """The spiffe-helper configuration this identity serves."""
        return self._config

    # -- token files --------------------------------------------------------------------------

    def _parse_token(self, item: JwtSvidFile) -> Callable[[bytes], _Token]:
        def parse(data: bytes) -> _Token:
            try:
                text = data.decode("ascii").strip()
            except UnicodeDecodeError:
                raise InvalidBundleError("the token file is not ASCII") from None
            # Verify it against the helper's bundle, at a moment inside its
            # validity: a torn or foreign file fails here and is never served.
            try:
                _alg, kid, claims, _input, _signature = _standard.parse(text)
            except SpiffileError as exc:
                raise InvalidBundleError(
                    f"the token file does not hold a JWT-SVID: {exc}"
                ) from None
            expires = claims.get("exp")
            if type(expires) is not int:
                raise InvalidBundleError("the token file's JWT-SVID has no integer 'exp'")
            try:
                caller = svid.verify(
                    text,
                    self._helper_trust,
                    audience=item.audience,
                    now=expires - 1,
                    leeway=0,
                    max_lifetime=None,
                )
            except SpiffileError as exc:
                raise InvalidBundleError(f"the token file does not verify: {exc}") from None
            if self._subject is not None and caller.id != self._subject:
                raise InvalidBundleError(
                    f"the token file is for {caller.id}, not this identity {self._subject}"
                )
            if caller.trust is not TrustKind.SPIFFE:
                raise InvalidBundleError("the token file is not signed by a SPIRE authority")
            return _Token(text, caller.id, expires, kid)

        return parse

    def _open(self, item: JwtSvidFile) -> FileView[_Token] | None:
        try:
            view = FileView(
                item.path,
                self._parse_token(item),
                description=f"JWT-SVID for {item.audience!r}",
                clock=self._clock,
            )
        except (SpiffileError, OSError, ValueError) as exc:
            self._pending[item.audience] = (
                str(exc) if isinstance(exc, SpiffileError) else f"cannot read {item.path}: {exc}"
            )
            return None
        self._pending.pop(item.audience, None)
        self._views[item.audience] = view
        if self._subject is None:
            self._subject = view.get().subject
        return view

    def _item(self, audience: str) -> JwtSvidFile:
        for item in self._config.jwt_svids:
            if item.audience == audience:
                return item
        for item in self._config.jwt_svids:
            if audience in item.extra_audiences:
                return item
        known = ", ".join(repr(i.audience) for i in self._config.jwt_svids) or "none"
        raise TokenUnavailableError(
            f"spiffe-helper writes no JWT-SVID for audience {audience[:200]!r} "
            f"(configured: {known}); add it to jwt_svids in {self._config.path}"
        )

    # -- Identity --------------------------------------------------------------------------------

    @property
    def kid(self) -> str:
        """The ``kid`` of the SPIRE authority that signed the first usable token ("" if none)."""
        for view in self._views.values():
            return view.get().kid
        return ""

    @property
    def bundle(self) -> Any:
        """Not available: a SPIFFE bundle binds no identity.  Use :attr:`trust`."""
        raise ConfigurationError(
            "a spiffe-helper identity has no spiffile bundle; its trust is identity.trust"
        )

    def token(
        self,
        audience: str | SpiffeId,
        ttl: int = svid.DEFAULT_TTL,
        *,
        claims: Mapping[str, Any] | None = None,
        jti: bool = False,
    ) -> str:
        """spiffe-helper's current JWT-SVID for *audience*; SPIRE sets its lifetime, not *ttl*.

        Raises :class:`TokenUnavailableError` for an audience the helper is
        not configured for, a token file that has never verified, or one
        whose token has expired.  SPIRE signs these tokens, so *claims* and
        *jti* cannot be added (``ValueError``).
        """
        del ttl
        if claims or jti:
            raise ValueError("spiffe-helper's tokens are signed by SPIRE: no claims can be added")
        audience_text = audience if isinstance(audience, str) else str(audience)
        item = self._item(audience_text)
        view = self._views.get(item.audience)
        if view is None:
            with self._lock:
                view = self._views.get(item.audience) or self._open(item)
            if view is None:
                raise TokenUnavailableError(
                    f"no usable JWT-SVID for {item.audience!r} in {item.path} yet: "
                    f"{self._pending.get(item.audience, 'unknown')}"
                )
        current = view.get()
        if not view.status().healthy:
            # A rewrite that did not verify yet (torn, or signed by an authority
            # the bundle gains a moment later): read it again now.
            current = view.refresh()
        now = self._clock()
        if not current.expires > now:
            raise TokenUnavailableError(
                f"the JWT-SVID for {item.audience!r} in {item.path} expired "
                f"{now - current.expires:.0f} s ago; is spiffe-helper running?"
            )
        return current.text

    def status(self) -> IdentityStatus:
        """The JWT bundle's and token files' health; healthy when every token is usable now."""
        bundle_status = self._helper_bundle.status()
        now = self._clock()
        usable = True
        first: FileStatus | None = None
        for item in self._config.jwt_svids:
            view = self._views.get(item.audience) or self._open(item)
            if view is None:
                usable = False
                first = first or FileStatus(
                    path=os.fspath(item.path),
                    description=f"JWT-SVID for {item.audience!r}",
                    healthy=False,
                    error=self._pending.get(item.audience),
                    loaded_at=0.0,
                    reloads=0,
                    failures=1,
                )
                continue
            token = view.get()
            file_status = view.status()
            if not token.expires > now:
                usable = False
                file_status = FileStatus(
                    path=file_status.path,
                    description=file_status.description,
                    healthy=False,
                    error="the token has expired",
                    loaded_at=file_status.loaded_at,
                    reloads=file_status.reloads,
                    failures=file_status.failures,
                )
            if first is None or (first.healthy and not file_status.healthy):
                first = file_status
        key_status = first or FileStatus(
            path=os.fspath(self._config.path),
            description="JWT-SVIDs",
            healthy=True,
            error=None,
            loaded_at=0.0,
            reloads=0,
            failures=0,
        )
        own = self._helper_bundle.get()
        document = own.bundle_for(self._id.trust_domain) if self._id.trust_domain in own else None
        x509_status = None if self._x509 is None else self._x509.status()
        status = IdentityStatus(
            id=self._id,
            kid=self.kid,
            healthy=bundle_status.healthy
            and usable
            and key_status.healthy
            and (x509_status is None or x509_status.healthy),
            key=key_status,
            bundle=bundle_status,
            key_bound=usable,
            bundle_sequence=document.sequence if isinstance(document, SpiffeBundle) else None,
            trust={} if self._trust_dir is None else self._trust_dir.status(),
            x509=x509_status,
        )
        if self._feed is not None:
            self._feed.observe(status)
        return status

    def watch(self) -> SpiffeHelperIdentity:
        """Reload the bundle and token files as soon as they change."""
        if self._watcher is None:
            self._changes()
            views: list[Any] = [self._helper_bundle, *self._views.values()]
            self._watcher = Watcher(views, on_refresh=self._poll)
            if self._trust_dir is not None:
                self._trust_dir.watch()
        if self._x509 is not None:
            self._x509.watch()
        return self

    def __repr__(self) -> str:
        return f"SpiffeHelperIdentity({self._id_text!r}, config={os.fspath(self._config.path)!r})"
