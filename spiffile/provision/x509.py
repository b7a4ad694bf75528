"""The producer's X.509 CA: an extension of the profile (PROFILE.md, X.509-SVID extension).

A root may hold one X.509 CA.  With it, every service also gets a short-lived
X.509-SVID in the files spiffe-helper writes (``svid.pem``, ``svid_key.pem``),
and the root publishes its X.509 authorities twice: ``<root>/svid_bundle.pem``
for TLS consumers, and the ``x509_authorities`` member of ``bundle.json``
(standard base64 DER, as in a JWK's ``x5c``), which profile v0 consumers ignore.

Files (all under the root's lock, all written atomically)::

    <root>/x509/ca.pem          the CA certificate and its PKCS#8 key, 0600
    <root>/x509/state.json      SVID lifetime and the authorities published
    <root>/svid_bundle.pem      the published authorities (0644)
    <root>/services/<name>/svid.pem       leaf (0644)
    <root>/services/<name>/svid_key.pem   its key (0600, or 0640 in a group layout)

Invariants, as on the JWT side:

- the CA key and every SVID key are never readable by others, not even for
  an instant (``Root.changes.write`` creates them with their mode, atomically, and
  undoes them if the operation fails later);
- a CA issues nothing before it is published: :func:`issue_svid` first
  re-publishes when the current CA is missing from ``svid_bundle.pem``, so
  every crash between two writes leaves a state the next operation completes;
- CA rotation overlaps: the new authority is published beside the old one,
  then becomes the issuer; the old one stays published until every SVID it
  issued has expired.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from spiffile.errors import (
    InvalidKeyError,
    InvalidX509SvidError,
    ProvisionError,
    ServiceNotFoundError,
)
from spiffile.files import read_regular
from spiffile.keys import generate_private_key, private_key_to_pem
from spiffile.provision.root import (
    ID_FILE,
    KEY_FILE,
    KEY_MODE,
    PUBLIC_MODE,
    Root,
    RootLike,
    as_root,
    check_service_dirs,
    key_access,
    locked,
    os_errors,
    service_dir,
    service_id,
    step,
)
from spiffile.spiffe_id import SpiffeId
from spiffile.svid.x509 import load_certificates, load_private_key, parse_svid

__all__ = [
    "CA_DIR",
    "DEFAULT_CA_TTL",
    "DEFAULT_SVID_TTL",
    "SVID_BUNDLE_FILE",
    "SVID_FILE",
    "SVID_KEY_FILE",
    "X509ServiceStatus",
    "enable_x509",
    "issue_svid",
    "renew_svids",
    "renewal_time",
    "rotate_ca",
    "x509_enabled",
    "x509_env",
]

CA_DIR: Final = "x509"
_CA_FILE: Final = "ca.pem"
_STATE_FILE: Final = "state.json"
SVID_FILE: Final = "svid.pem"
SVID_KEY_FILE: Final = "svid_key.pem"
SVID_BUNDLE_FILE: Final = "svid_bundle.pem"
#: The bundle document member holding the X.509 authorities (ignored by profile v0 readers).
BUNDLE_MEMBER: Final = "x509_authorities"
#: X.509-SVID lifetime: short, renewed past half of it.
DEFAULT_SVID_TTL: Final = 3600
#: CA lifetime.
DEFAULT_CA_TTL: Final = 365 * 86400
#: SVIDs start this long before "now", so a peer whose clock is a little behind accepts them.
_BACKDATE: Final = 60
_MAX_STATE_BYTES: Final = 1024 * 1024
_CA_DIR_MODE: Final = 0o700


# -- pure issuance -----------------------------------------------------------------------


def _moment(now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(now), tz=datetime.timezone.utc)


def _serial(*parts: bytes) -> int:
    # 159 random-looking bits from a hash of unique inputs plus fresh entropy.
    digest = hashlib.sha256(b"".join(parts) + os.urandom(16)).digest()
    return int.from_bytes(digest[:20], "big") >> 1 | 1


def make_authority(
    trust_domain: str, key: ec.EllipticCurvePrivateKey, *, now: float, ttl: int
) -> x509.Certificate:
    """A self-signed CA for *trust_domain* (X.509-SVID §4.1: cA, keyCertSign; §2: its ID)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "spiffile"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} X.509 CA {int(now)}"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial(trust_domain.encode()))
        .not_valid_before(_moment(now - _BACKDATE))
        .not_valid_after(_moment(now + ttl))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )


def make_svid(
    spiffe_id: SpiffeId,
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    now: float,
    ttl: int,
) -> x509.Certificate:
    """An X.509-SVID leaf for *spiffe_id* (X.509-SVID §2, §4), never outliving its CA."""
    not_after = min(_moment(now + ttl), ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "spiffile")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial(str(spiffe_id).encode()))
        .not_valid_before(_moment(now - _BACKDATE))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _pem(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


# -- the root's CA -------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    svid_ttl: int
    #: Published authorities, oldest first, with the time each may be dropped (None: current).
    published: tuple[tuple[x509.Certificate, float | None], ...]

    def to_json(self) -> bytes:
        document = {
            "spiffile_x509_version": 1,
            "svid_ttl": self.svid_ttl,
            "published": [
                {"pem": _pem([cert]).decode("ascii"), "until": until}
                for cert, until in self.published
            ],
        }
        return (json.dumps(document, indent=2) + "\n").encode("utf-8")

    @classmethod
    def parse(cls, data: bytes, path: Path) -> _State:
        try:
            document = json.loads(data)
            ttl = document["svid_ttl"]
            published = tuple(
                (load_certificates(item["pem"].encode("ascii"), limit=1)[0], item["until"])
                for item in document["published"]
            )
        except (ValueError, KeyError, TypeError, AttributeError, InvalidX509SvidError) as exc:
            raise ProvisionError(f"{path} is not a spiffile X.509 state file: {exc}") from None
        if type(ttl) is not int or ttl <= 0:
            raise ProvisionError(f"{path}: svid_ttl must be a positive integer")
        return cls(ttl, published)


def x509_enabled(root: RootLike) -> bool:
    """Whether the root holds an X.509 CA."""
    root = as_root(root)
    return os.path.lexists(root.path / CA_DIR / _CA_FILE)


def _read_ca(root: Root) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    path = root.path / CA_DIR / _CA_FILE
    try:
        data = read_regular(path, limit=_MAX_STATE_BYTES)
    except FileNotFoundError:
        raise ProvisionError(
            f"{root.path} has no X.509 CA: run 'spiffile x509 enable' (or init --x509)"
        ) from None
    cert_part, marker, key_part = data.partition(b"-----BEGIN PRIVATE KEY-----")
    try:
        (cert,) = load_certificates(cert_part, limit=1)
        key = load_private_key(marker + key_part)
    except (InvalidX509SvidError, InvalidKeyError, ValueError) as exc:
        raise ProvisionError(f"{path} does not hold a CA certificate and key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisionError(f"{path}: the CA key is not an EC key")
    return cert, key


def _write_ca(root: Root, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    root.changes.write(
        root.path / CA_DIR / _CA_FILE, _pem([cert]) + private_key_to_pem(key), mode=KEY_MODE
    )


def _read_state(root: Root) -> _State | None:
    path = root.path / CA_DIR / _STATE_FILE
    try:
        return _State.parse(read_regular(path, limit=_MAX_STATE_BYTES), path)
    except FileNotFoundError:
        return None


def _publish(root: Root, state: _State) -> None:
    """Write the state, then ``svid_bundle.pem`` and the bundle member, from it."""
    root.changes.write(root.path / CA_DIR / _STATE_FILE, state.to_json(), mode=PUBLIC_MODE)
    step("x509:state-written")
    certificates = [cert for cert, _ in state.published]
    root.changes.write(root.path / SVID_BUNDLE_FILE, _pem(certificates), mode=PUBLIC_MODE)
    step("x509:svid-bundle-written")
    member = [
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii")
        for c in certificates
    ]
    bundle = root.read_bundle()
    if bundle.extra.get(BUNDLE_MEMBER) != member:
        root.write_bundle(bundle.with_extra(BUNDLE_MEMBER, member))
    step("x509:bundle-written")


def _published(root: Root) -> set[str]:
    try:
        data = read_regular(root.path / SVID_BUNDLE_FILE, limit=_MAX_STATE_BYTES)
        return {_fingerprint(c) for c in load_certificates(data, limit=1024)}
    except (FileNotFoundError, InvalidX509SvidError):
        return set()


def enable_x509(
    root: RootLike,
    *,
    svid_ttl: int | None = None,
    ca_ttl: int = DEFAULT_CA_TTL,
    now: float | None = None,
) -> x509.Certificate:
    """Give the root an X.509 CA (idempotent) and issue every service's SVID; return the CA.

    On a root that already has one, only *svid_ttl* (when given) changes.
    """
    root = as_root(root)
    if svid_ttl is not None and (type(svid_ttl) is not int or svid_ttl <= 0):
        raise ProvisionError("the SVID lifetime must be a positive number of seconds")
    moment = time.time() if now is None else now
    with locked(root):
        with os_errors(root):
            root.changes.make_dir(root.path / CA_DIR, _CA_DIR_MODE)
            if x509_enabled(root):
                cert, _ = _read_ca(root)
                state = _read_state(root) or _State(DEFAULT_SVID_TTL, ((cert, None),))
                if svid_ttl is not None:
                    state = _State(svid_ttl, state.published)
                _publish(root, state)
            else:
                key = generate_private_key()
                cert = make_authority(root.trust_domain, key, now=moment, ttl=ca_ttl)
                # Published first: nothing is issued by an authority nobody trusts yet.
                state = _State(svid_ttl or DEFAULT_SVID_TTL, ((cert, None),))
                _publish(root, state)
                _write_ca(root, cert, key)
                step("x509:ca-written")
            for name in _service_names(root):
                _issue(root, name, moment, force=False)
        return cert


def rotate_ca(
    root: RootLike, *, ca_ttl: int = DEFAULT_CA_TTL, now: float | None = None
) -> x509.Certificate:
    """Switch to a new CA with overlap; return it.

    The new authority is published beside the old one before it issues
    anything; the old one stays published until ``now`` + the SVID lifetime,
    when every SVID it issued has expired.  Services get new SVIDs at their
    next renewal (``spiffile x509 renew --force`` re-issues all now).
    """
    root = as_root(root)
    moment = time.time() if now is None else now
    with locked(root), os_errors(root):
        old_cert, _ = _read_ca(root)
        state = _read_state(root) or _State(DEFAULT_SVID_TTL, ((old_cert, None),))
        key = generate_private_key()
        cert = make_authority(root.trust_domain, key, now=moment, ttl=ca_ttl)
        retire = moment + state.svid_ttl + _BACKDATE
        published = (
            *((c, retire if until is None else until) for c, until in state.published),
            (cert, None),
        )
        _publish(root, _State(state.svid_ttl, published))
        _write_ca(root, cert, key)
        step("x509:ca-rotated")
        return cert


# -- services ----------------------------------------------------------------------------


def _service_names(root: Root) -> list[str]:
    from spiffile.provision.services import list_services  # Imported late: services uses us.

    return [info.name for info in list_services(root)]


@dataclass(frozen=True)
class X509ServiceStatus:
    """One service's X.509-SVID after an issue or renewal."""

    name: str
    id: SpiffeId
    expires_at: float
    issued: bool


def _current_svid(directory: Path) -> x509.Certificate | None:
    """The service's leaf, when its files hold an SVID and the key that matches it."""
    try:
        chain = read_regular(directory / SVID_FILE, limit=_MAX_STATE_BYTES)
        key = read_regular(directory / SVID_KEY_FILE, limit=_MAX_STATE_BYTES)
    except FileNotFoundError:
        return None
    try:
        svid, _ = parse_svid(chain, key)
    except (InvalidX509SvidError, InvalidKeyError):
        return None
    return svid.leaf


def _half_life(leaf: x509.Certificate) -> float:
    """The moment *leaf* has lived half its validity window: renewals start there."""
    start = leaf.not_valid_before_utc.timestamp()
    end = leaf.not_valid_after_utc.timestamp()
    return start + (end - start) / 2


def renewal_time(root: RootLike, name: str) -> float:
    """When :func:`renew_svids` starts re-issuing *name*'s SVID: half its validity window.

    0.0 when the service has no SVID or a broken one (due now).  Reads the
    certificate on disk each time, so a caller that waits on it follows every
    re-issue, whoever made it.  (A CA rotation also makes an SVID due; that
    shows only at the next renewal, or with ``x509 renew --force``.)
    """
    root = as_root(root)
    with os_errors(root):
        current = _current_svid(service_dir(root, name))
    return 0.0 if current is None else _half_life(current)


def _ensure_published(root: Root, state: _State, ca_cert: x509.Certificate) -> None:
    """Publish the issuing CA (as current, never retired) before it issues anything.

    Repairs what a crash between writing the CA and publishing it, or in the
    middle of a CA rotation, left behind.
    """
    current = _fingerprint(ca_cert)
    published = tuple(
        (c, None if _fingerprint(c) == current else until) for c, until in state.published
    )
    if not any(_fingerprint(c) == current for c, _ in published):
        published = (*published, (ca_cert, None))
    if published != state.published or current not in _published(root):
        _publish(root, _State(state.svid_ttl, published))


def _issue(root: Root, name: str, now: float, *, force: bool) -> X509ServiceStatus:
    """Issue *name*'s SVID when missing, broken, past half life, or not from the current CA."""
    sid = service_id(root, name)
    directory = service_dir(root, name)
    check_service_dirs(root, name)
    if not os.path.lexists(directory / KEY_FILE) or not os.path.lexists(directory / ID_FILE):
        raise ServiceNotFoundError(f"no service {name!r} in this root")
    ca_cert, ca_key = _read_ca(root)
    state = _read_state(root) or _State(DEFAULT_SVID_TTL, ((ca_cert, None),))
    _ensure_published(root, state, ca_cert)
    current = _current_svid(directory)
    if current is not None and not force:
        leaf = current
        end = leaf.not_valid_after_utc.timestamp()
        fresh = now < _half_life(leaf)
        try:
            leaf.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            fresh = False  # Issued by an earlier CA: re-issue with the current one.
        if fresh:
            return X509ServiceStatus(name, sid, end, issued=False)
    key = generate_private_key()
    leaf = make_svid(sid, key, ca_cert, ca_key, now=now, ttl=state.svid_ttl)
    mode, group = key_access(directory)
    # Key first, then certificate: a reader between the two sees a mismatched
    # pair and keeps serving the previous one (spiffile.tls.X509Source).
    root.changes.write(directory / SVID_KEY_FILE, private_key_to_pem(key), mode=mode, group=group)
    step("x509:svid-key-written")
    root.changes.write(directory / SVID_FILE, _pem([leaf]), mode=PUBLIC_MODE)
    step("x509:svid-written")
    return X509ServiceStatus(name, sid, leaf.not_valid_after_utc.timestamp(), issued=True)


def issue_svid(
    root: RootLike, name: str, *, force: bool = True, now: float | None = None
) -> X509ServiceStatus:
    """Write *name*'s ``svid.pem`` and ``svid_key.pem`` (a new key each time when *force*)."""
    root = as_root(root)
    moment = time.time() if now is None else now
    with locked(root), os_errors(root):
        return _issue(root, name, moment, force=force)


def renew_svids(
    root: RootLike,
    names: Sequence[str] = (),
    *,
    force: bool = False,
    now: float | None = None,
) -> list[X509ServiceStatus]:
    """Re-issue the SVIDs (of *names*, or all services) past half their lifetime.

    Also drops retired authorities whose last SVID has expired.
    """
    root = as_root(root)
    moment = time.time() if now is None else now
    with locked(root), os_errors(root):
        ca_cert, _ = _read_ca(root)  # No CA: say so before anything else.
        state = _read_state(root)
        if state is not None:
            current = _fingerprint(ca_cert)
            kept = tuple(
                (c, u)
                for c, u in state.published
                if u is None or u > moment or _fingerprint(c) == current
            )
            if kept != state.published:
                _publish(root, _State(state.svid_ttl, kept))
        chosen = list(names) or _service_names(root)
        return [_issue(root, name, moment, force=force) for name in chosen]


def x509_env(root: RootLike, name: str) -> dict[str, str]:
    """The ``SPIFFILE_X509_*_FILE`` variables of *name*, or ``{}`` without an SVID."""
    root = as_root(root)
    directory = service_dir(root, name)
    if not os.path.lexists(directory / SVID_FILE):
        return {}
    return {
        "SPIFFILE_X509_SVID_FILE": os.fspath(directory / SVID_FILE),
        "SPIFFILE_X509_KEY_FILE": os.fspath(directory / SVID_KEY_FILE),
        "SPIFFILE_X509_BUNDLE_FILE": os.fspath(root.path / SVID_BUNDLE_FILE),
    }


def remove_svid_files(directory: Path) -> list[Path]:
    """The X.509 files of a service directory that exist (for ``remove_service``)."""
    return [directory / f for f in (SVID_KEY_FILE, SVID_FILE) if os.path.lexists(directory / f)]


def service_hook(root: Root, name: str, *, force: bool) -> None:
    """Called by ``add``/``rotate`` under the lock: issue the SVID when the root has a CA."""
    if x509_enabled(root):
        with contextlib.suppress(ServiceNotFoundError):
            _issue(root, name, time.time(), force=force)
