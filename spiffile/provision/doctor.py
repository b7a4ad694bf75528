"""See a whole root at once: every service, every bundle entry, and what is wrong with each.

One broken service must not hide the others: :func:`survey` reads each
service directory and each bundle entry on its own, records a per-entry
error where one is broken, and turns every problem into a :class:`Finding`
that carries the exact command that repairs it.  ``spiffile list`` shows the
entries, ``spiffile doctor`` the findings.

The survey only reads.  Key files are read without following links and
without narrowing their mode (the producer's write paths do that); the file
system checks (modes, owners, links) come from
:func:`spiffile.provision.root.root_findings`, the same rules every write
applies.  Nothing here quotes a file's content (SECURITY.md, "Key exposure").
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from spiffile._quote import quote_id_content
from spiffile.bundle import Bundle
from spiffile.errors import (
    InvalidServiceNameError,
    ProvisionError,
    SpiffileError,
    UnknownIdentityError,
)
from spiffile.files import open_regular, read_descriptor, read_regular
from spiffile.keys import kid_for, load_private_key_pem
from spiffile.provision.root import (
    ID_FILE,
    KEY_FILE,
    STAGED_KEY_FILE,
    Root,
    RootLike,
    as_root,
    directory_problem,
    locked,
    root_findings,
    service_dir,
    service_id,
)
from spiffile.provision.services import ServiceInfo
from spiffile.spiffe_id import SpiffeId

__all__ = ["Finding", "ServiceEntry", "Survey", "survey"]

Severity = Literal["error", "warning", "notice"]
_SERVICE_FILES: Final = frozenset({ID_FILE, KEY_FILE, STAGED_KEY_FILE})
_MAX_KEY_BYTES: Final = 64 * 1024
#: Readers whose JSON numbers are doubles compare a higher sequence inexactly
#: (PROFILE.md §4.4).
_EXACT_SEQUENCE: Final = 2**53 - 1


@dataclass(frozen=True)
class Finding:
    """One problem in a root and the command that repairs it.

    ``code`` is stable for scripts.  ``severity``: ``error`` (something is
    broken or unsafe), ``warning`` (works, but will bite), ``notice`` (a
    normal state worth knowing, such as a staged rotation; a root with only
    notices is healthy).  ``repair`` is a shell command, or ``None`` when no
    command can know the right answer (``message`` then says what to do).
    """

    code: str
    severity: Severity
    subject: str
    message: str
    repair: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "subject": self.subject,
            "message": self.message,
            "repair": self.repair,
        }


@dataclass(frozen=True)
class ServiceEntry:
    """One service directory or bundle entry, healthy (``info``) or not (``error``)."""

    name: str | None
    id: str
    directory: Path | None
    info: ServiceInfo | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.name,
            "id": self.id,
            "kid": info.kid if info else None,
            "bound_kids": list(info.bound_kids) if info else [],
            "staged_kid": info.staged_kid if info else None,
            "directory": str(self.directory) if self.directory else None,
            "error": self.error,
        }


@dataclass
class Survey:
    """Everything :func:`survey` saw in a root."""

    root: Path
    entries: list[ServiceEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No error and no warning (notices do not count)."""
        return not any(f.severity != "notice" for f in self.findings)


class _Commands:
    """Builds repair commands with every argument shell-quoted."""

    def __init__(self, root: Root) -> None:
        self._root = shlex.quote(os.fspath(root.path))

    def spiffile(self, verb: str, name: str, *extra: str) -> str:
        args = " ".join(shlex.quote(a) for a in (name, *extra))
        return f"spiffile {verb} --root {self._root} {args}"

    def on_root(self, verb: str) -> str:
        return f"spiffile {verb} --root {self._root}"

    def readd(self, name: str) -> str:
        return f"{self.spiffile('remove', name)} && {self.spiffile('add', name)}"


def survey(root: RootLike) -> Survey:
    """Read *root* whole: per-service entries and findings, under the root's lock."""
    root = as_root(root)
    result = Survey(root.path)
    commands = _Commands(root)
    blocked: set[Path] = set()
    for found in root_findings(root):
        result.findings.append(
            Finding(found.kind, "error", str(found.path), found.message, found.repair)
        )
        blocked.add(found.path)
    with locked(root) as bundle:
        seen: set[str] = set()
        for name, directory in _service_directories(root):
            entry = _service(root, bundle, name, directory, commands, result.findings)
            result.entries.append(entry)
            seen.add(entry.id)
        _bundle_entries(root, bundle, seen, blocked, commands, result)
        _sequence(root, bundle, commands, result.findings)
    _collisions(result, commands)
    _nested(result, commands)
    result.entries.sort(key=lambda e: (e.name or "", e.id))
    return result


def _service_directories(root: Root) -> Iterator[tuple[str, Path]]:
    """Directories under ``services/`` that hold a service file, with their names."""
    if not os.path.isdir(root.services_path) or os.path.islink(root.services_path):
        return
    for dirpath, dirnames, filenames in os.walk(root.services_path):
        here = Path(dirpath)
        # Not entered: links and directories others could write (root_findings reports them).
        dirnames[:] = sorted(d for d in dirnames if _safe_directory(here / d))
        if _SERVICE_FILES & set(filenames):
            yield here.relative_to(root.services_path).as_posix(), here


def _safe_directory(path: Path) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return not os.path.islink(path) and directory_problem(st) is None


def _read_kid(path: Path) -> str | None:
    """The ``kid`` of a key file, ``None`` when absent; raises when it is not a usable key."""
    try:
        with open_regular(path) as (fd, _):
            data = read_descriptor(fd, path, _MAX_KEY_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return kid_for(load_private_key_pem(data).public_key())


def _service(
    root: Root,
    bundle: Bundle,
    name: str,
    directory: Path,
    commands: _Commands,
    findings: list[Finding],
) -> ServiceEntry:
    try:
        sid = service_id(root, name)
    except InvalidServiceNameError as exc:
        findings.append(
            Finding(
                "foreign_directory",
                "warning",
                str(directory),
                f"{directory} holds service files but no service name maps to it ({exc})",
                f"rm -r -- {shlex.quote(os.fspath(directory))}",
            )
        )
        return ServiceEntry(name, "", directory, None, str(exc))

    def broken(code: str, severity: Severity, message: str, repair: str | None) -> ServiceEntry:
        findings.append(Finding(code, severity, name, message, repair))
        return ServiceEntry(name, str(sid), directory, None, message)

    id_path = directory / ID_FILE
    try:
        text = read_regular(id_path, limit=4096).decode("utf-8", "replace").rstrip()
    except (FileNotFoundError, NotADirectoryError):
        text = None
        findings.append(
            Finding(
                "id_missing",
                "warning",
                name,
                f"{id_path} is missing: a workload pointed at this directory cannot start",
                commands.spiffile("add", name),
            )
        )
    except (SpiffileError, OSError) as exc:  # A link or a FIFO there: root_findings has it.
        return broken("id_unreadable", "error", f"cannot read {id_path}: {exc}", None)
    if text is not None and text != str(sid):
        shown = quote_id_content(text)
        if shown is None:  # Never quoted: it may be a key copied over the id file.
            return broken(
                "id_invalid",
                "error",
                f"{id_path} does not hold a SPIFFE ID (one line starting with 'spiffe://')",
                f"rm -- {shlex.quote(os.fspath(id_path))} && {commands.spiffile('add', name)}",
            )
        return broken(
            "id_mismatch",
            "error",
            f"{id_path} names {shown}, not {sid}: another service (one whose name differs "
            "only in case) or a hand edit owns this directory; find out which before changing it",
            None,
        )
    bound = _bound(bundle, sid)
    try:
        kid = _read_kid(directory / KEY_FILE)
    except SpiffileError as exc:
        return broken(
            "key_invalid",
            "error",
            f"{directory / KEY_FILE} is not a usable key ({_reason(exc)}); the service cannot "
            "sign, and its bound keys stay trusted until it is removed",
            commands.readd(name),
        )
    if kid is None:
        if bound:
            return broken(
                "key_missing",
                "error",
                f"{name} has no {KEY_FILE}, but {len(bound)} of its keys are still trusted "
                "by the bundle",
                commands.readd(name),
            )
        return broken(
            "leftover_directory",
            "warning",
            f"{directory} holds service files but no {KEY_FILE} and no bundle entry",
            commands.spiffile("remove", name),
        )
    if bound is None:
        return broken(
            "entry_malformed",
            "error",
            f"the bundle entry of {sid} is malformed: verifiers skip it, so {name} cannot "
            "authenticate",
            commands.spiffile("add", name),
        )
    staged_kid: str | None = None
    try:
        staged_kid = _read_kid(directory / STAGED_KEY_FILE)
    except SpiffileError as exc:
        staged_path = shlex.quote(os.fspath(directory / STAGED_KEY_FILE))
        findings.append(
            Finding(
                "staged_key_invalid",
                "error",
                name,
                f"{directory / STAGED_KEY_FILE} is not a usable key ({_reason(exc)})",
                f"rm -- {staged_path}",
            )
        )
    info = ServiceInfo(
        name=name,
        id=sid,
        kid=kid,
        bound_kids=bound,
        staged_kid=staged_kid,
        directory=directory,
    )
    error: str | None = None
    if kid not in bound:
        error = f"its signing key {kid} is not in the bundle: verifiers reject its tokens"
        findings.append(
            Finding("key_unbound", "error", name, error, commands.spiffile("add", name))
        )
    if staged_kid is not None and staged_kid not in bound:
        findings.append(
            Finding(
                "staged_key_unbound",
                "error",
                name,
                f"its staged key {staged_kid} is not in the bundle: committing it now would "
                "break the service",
                commands.spiffile("rotate", name, "--stage"),
            )
        )
    elif staged_kid is not None:
        findings.append(
            Finding(
                "staged_rotation",
                "notice",
                name,
                f"a rotation to key {staged_kid} is staged; commit it once every verifier has "
                "the bundle",
                commands.spiffile("rotate", name, "--commit"),
            )
        )
    return ServiceEntry(name, str(sid), directory, info, error)


def _reason(exc: SpiffileError) -> str:
    # The key loader's message, without the path it may repeat.
    return str(exc).rsplit(": ", 1)[-1]


def _bound(bundle: Bundle, sid: SpiffeId) -> tuple[str, ...] | None:
    """The kids bound to *sid*: ``()`` when absent, ``None`` when the entry is malformed."""
    try:
        return tuple(key.kid for key in bundle.keys_for(sid))
    except UnknownIdentityError:
        return None if str(sid) in bundle.to_document()["identities"] else ()


def _bundle_entries(
    root: Root,
    bundle: Bundle,
    seen: set[str],
    blocked: set[Path],
    commands: _Commands,
    result: Survey,
) -> None:
    """Bundle entries with no service directory: keys trusted for a service that is gone."""
    prefix = f"spiffe://{root.trust_domain}/"
    for text in sorted(bundle.to_document()["identities"]):
        if text in seen:
            continue
        name: str | None = text[len(prefix) :] if text.startswith(prefix) else None
        repair: str | None = None
        if name is not None:
            try:
                service_id(root, name)
            except InvalidServiceNameError:
                name = None
            else:
                repair = commands.spiffile("remove", name)
        if name is not None:
            directory = service_dir(root, name)
            unsafe = next((p for p in blocked if p == directory or p in directory.parents), None)
            if unsafe is not None:
                # Not read: a directory others may write (its own finding says how to fix it).
                message = f"not read: {unsafe} is not safe to read (see its finding)"
                result.entries.append(ServiceEntry(name, text, directory, None, message))
                continue
        try:
            count = len(bundle.keys_for(text))
        except UnknownIdentityError:
            message = f"the bundle holds a malformed entry for {text!r} and no service directory"
        else:
            message = (
                f"the bundle trusts {count} key(s) for {text}, but the root has no "
                "service directory for it (a deleted service that was never removed)"
            )
        if repair is None:
            message += "; edit bundle.json under the root's lock to remove it"
        result.findings.append(Finding("orphan_entry", "error", text, message, repair))
        result.entries.append(ServiceEntry(name, text, None, None, message))


def _sequence(root: Root, bundle: Bundle, commands: _Commands, findings: list[Finding]) -> None:
    sequence = bundle.sequence
    try:
        published = root.high_water()
    except ProvisionError as exc:
        findings.append(Finding("sequence_mark_invalid", "error", str(root.path), str(exc), None))
        published = 0
    if sequence is None or sequence < published:
        # Another tool rewrote the bundle (PROFILE.md §4.4): consumers that
        # loaded a higher number refuse every lower one until they restart.
        shown = "no spiffe_sequence" if sequence is None else f"spiffe_sequence {sequence}"
        findings.append(
            Finding(
                "sequence_missing" if sequence is None else "sequence_behind",
                "warning",
                str(root.bundle_path),
                f"the bundle has {shown} but this root has published {published}: "
                "write it again above that",
                commands.on_root("republish"),
            )
        )
    if sequence is not None and sequence > _EXACT_SEQUENCE:
        findings.append(
            Finding(
                "sequence_inexact",
                "warning",
                str(root.bundle_path),
                "spiffe_sequence is above 2^53 - 1: readers whose JSON numbers are doubles "
                "cannot tell later bundles apart; write a lower sequence by hand and restart "
                "every consumer",
                None,
            )
        )


def _collisions(result: Survey, commands: _Commands) -> None:
    """Names that differ only in case: one directory on macOS and Windows, two identities."""
    by_folded: dict[str, list[str]] = {}
    for entry in result.entries:
        if entry.name:
            by_folded.setdefault(entry.name.casefold(), []).append(entry.name)
    for names in by_folded.values():
        unique = sorted(set(names))
        if len(unique) > 1:
            keep, *others = unique
            for other in others:
                result.findings.append(
                    Finding(
                        "case_collision",
                        "error",
                        other,
                        f"{other} and {keep} differ only in case: on a case-insensitive file "
                        "system they share one directory; remove one of them",
                        commands.spiffile("remove", other),
                    )
                )


def _nested(result: Survey, commands: _Commands) -> None:
    """A service directory inside another's: mounting the outer one exposes the inner key."""
    directories = {e.directory: e.name for e in result.entries if e.directory and e.name}
    for directory, name in directories.items():
        for parent in directory.parents:
            outer = directories.get(parent)
            if outer is not None:
                result.findings.append(
                    Finding(
                        "nested_service",
                        "warning",
                        name,
                        f"{name}'s directory lies inside {outer}'s: whoever can read {outer}'s "
                        f"directory (a volume mount of it) also reads {name}'s key; the repair "
                        f"removes {name} (re-add it under a name outside {outer}/)",
                        commands.spiffile("remove", name),
                    )
                )
                break
