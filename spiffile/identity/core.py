"""``Identity``: a workload's SPIFFE ID, signing key and trust bundle, and what it does with them.

Tokens are minted with the current key and cached per audience while most of
their lifetime remains; callers are verified against the current bundle (and,
with a trust directory, other trust domains' documents).
"""

from __future__ import annotations

import enum
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from spiffile import svid
from spiffile.bundle import Bundle
from spiffile.caller import Caller
from spiffile.errors import (
    ConfigurationError,
    InvalidSpiffeIdError,
    SignatureError,
    SpiffileError,
    UnknownIdentityError,
)
from spiffile.files import FileView, Watcher, read_file
from spiffile.identity._federated import _FederatedTrust
from spiffile.identity._loading import (
    _MAX_ID_FILE_BYTES,
    _BundleAcceptance,
    _naming,
    _parse_bundle,
    _parse_id_file,
    _parse_key,
)
from spiffile.identity._verified_cache import _MAX_CACHED_TOKEN, _Verified, _VerifiedTokens
from spiffile.identity.environment import (
    DIR_NAMES,
    ENV_BUNDLE_FILE,
    ENV_DIR,
    ENV_ID_FILE,
    ENV_KEY_FILE,
    ENV_SPIFFE_HELPER_CONFIG,
    ENV_TRUST_DIR,
    _find_x509,
)
from spiffile.identity.status import IdentityStatus
from spiffile.metrics import NO_METRICS, VERIFIED, MetricsRecorder
from spiffile.spiffe_id import SpiffeId
from spiffile.trust import TrustSource

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncGenerator

    from spiffile.authorize import Allow
    from spiffile.changes import Change, ChangeFeed
    from spiffile.federation import TrustDirectory
    from spiffile.tls import X509Source

__all__ = ["Configured", "Identity"]

#: A cached token is reused while more than this fraction of its lifetime remains.
_REUSE_FRACTION: Final = 0.5


class Configured(enum.Enum):
    """The default of a per-call option: "the value this identity was built with".

    A sentinel rather than ``None`` because ``None`` already has a meaning for
    some options (``max_lifetime=None`` lifts the lifetime cap).
    """

    VALUE = "the identity's configured value"

    def __repr__(self) -> str:
        return "Configured.VALUE"


@lru_cache(maxsize=256)
def _check_audience(text: str) -> None:
    """Raise :class:`InvalidSpiffeIdError` unless *text* is a SPIFFE ID.

    Remembered for the audiences a process mints for, so a token minted
    without the cache (``token_cache_size=0``, a cache miss) does not parse
    the same ID again (2 us, row "Identity.token, cache miss"); failures
    raise and are not remembered.
    """
    SpiffeId.parse(text)


class Identity:
    """A workload's identity: its SPIFFE ID, its signing key and the trust bundle."""

    # Class-level defaults, so that subclasses with their own __init__ have them.
    _metrics: MetricsRecorder = NO_METRICS
    _feed: ChangeFeed | None = None
    _x509: X509Source | None = None
    _verified: _VerifiedTokens | None = None

    def __init__(
        self,
        id_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        bundle_file: str | os.PathLike[str],
        *,
        leeway: float = svid.DEFAULT_LEEWAY,
        max_lifetime: float | None = svid.DEFAULT_MAX_LIFETIME,
        token_cache_size: int = 128,
        clock: Callable[[], float] = time.time,
        trust_dir: str | os.PathLike[str] | TrustDirectory | None = None,
        metrics: MetricsRecorder | None = None,
        x509: X509Source | None = None,
        verified_cache_size: int = 1024,
    ) -> None:
        """Load the three files; raise a :class:`SpiffileError` if any is unusable now.

        *verified_cache_size* bounds the tokens :meth:`verify` remembers as
        verified (0 turns the cache off).

        *trust_dir* adds federation: a directory of ``<trust-domain>.json``
        trust documents (or a :class:`~spiffile.federation.TrustDirectory`)
        consulted for callers of every trust domain but this identity's own,
        which its bundle serves.  *metrics* receives what the identity does
        (:mod:`spiffile.metrics`).

        *x509* adds an X.509-SVID (see :class:`spiffile.tls.X509Source`) for
        mutual TLS; its SPIFFE ID must be this identity's.
        """
        try:
            raw_id = read_file(id_file, limit=_MAX_ID_FILE_BYTES)
            self._id = _parse_id_file(raw_id.decode("utf-8").rstrip(), id_file)
        except UnicodeDecodeError as exc:
            raise InvalidSpiffeIdError(f"identity file {os.fspath(id_file)} is not UTF-8") from exc
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path.
            raise ConfigurationError(f"cannot read identity file: {exc}") from exc
        except SpiffileError as exc:
            raise _naming(exc, "identity file", id_file) from exc
        self._id_text = str(self._id)
        self._clock = clock
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._cache_size = token_cache_size
        # (audience, ttl) -> (token, issued, reuse until, kid)
        self._cache: OrderedDict[tuple[str, int], tuple[str, int, float, str]] = OrderedDict()
        self._cache_lock = threading.Lock()
        if verified_cache_size > 0:
            self._verified = _VerifiedTokens(verified_cache_size)
        self._watcher: Watcher | None = None
        try:
            self._key_view = FileView(key_file, _parse_key, description="key", clock=clock)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path.
            raise ConfigurationError(f"cannot read key file: {exc}") from exc
        except SpiffileError as exc:
            raise _naming(exc, "key file", key_file) from exc
        acceptance = _BundleAcceptance()
        try:
            self._bundle_view = FileView(
                bundle_file,
                _parse_bundle,
                description="bundle",
                accept=acceptance,
                clock=clock,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path.
            raise ConfigurationError(f"cannot read bundle file: {exc}") from exc
        except SpiffileError as exc:
            raise _naming(exc, "bundle file", bundle_file) from exc
        bundle = self._bundle_view.get()
        acceptance.guard.admit(bundle)  # The first version: nothing to compare yet.
        if bundle.trust_domain != self._id.trust_domain:
            raise ConfigurationError(
                f"identity {self._id} is not in the bundle's trust domain {bundle.trust_domain}"
            )
        self._trust_dir: TrustDirectory | None = None
        self._federated: _FederatedTrust | None = None
        if trust_dir is not None:
            from spiffile.federation import TrustDirectory

            self._trust_dir = (
                trust_dir
                if isinstance(trust_dir, TrustDirectory)
                else TrustDirectory(trust_dir, clock=clock)
            )
            self._federated = _FederatedTrust(
                self._id.trust_domain, self._bundle_view, self._trust_dir
            )
        if x509 is not None and x509.id != self._id:
            raise ConfigurationError(
                f"the X.509-SVID names {x509.id}, not this identity {self._id}"
            )
        self._x509 = x509
        if metrics is not None:
            self.metrics = metrics

    # -- construction ------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        id_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        bundle_file: str | os.PathLike[str],
        **options: Any,
    ) -> Identity:
        """The identity described by three explicit files."""
        return cls(id_file, key_file, bundle_file, **options)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], **options: Any) -> Identity:
        """The identity in a directory holding ``id``, ``key.pem`` and ``bundle.json``."""
        base = Path(path)
        if "x509" not in options:
            options["x509"] = _find_x509({}, os.fspath(base), options)
        return cls(base / "id", base / "key.pem", base / "bundle.json", **options)

    @classmethod
    def from_spiffe_helper(cls, config: str | os.PathLike[str], **options: Any) -> Identity:
        """The identity spiffe-helper delivers from SPIRE, read through its own configuration.

        *config* is spiffe-helper's HCL configuration file: its ``jwt_svids``
        token files are served by :meth:`token`, its ``jwt_bundle_file_name``
        verifies callers, and the SPIFFE ID comes from its X.509-SVID (or its
        tokens).  See :mod:`spiffile.spiffe_helper`.  Needs the
        ``spiffe-helper`` extra (python-hcl2).
        """
        from spiffile.spiffe_helper import SpiffeHelperIdentity

        return SpiffeHelperIdentity(config, **options)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> Identity:
        """The identity the environment names.

        ``SPIFFILE_ID_FILE``, ``SPIFFILE_KEY_FILE`` and ``SPIFFILE_BUNDLE_FILE``
        each win over ``SPIFFILE_DIR`` for their own file.  ``SPIFFILE_TRUST_DIR``,
        when set, adds the trust documents of other trust domains (federation).
        ``SPIFFILE_SPIFFE_HELPER_CONFIG``, when set, names a spiffe-helper
        configuration, and the identity is SPIRE's (:meth:`from_spiffe_helper`).
        The X.509 files (``svid.pem``, ``svid_key.pem``, ``svid_bundle.pem`` in
        the directory, or ``SPIFFILE_X509_SVID_FILE``, ``SPIFFILE_X509_KEY_FILE``,
        ``SPIFFILE_X509_BUNDLE_FILE``) are loaded when present.
        """
        environ = os.environ if env is None else env
        trust_dir = environ.get(ENV_TRUST_DIR)
        if trust_dir:
            options.setdefault("trust_dir", trust_dir)
        helper_config = environ.get(ENV_SPIFFE_HELPER_CONFIG)
        if helper_config:
            return cls.from_spiffe_helper(helper_config, **options)
        directory = environ.get(ENV_DIR) or None
        paths: dict[str, str] = {}
        for variable, name in DIR_NAMES.items():
            explicit = environ.get(variable)
            if explicit:
                paths[variable] = explicit
            elif directory:
                paths[variable] = os.path.join(directory, name)
            else:
                raise ConfigurationError(f"set {ENV_DIR} or {variable} to locate the identity")
        if "x509" not in options:
            options["x509"] = _find_x509(environ, directory, options)
        return cls(paths[ENV_ID_FILE], paths[ENV_KEY_FILE], paths[ENV_BUNDLE_FILE], **options)

    # -- the identity --------------------------------------------------------------

    @property
    def id(self) -> SpiffeId:
        """This workload's SPIFFE ID."""
        return self._id

    @property
    def kid(self) -> str:
        """The ``kid`` of the key this workload signs with now."""
        return self._key_view.get().kid

    @property
    def bundle(self) -> Bundle:
        """The current trust bundle."""
        return self._bundle_view.get()

    @property
    def trust(self) -> TrustSource:
        """What :meth:`verify` checks callers against: the bundle, plus the trust directory."""
        return self._bundle_view.get() if self._federated is None else self._federated

    @property
    def trust_dir(self) -> TrustDirectory | None:
        """The federated trust documents (``SPIFFILE_TRUST_DIR``), if any."""
        return self._trust_dir

    def token(
        self,
        audience: str | SpiffeId,
        ttl: int = svid.DEFAULT_TTL,
        *,
        claims: Mapping[str, Any] | None = None,
        jti: bool = False,
    ) -> str:
        """A JWT-SVID proving this identity to *audience* (the receiver's SPIFFE ID).

        Served from a bounded per-audience cache while more than half of the
        token's lifetime remains; a rotated key invalidates cached tokens.
        A *ttl* above the identity's ``max_lifetime`` is refused.

        *claims* adds claims to the token; it may never set ``sub``, ``aud``,
        ``exp`` or ``iat`` (``ValueError``).  ``jti=True`` adds a fresh random
        ``jti`` (128 bits) for a receiver that accepts each token once
        (:class:`spiffile.replay.ReplayCache`, PROFILE.md §10).  Such tokens
        are minted on every call and never cached.
        """
        if claims or jti:
            return self._token_with_claims(audience, ttl, claims, jti)
        audience_text = audience if isinstance(audience, str) else str(audience)
        key = self._key_view.get()
        now = self._clock()
        cache_key = (audience_text, ttl)
        cached = self._cache.get(cache_key)
        if cached is not None:
            token, issued, reuse_until, kid = cached
            if kid == key.kid and issued <= now < reuse_until:
                if self._metrics is not NO_METRICS:
                    self._metrics.token_cache_hit()
                return token
        if type(ttl) is not int or ttl <= 0:
            raise ValueError("ttl must be a positive integer number of seconds")
        if self._max_lifetime is not None and ttl > self._max_lifetime:
            # Verifiers with the default cap would reject such a token; say so
            # here rather than hand out a dud (PROFILE.md §5).
            raise ValueError(
                f"ttl {ttl} exceeds the lifetime cap of {self._max_lifetime:g} s; "
                "build the Identity with a larger max_lifetime to mint longer tokens"
            )
        if cached is None:
            # A typo in the audience is an error, not a dud token.  (An
            # audience with a cache entry was parsed when it was minted.)
            _check_audience(audience_text)
        token = svid.mint(key.private_key, key.kid, self._id_text, audience_text, now=now, ttl=ttl)
        if self._metrics is not NO_METRICS:
            self._metrics.token_minted()
        if self._cache_size > 0:
            issued = int(now)
            with self._cache_lock:
                self._cache[cache_key] = (token, issued, issued + ttl * _REUSE_FRACTION, key.kid)
                self._cache.move_to_end(cache_key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return token

    def _token_with_claims(
        self,
        audience: str | SpiffeId,
        ttl: int,
        claims: Mapping[str, Any] | None,
        jti: bool,
    ) -> str:
        """A token with extra claims: never cached, so never shared with the plain one."""
        extra = dict(claims or {})
        if jti:
            if "jti" in extra:
                raise ValueError("pass either jti=True or a 'jti' claim, not both")
            extra["jti"] = secrets.token_urlsafe(16)
        if type(ttl) is not int or ttl <= 0:
            raise ValueError("ttl must be a positive integer number of seconds")
        if self._max_lifetime is not None and ttl > self._max_lifetime:
            raise ValueError(f"ttl {ttl} exceeds the lifetime cap of {self._max_lifetime:g} s")
        audience_text = str(SpiffeId.parse(audience) if isinstance(audience, str) else audience)
        key = self._key_view.get()
        token = svid.mint(
            key.private_key,
            key.kid,
            self._id_text,
            audience_text,
            now=self._clock(),
            ttl=ttl,
            extra_claims=extra,
        )
        self._metrics.token_minted()
        return token

    def verify(
        self,
        token: object,
        audience: str | SpiffeId | None = None,
        *,
        leeway: float | Configured = Configured.VALUE,
        max_lifetime: float | Configured | None = Configured.VALUE,
        issuer: str | None = None,
    ) -> Caller:
        """Verify an inbound token; *audience* defaults to this identity's ID.

        *leeway* and *max_lifetime* default to the values the identity was
        built with (:attr:`Configured.VALUE`); ``max_lifetime=None`` lifts the
        lifetime cap.  *issuer*,
        when given, must equal the token's ``iss``.  A caller from another
        trust domain is checked against its document in the trust directory.
        """
        if leeway is Configured.VALUE:
            leeway = self._leeway
        if max_lifetime is Configured.VALUE:
            max_lifetime = self._max_lifetime
        expected = self._id_text if audience is None else audience
        now = self._clock()
        verified = self._verified
        bundle: Bundle | None = None
        trust: TrustSource
        if self._federated is None:
            trust = bundle = self._bundle_view.get()
            if verified is not None and type(token) is str:
                # A token verified before against this very bundle object:
                # any reload (a revoked key, a rotation) is a new object, so
                # the entry no longer applies.  Audience, times and issuer
                # are checked again; any doubt goes the full way below.
                entry = verified.get(token)
                if (
                    entry is not None
                    and entry.bundle is bundle
                    and (issuer is None or entry.issuer == issuer)
                    and entry.still_valid(
                        expected if isinstance(expected, str) else str(expected),
                        now,
                        leeway,
                        max_lifetime,
                    )
                ):
                    if self._metrics is not NO_METRICS:
                        self._metrics.verification(VERIFIED)
                    return Caller(entry.id, entry.copy_claims(), entry.trust)
        else:
            federated = self._federated
            # (A subclass may set a trust of its own here: spiffe-helper's.)
            trust = federated.for_call() if isinstance(federated, _FederatedTrust) else federated
            verified = None
        try:
            try:
                caller = svid.verify(
                    token,
                    trust,
                    audience=expected,
                    now=now,
                    leeway=leeway,
                    max_lifetime=max_lifetime,
                    issuer=issuer,
                )
            except (UnknownIdentityError, SignatureError):
                # Callers are served the current bundle while a new one is
                # parsed (PROFILE.md §7.2).  A token that only the new one
                # can verify (a key rotated in a moment ago, PROFILE.md §8.2)
                # waits for it instead of failing: only such tokens wait.
                # (A subclass with trust of its own has no bundle view.)
                view: FileView[Bundle] | None = getattr(self, "_bundle_view", None)
                if view is None:
                    raise
                served = (
                    bundle
                    if bundle is not None
                    else (trust if self._federated is None else view.current)
                )
                latest = view.latest()
                if latest is served and not (
                    # A federated document too (PROFILE.md §12): its load is waited for.
                    isinstance(trust, _FederatedTrust) and trust.replaced()
                ):
                    raise
                bundle = latest
                caller = svid.verify(
                    token,
                    latest if self._federated is None else self._federated,
                    audience=expected,
                    now=self._clock(),
                    leeway=leeway,
                    max_lifetime=max_lifetime,
                    issuer=issuer,
                )
        except SpiffileError as exc:
            self._metrics.verification(exc.code)
            raise
        if (
            verified is not None
            and bundle is not None
            and type(token) is str
            and len(token) <= _MAX_CACHED_TOKEN
        ):
            verified.add(token, _Verified(bundle, caller))
        if self._metrics is not NO_METRICS:
            self._metrics.verification(VERIFIED)
        return caller

    @property
    def x509(self) -> X509Source:
        """This workload's X.509-SVID files; :class:`ConfigurationError` without them."""
        if self._x509 is None:
            raise ConfigurationError(
                f"identity {self._id} has no X.509-SVID files (svid.pem, svid_key.pem, "
                "svid_bundle.pem)"
            )
        return self._x509

    def server_ssl_context(self, allow: Allow) -> ssl.SSLContext:
        """A TLS server context presenting our X.509-SVID, admitting peers *allow* accepts.

        *allow* is anything :func:`spiffile.authorize.coerce` takes (bare names
        are in this identity's trust domain).  See :mod:`spiffile.tls`.
        """
        return self.x509.server_ssl_context(allow)

    def client_ssl_context(self, allow: Allow) -> ssl.SSLContext:
        """A TLS client context presenting our X.509-SVID, accepting servers *allow* accepts."""
        return self.x509.client_ssl_context(allow)

    def status(self) -> IdentityStatus:
        """Whether the key and bundle on disk are what is being served, and if the key is bound."""
        # check(), not get(): a status reports what is on disk now, even
        # between a view's looks (at most 50 ms apart, PROFILE.md §7.2).
        key = self._key_view.check()
        bundle = self._bundle_view.check()
        key_status, bundle_status = self._key_view.status(), self._bundle_view.status()
        try:
            bound = any(k.kid == key.kid for k in bundle.keys_for(self._id))
        except SpiffileError:
            bound = False
        x509_status = None if self._x509 is None else self._x509.status()
        status = IdentityStatus(
            id=self._id,
            kid=key.kid,
            healthy=key_status.healthy
            and bundle_status.healthy
            and bound
            and (x509_status is None or x509_status.healthy),
            key=key_status,
            bundle=bundle_status,
            key_bound=bound,
            bundle_sequence=bundle.sequence,
            trust={} if self._trust_dir is None else self._trust_dir.status(),
            x509=x509_status,
        )
        if self._feed is not None:
            self._feed.observe(status)
        return status

    # -- metrics and change notifications ---------------------------------------

    @property
    def metrics(self) -> MetricsRecorder:
        """The recorder this identity reports to (:mod:`spiffile.metrics`); settable."""
        return self._metrics

    @metrics.setter
    def metrics(self, recorder: MetricsRecorder) -> None:
        self._metrics = recorder
        self._changes().metrics = recorder
        recorder.state(self.status())

    def _changes(self) -> ChangeFeed:
        if self._feed is None:
            from spiffile.changes import ChangeFeed

            # Built from the status before the feed exists: no self-observation.
            self._feed = ChangeFeed(self.status(), self._metrics)
        return self._feed

    def _poll(self) -> None:
        # The watcher refreshed the views: let the feed compare and notify.
        self.status()

    def on_change(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call *callback* from the watcher thread after each change; return an unsubscribe.

        Starts push reload (:meth:`watch`).  Each :class:`~spiffile.changes.Change`
        says what changed (key, bundle, a refused file, health) and carries
        the kid and bundle sequence before and after.  A callback that raises
        is logged and does not stop the others.
        """
        unsubscribe = self._changes().subscribe(callback)
        self.watch()
        return unsubscribe

    async def changes(self) -> AsyncGenerator[Change, None]:
        """``async for change in identity.changes()``: the :meth:`on_change` events, in order."""
        import asyncio

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Change] = asyncio.Queue()

        def deliver(change: Change) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, change)
            except RuntimeError:  # The loop is closed: nobody is listening.
                pass

        unsubscribe = self.on_change(deliver)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    # -- push reload -------------------------------------------------------------

    def watch(self) -> Identity:
        """Reload the files as soon as they change (watchfiles), off the request path."""
        if self._watcher is None:
            self._changes()
            self._watcher = Watcher(
                [self._key_view, self._bundle_view],  # type: ignore[list-item]
                on_refresh=self._poll,
            )
            if self._trust_dir is not None:
                self._trust_dir.watch()
        if self._x509 is not None:
            self._x509.watch()
        return self

    def close(self) -> None:
        """Stop the watcher started by :meth:`watch`."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._trust_dir is not None:
            self._trust_dir.close()
        if self._x509 is not None:
            self._x509.close()

    def __enter__(self) -> Identity:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Identity({self._id_text!r})"
