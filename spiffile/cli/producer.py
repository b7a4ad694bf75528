"""Producer commands of the ``spiffile`` command line: maintain an identity root.

Each command is one call into :mod:`spiffile.provision` (imported inside the
command, so that ``spiffile --help`` does not load cryptography).  The root
comes from ``--root`` or ``SPIFFILE_ROOT``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from spiffile._quote import printable
from spiffile.cli._options import (
    emit_json,
    info_json,
    json_option,
    name_argument,
    need_root,
    one_line,
    opened_root,
    root_option,
)

__all__ = ["COMMANDS"]


@click.command()
@root_option
@click.option("--trust-domain", required=True, help="Trust domain, e.g. example.org.")
@click.option("--x509", "x509", is_flag=True, help="Also hold an X.509 CA (mTLS; extension).")
@json_option
def init(root: Path | None, trust_domain: str, x509: bool, as_json: bool) -> None:
    """Create an identity root (idempotent for the same domain)."""
    from spiffile.provision import init_root

    created = init_root(need_root(root), trust_domain)
    if x509:
        from spiffile.provision.x509 import enable_x509

        enable_x509(created)
    if as_json:
        emit_json(
            {
                "root": str(created.path),
                "trust_domain": created.trust_domain,
                "bundle": str(created.bundle_path),
            }
        )
    else:
        click.echo(f"root {created.path} ready for trust domain {created.trust_domain}")


@click.command()
@root_option
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option(
    "--group",
    metavar="GROUP",
    help="Let GROUP read the key without write access: directory 0750, key 0640 "
    "(run each workload as its own user in its own group).",
)
@json_option
def add(root: Path | None, names: Sequence[str], group: str | None, as_json: bool) -> None:
    """Add services (idempotent: an existing one keeps its key).

    NAME may be nested (team/orders -> spiffe://TD/team/orders).  With
    --group, an existing service is switched to the read-only group layout.
    """
    from spiffile.provision import add_service
    from spiffile.provision.root import service_id

    opened = opened_root(root)
    for name in names:
        service_id(opened, name)  # Check every name first: a bad one adds none.
    infos = [add_service(opened, name, group=group) for name in names]
    if as_json:
        emit_json([info_json(info) for info in infos])
        return
    for info in infos:
        click.echo(f"{info.id}  kid {info.kid}")


@click.command()
@root_option
@name_argument
@click.option(
    "--drop-old",
    is_flag=True,
    help="The old key may be compromised: switch to a fresh key (never a staged one) and "
    "unbind every other key at once.",
)
@click.option(
    "--stage", is_flag=True, help="Phase 1: publish a new key, keep signing with the old."
)
@click.option("--commit", is_flag=True, help="Phase 2: switch the service to the staged key.")
@json_option
def rotate(
    root: Path | None, name: str, drop_old: bool, stage: bool, commit: bool, as_json: bool
) -> None:
    """Give a service a new signing key.

    By default the old public key stays in the bundle so tokens already
    issued keep verifying; remove it later with `spiffile prune`.  When the
    bundle reaches other hosts later than the key does, rotate in two phases:
    --stage, wait until every verifier has the new bundle, --commit, prune.
    """
    from spiffile.provision import commit_rotation, rotate, service_info, stage_rotation

    if sum((drop_old, stage, commit)) > 1:
        raise click.UsageError("--drop-old, --stage and --commit are mutually exclusive")
    opened = opened_root(root)
    if stage:
        kid = stage_rotation(opened, name)
        message = f"staged kid {kid} for {name}; it signs after `spiffile rotate {name} --commit`"
    elif commit:
        kid = commit_rotation(opened, name)
        message = f"{name} now signs with kid {kid}; retire old keys with `spiffile prune {name}`"
    else:
        done = rotate(opened, name, keep_old=not drop_old)
        kid = done.kid
        if drop_old:
            how = "a fresh key"
            if done.discarded_staged_kid is not None:
                how += f" (staged kid {done.discarded_staged_kid} discarded with the old key)"
            message = f"{name} now signs with {how}, kid {kid}; no other key is bound"
        else:
            how = "the staged key" if done.reused_staged else "a fresh key"
            message = (
                f"{name} now signs with {how}, kid {kid}; "
                f"old key kept until `spiffile prune {name}`"
            )
    if as_json:
        emit_json(info_json(service_info(opened, name)))
    else:
        click.echo(message)


@click.command()
@root_option
@name_argument
@click.option("--kid", required=True, help="Key id to remove from the bundle.")
@json_option
def revoke(root: Path | None, name: str, kid: str, as_json: bool) -> None:
    """Revoke one key of a service by kid.

    The current signing key cannot be revoked: rotate first.  Idempotent: a
    kid that is neither bound nor staged (already revoked) is reported and
    the exit status is 0.
    """
    from spiffile.errors import UnknownKeyError
    from spiffile.provision import revoke_key

    try:
        revoke_key(opened_root(root), name, kid)
    except UnknownKeyError:
        revoked = False
    else:
        revoked = True
    if as_json:
        emit_json({"name": name, "kid": kid, "revoked": revoked})
    elif revoked:
        click.echo(f"revoked kid {kid} of {name}")
    else:
        click.echo(one_line(f"kid {kid} is not bound to or staged for {name}: nothing to revoke"))


@click.command()
@root_option
@name_argument
@click.option(
    "--force",
    is_flag=True,
    help="Prune even though the current key started signing less than 90 s ago.",
)
@json_option
def prune(root: Path | None, name: str, force: bool, as_json: bool) -> None:
    """Drop a service's keys no longer in use from the bundle.

    Every bound key except the current (and a staged) one is removed, but
    not within 90 s of a rotation (tokens the old key signed are still
    valid), unless --force.
    """
    from spiffile.provision import prune_service

    removed = prune_service(opened_root(root), name, force=force)
    if as_json:
        emit_json({"name": name, "removed_kids": list(removed)})
    elif removed:
        click.echo(f"removed from {name}: {', '.join(removed)}")
    else:
        click.echo(f"nothing to prune for {name}")


@click.command()
@root_option
@name_argument
@json_option
def remove(root: Path | None, name: str, as_json: bool) -> None:
    """Remove a service: bundle entry (every key) and files.

    Idempotent: removing a service that is not there (already removed) is
    reported and the exit status is 0.
    """
    from spiffile.errors import ServiceNotFoundError
    from spiffile.provision import remove_service

    try:
        remove_service(opened_root(root), name)
    except ServiceNotFoundError:
        removed = False
    else:
        removed = True
    if as_json:
        emit_json({"name": name, "removed": removed})
    elif removed:
        click.echo(f"removed {name}")
    else:
        click.echo(f"no service {name}: nothing to remove")


@click.command(name="list")
@root_option
@json_option
def list_(root: Path | None, as_json: bool) -> None:
    """List every service and bundle entry of a root.

    A broken entry (a key that does not parse, a deleted key whose public
    key is still trusted, an orphan bundle entry) is listed with its error,
    and the exit status is 1; `spiffile doctor` says how to repair it.
    """
    from spiffile.provision.doctor import survey

    entries = survey(opened_root(root)).entries
    broken = [entry for entry in entries if entry.error is not None]
    if as_json:
        emit_json([entry.as_dict() for entry in entries])
    elif not entries:
        click.echo("no services")
    else:
        rows = [("NAME", "SPIFFE ID", "KID", "KEYS", "STAGED")]
        for entry in entries:
            info = entry.info
            rows.append(
                (
                    entry.name or "-",
                    entry.id,
                    info.kid if info else "BROKEN",
                    str(len(info.bound_kids)) if info else "-",
                    (info.staged_kid if info else None) or "-",
                )
            )
        widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        for row in rows:
            line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            click.echo(printable(line.rstrip()))
        for entry in broken:
            click.echo(one_line(f"{entry.name or entry.id}: {entry.error}"))
    if broken:
        plural = "entry has a problem" if len(broken) == 1 else "entries have problems"
        raise click.ClickException(
            f"{len(broken)} {plural}; `spiffile doctor` shows how to repair them"
        )


@click.command()
@root_option
@json_option
def republish(root: Path | None, as_json: bool) -> None:
    """Write the bundle again with the next spiffe_sequence (a doctor repair).

    For a bundle that another tool rewrote without spiffe_sequence, or with a
    number behind what this root has published: consumers refuse a lower
    number than the one they hold, so the next document must be above it.
    """
    from spiffile.provision import republish_bundle

    sequence = republish_bundle(opened_root(root))
    if as_json:
        emit_json({"spiffe_sequence": sequence})
    else:
        click.echo(f"bundle republished with spiffe_sequence {sequence}")


@click.command()
@root_option
@json_option
def doctor(root: Path | None, as_json: bool) -> None:
    """Check a root and print the command that repairs each problem.

    Reports bundle entries without a service, key files that do not parse
    or are not bound, staged rotations, names that differ only in case,
    nested service directories, unsafe modes, owners and links, and
    spiffe_sequence problems.  Exits 0 only for a healthy root (a staged
    rotation is a notice, not a problem).
    """
    from spiffile.provision.doctor import survey

    found = survey(opened_root(root))
    if as_json:
        emit_json(
            {
                "root": str(found.root),
                "healthy": found.healthy,
                "findings": [finding.as_dict() for finding in found.findings],
            }
        )
    else:
        for finding in found.findings:
            click.echo(one_line(f"{finding.severity}: [{finding.code}] {finding.message}"))
            if finding.repair is not None:
                click.echo(f"  repair: {one_line(finding.repair)}")
        if found.healthy:
            click.echo(f"{found.root}: healthy")
    if not found.healthy:
        problems = sum(1 for f in found.findings if f.severity != "notice")
        plural = "problem" if problems == 1 else "problems"
        raise click.ClickException(f"{found.root}: {problems} {plural}")


def _dotenv_value(value: str) -> str:
    """*value* written so that ``sh`` (``set -a; . FILE``) and dotenv readers read it back exactly.

    Plain paths stay unquoted, so the file also works with ``docker
    --env-file`` (which takes values literally).  Otherwise single quotes,
    inside which neither ``sh`` nor python-dotenv expands ``$`` or
    backticks; a value holding ``'`` gets double quotes only when it holds
    none of ``$``, backtick, ``"`` or ``\\``, the characters a double-quoted
    value would give a meaning.  A value that fits none of these (or holds a
    newline or another control character, which dotenv readers disagree on)
    is refused rather than written so that sourcing it runs a command.
    """
    if value and all(c.isalnum() or c in "_./:@%+,=-" for c in value):
        return value
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise click.ClickException(
            f"{one_line(repr(value))} holds a control character: it cannot be written "
            "safely in dotenv format; use --format shell or --format json"
        )
    if "'" not in value:
        return f"'{value}'"
    if not any(c in value for c in '$`"\\'):
        return f'"{value}"'
    raise click.ClickException(
        f"{one_line(repr(value))} holds both ' and one of $ ` \" \\: it cannot be written "
        "safely in dotenv format; use --format shell or --format json"
    )


def _shell_value(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


@click.command()
@root_option
@name_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["shell", "dotenv", "json"]),
    default="shell",
    show_default=True,
    help="shell: export lines for eval; dotenv: KEY=value lines; json: an object.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def env(root: Path | None, name: str, fmt: str, as_json: bool) -> None:
    """Print the SPIFFILE_* environment of a service.

    \b
    eval "$(spiffile env orders)"
    spiffile env orders --format dotenv > orders.env
    """
    from spiffile.provision import service_env

    variables = service_env(opened_root(root), name)
    if fmt == "json" or as_json:
        emit_json(variables)
    elif fmt == "dotenv":
        # Every value checked before the first line is printed: no partial file.
        lines = [f"{key}={_dotenv_value(value)}" for key, value in variables.items()]
        click.echo("\n".join(lines))
    else:
        for key, value in variables.items():
            click.echo(f"export {key}={_shell_value(value)}")


@click.command()
@root_option
@name_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["kubernetes"]),
    default="kubernetes",
    show_default=True,
    help="Output format.",
)
@click.option("--namespace", help="Kubernetes namespace of the generated objects.")
def export(root: Path | None, name: str, fmt: str, namespace: str | None) -> None:
    """Export a service's identity (Kubernetes manifests).

    kubernetes: a Secret (id and key), a ConfigMap (bundle) and the env vars
    and volume mounts that wire them, ready for `kubectl apply -f -`.
    """
    from spiffile.provision import export_kubernetes

    click.echo(export_kubernetes(opened_root(root), name, namespace=namespace), nl=False)


@click.command(name="export-jwks")
@root_option
@name_argument
def export_jwks(root: Path | None, name: str) -> None:
    """Print a service's keys as a SPIFFE JWT bundle (JWK Set).

    For verifiers that speak the SPIFFE bundle format rather than spiffile's
    per-identity document.
    """
    from spiffile.bundle import Bundle, spiffe_jwt_bundle
    from spiffile.files import read_file
    from spiffile.provision import service_info

    opened = opened_root(root)
    info = service_info(opened, name)
    document = Bundle.parse(read_file(opened.bundle_path))
    emit_json(spiffe_jwt_bundle(document, info.id))


COMMANDS = (
    init,
    add,
    rotate,
    revoke,
    prune,
    remove,
    list_,
    doctor,
    republish,
    env,
    export,
    export_jwks,
)
