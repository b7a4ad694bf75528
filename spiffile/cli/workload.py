"""Workload commands: ``token``, ``verify``, ``whoami``, and the bundle linter ``check``.

They act as one workload: the identity comes from the ``SPIFFILE_*`` environment
(:meth:`spiffile.identity.Identity.from_env`).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import click

from spiffile.cli._options import (
    complete_service,
    describe,
    emit_json,
    json_option,
    one_line,
    opened_root,
    root_option,
)
from spiffile.errors import InvalidTokenError, SpiffileError, UnknownIdentityError

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = ["COMMANDS"]


# --- workload commands -------------------------------------------------------------------------


def _environment(root: Path | None, name: str | None) -> Mapping[str, str] | None:
    """The environment that names the identity: a root's service, or ``None`` for SPIFFILE_*.

    ``--root ROOT NAME`` works as it does for ``exec``: the service's files
    are read in place (``SPIFFILE_TRUST_DIR`` still applies).
    """
    ctx = click.get_current_context()
    if name is None:
        if ctx.get_parameter_source("root") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--root needs a service NAME")
        return None
    from spiffile.provision import service_env

    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    trust_dir = os.environ.get("SPIFFILE_TRUST_DIR")
    if trust_dir:
        environment["SPIFFILE_TRUST_DIR"] = trust_dir
    environment.update(service_env(opened_root(root), name))
    return environment


def _load_identity(root: Path | None = None, name: str | None = None, **options: Any) -> Identity:
    from spiffile.identity import Identity

    return Identity.from_env(_environment(root, name), **options)


@click.command()
@root_option
@click.argument("name", required=False, shell_complete=complete_service)
@click.option("--audience", "-a", required=True, help="SPIFFE ID of the receiver.")
@click.option(
    "--ttl", type=click.IntRange(min=1), default=60, show_default=True, help="Lifetime, seconds."
)
@json_option
def token(root: Path | None, name: str | None, audience: str, ttl: int, as_json: bool) -> None:
    """Mint a JWT-SVID for AUDIENCE (identity from SPIFFILE_*, or --root ROOT NAME).

    \b
    curl -H "Authorization: Bearer $(spiffile token -a spiffe://example.org/billing)" ...
    spiffile token --root ./identity orders -a spiffe://example.org/billing
    """
    from spiffile.svid import DEFAULT_MAX_LIFETIME

    if ttl > DEFAULT_MAX_LIFETIME:
        # Verifiers refuse longer tokens by default (PROFILE.md §5.5): say so
        # before minting one nobody accepts.
        raise click.BadParameter(
            f"{ttl} s is longer than the {DEFAULT_MAX_LIFETIME:g} s lifetime verifiers accept "
            f"by default; use at most --ttl {DEFAULT_MAX_LIFETIME:g}",
            param_hint="'--ttl'",
        )
    identity = _load_identity(root, name)
    text = identity.token(audience=audience, ttl=ttl)
    if as_json:
        emit_json({"token": text, "id": str(identity.id), "audience": audience, "ttl": ttl})
    else:
        click.echo(text)


def _reject(exc: SpiffileError, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"error": {"code": exc.code, "message": one_line(str(exc))}})
    raise click.ClickException(f"token rejected ({exc.code}): {describe(exc)}")


def _unix_time(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number of seconds since the epoch")
    return value


#: What ``verify -`` reads at most: a token under the profile's cap, a
#: ``Bearer`` prefix and whitespace fit many times over.
_MAX_STDIN_TOKEN: Final = 64 * 1024


def _read_stdin_token() -> str:
    data = sys.stdin.buffer.read(_MAX_STDIN_TOKEN + 1)
    if len(data) > _MAX_STDIN_TOKEN:
        raise click.UsageError(f"stdin holds more than {_MAX_STDIN_TOKEN} bytes: not a token")
    # Not UTF-8 cannot be a token either: the verifier rejects it as malformed.
    return data.decode("utf-8", "replace")


@click.command()
@root_option
@click.argument("arguments", metavar="[NAME] [TOKEN|-]", nargs=-1)
@click.option("--audience", "-a", help="Expected audience (default: this workload's SPIFFE ID).")
@click.option(
    "--trust-dir",
    type=click.Path(file_okay=False, exists=True),
    help="Verify against this directory of <trust-domain>.json documents (no identity needed).",
)
@click.option(
    "--at",
    "at",
    type=click.FloatRange(min=0),
    metavar="UNIX_TIME",
    callback=_unix_time,
    help="Check validity as of this time instead of now (forensics, recorded tokens).",
)
@click.option("--issuer", help="Require this 'iss' claim.")
@json_option
def verify(
    root: Path | None,
    arguments: tuple[str, ...],
    audience: str | None,
    trust_dir: str | None,
    at: float | None,
    issuer: str | None,
    as_json: bool,
) -> None:
    """Verify a JWT-SVID and print the caller's SPIFFE ID.

    The token comes from the argument, or stdin with `-` or no argument.
    NAME is a service of --root (as for exec): given with two arguments, or
    with one when --root is on the command line.
    Trust comes from the workload's identity (SPIFFILE_*, plus
    SPIFFILE_TRUST_DIR for other trust domains), or from --trust-dir alone.
    With --trust-dir and no identity, --audience is required.

    \b
    spiffile verify --trust-dir /etc/spiffe/trust -a mys3 --at 1599627310 TOKEN

    Exits 1 with the reason on rejection.
    """
    name, token_text = _name_and_token(arguments)
    if token_text == "-":
        if sys.stdin is None:  # Started with stdin closed (`<&-`).
            raise click.UsageError("stdin is closed: pass TOKEN, or pipe it to stdin")
        if sys.stdin.isatty():
            raise click.UsageError("pass TOKEN, or pipe it to stdin")
        token_text = _read_stdin_token()
    token_text = token_text.strip()
    if token_text.lower().startswith("bearer "):
        token_text = token_text[7:].strip()
    clock = (lambda: at) if at is not None else time.time
    if trust_dir is not None:
        from spiffile.errors import ConfigurationError
        from spiffile.federation import TrustDirectory

        if audience is None:
            try:
                audience = str(_load_identity(root, name).id)
            except ConfigurationError:
                raise click.UsageError(
                    "--audience is required with --trust-dir when no identity is configured"
                ) from None
        trust = TrustDirectory(trust_dir, clock=clock)
        try:
            caller = trust.verify(token_text, audience, issuer=issuer)
        except (InvalidTokenError, UnknownIdentityError) as exc:
            _reject(exc, as_json)
    else:
        identity = _load_identity(root, name, clock=clock)
        try:
            caller = identity.verify(token_text, audience=audience, issuer=issuer)
        except (InvalidTokenError, UnknownIdentityError) as exc:
            _reject(exc, as_json)
    if as_json:
        emit_json({"id": str(caller.id), "claims": dict(caller.claims), "trust": str(caller.trust)})
    else:
        click.echo(str(caller.id))


def _name_and_token(arguments: tuple[str, ...]) -> tuple[str | None, str]:
    ctx = click.get_current_context()
    root_given = ctx.get_parameter_source("root") == click.core.ParameterSource.COMMANDLINE
    if len(arguments) > 2:
        raise click.UsageError("too many arguments: [NAME] [TOKEN|-]")
    if len(arguments) == 2:
        return arguments[0], arguments[1]
    if len(arguments) == 1:
        return (arguments[0], "-") if root_given else (None, arguments[0])
    return None, "-"


@click.command(name="whoami")
@root_option
@click.argument("name", required=False, shell_complete=complete_service)
@json_option
def whoami(root: Path | None, name: str | None, as_json: bool) -> None:
    """Show this workload's identity and file health (SPIFFILE_*, or --root ROOT NAME).

    Exits 1 when the identity is unhealthy (a file serves its last good
    version, or the signing key is not in the bundle), so it can serve as a
    health probe.
    """
    identity = _load_identity(root, name)
    status = identity.status()
    from spiffile.spiffe_helper import SpiffeHelperIdentity

    if isinstance(identity, SpiffeHelperIdentity):
        _whoami_spiffe_helper(identity, status, as_json)
        return
    bundle = identity.bundle
    data: dict[str, Any] = {
        "id": str(status.id),
        "kid": status.kid,
        "healthy": status.healthy,
        "key_bound": status.key_bound,
        "trust_domain": bundle.trust_domain,
        "identities": len(bundle.identities()),
        "skipped_entries": len(bundle.warnings),
        "bundle_sequence": status.bundle_sequence,
        "key_file": status.key.path,
        "key_error": status.key.error,
        "bundle_file": status.bundle.path,
        "bundle_error": status.bundle.error,
    }
    if identity.trust_dir is not None:
        data["trust_dir"] = identity.trust_dir.path
        data["federated"] = {
            name: {"healthy": file.healthy, "error": file.error}
            for name, file in status.trust.items()
        }
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            if value is not None:
                click.echo(one_line(f"{key:16} {value}"))
    if not status.healthy:
        reason = status.key.error or status.bundle.error
        if reason is None and not status.key_bound:
            reason = f"signing key {status.kid} is not bound to {status.id} in the bundle"
        raise click.ClickException(f"identity unhealthy: {one_line(reason or 'unknown')}")


def _whoami_spiffe_helper(identity: Any, status: Any, as_json: bool) -> None:
    """``whoami`` for an identity that spiffe-helper delivers from SPIRE."""
    data: dict[str, Any] = {
        "id": str(status.id),
        "source": "spiffe-helper",
        "config": str(identity.config.path),
        "healthy": status.healthy,
        "audiences": [item.audience for item in identity.config.jwt_svids],
        "tokens_usable": status.key_bound,
        "token_error": status.key.error,
        "bundle_file": status.bundle.path,
        "bundle_error": status.bundle.error,
        "bundle_sequence": status.bundle_sequence,
    }
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            if value is not None:
                click.echo(f"{key:16} {value}")
    if not status.healthy:
        reason = status.key.error or status.bundle.error or "a token file is not usable"
        raise click.ClickException(f"identity unhealthy: {one_line(reason)}")


# --- bundle tools ------------------------------------------------------------------------------


@click.command()
@click.argument(
    "bundle_path",
    metavar="BUNDLE",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@json_option
def check(bundle_path: str, as_json: bool) -> None:
    """Lint a bundle strictly; report every problem.

    BUNDLE is a file, or `-` for stdin.

    Consumers skip a malformed identity entry with a warning; producers
    should never write one.  Exits 1 if there is any problem.
    """
    from spiffile.bundle import MAX_BUNDLE_BYTES, lint_bundle

    name = bundle_path
    if name == "-":
        if sys.stdin is None:  # Started with stdin closed (`<&-`).
            raise click.UsageError("stdin is closed: pass a BUNDLE file, or pipe it to stdin")
        data = sys.stdin.buffer.read(MAX_BUNDLE_BYTES + 1)
    else:
        with open(name, "rb") as handle:
            # Bounded: `check /dev/zero` ends with "larger than", not out of memory.
            data = handle.read(MAX_BUNDLE_BYTES + 1)
    import logging

    logger = logging.getLogger("spiffile")
    previous = logger.level
    logger.setLevel(logging.ERROR)  # The problems are the output: no duplicate warnings.
    try:
        problems = lint_bundle(data)
    finally:
        logger.setLevel(previous)
    if as_json:
        emit_json({"file": name, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            click.echo(one_line(f"{name}: {problem}"))
        if not problems:
            click.echo(f"{name}: ok")
    if problems:
        plural = "s" if len(problems) != 1 else ""
        raise click.ClickException(f"{name}: {len(problems)} problem{plural}")


COMMANDS = (token, verify, whoami, check)
