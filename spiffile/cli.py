"""The ``spiffile`` command line: a thin click layer over the library.

No rule lives here that the library does not own: every command parses its
arguments, calls one library function and prints the result.  Two things are
the CLI's own business:

- Failures a user can cause end as one ``Error: ...`` line on stderr and a
  non-zero exit (1; 2 for usage errors), never a traceback: the group maps
  :class:`~spiffile.errors.SpiffileError` and :class:`OSError` to click
  exceptions in one place.
- Start-up stays cheap: cryptography, PyJWT and watchfiles are imported inside
  the commands that need them, so ``spiffile --help`` and shell completion do
  not pay for them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .errors import InvalidTokenError, SpiffileError, UnknownIdentityError

if TYPE_CHECKING:
    from .provision import Root, ServiceInfo

__all__ = ["cli", "main"]

F = TypeVar("F", bound=Callable[..., Any])

_EPILOG = """\b
Producer commands take the identity root from --root or SPIFFILE_ROOT.
Workload commands (token, verify, whoami) read SPIFFILE_DIR or
SPIFFILE_ID_FILE, SPIFFILE_KEY_FILE and SPIFFILE_BUNDLE_FILE.

\b
Shell completion (add to your shell's start-up file):
  bash: eval "$(_SPIFFILE_COMPLETE=bash_source spiffile)"
  zsh:  eval "$(_SPIFFILE_COMPLETE=zsh_source spiffile)"
  fish: _SPIFFILE_COMPLETE=fish_source spiffile | source

\b
Exit status: 0 success, 1 failure or rejected token, 2 usage error;
`spiffile exec` exits with its child's status.
"""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(exc: BaseException) -> str:
    """One line for an error a user can cause, without key material (the library ensures it)."""
    if isinstance(exc, OSError):
        parts = [exc.strerror or type(exc).__name__]
        if exc.filename is not None:
            parts.append(str(exc.filename))
        if exc.filename2 is not None:
            parts.append(str(exc.filename2))
        return _one_line(": ".join(parts))
    message = _one_line(str(exc))
    return message or getattr(exc, "code", type(exc).__name__)


def _show_library_warnings(ctx: click.Context) -> None:
    """Print the library's warnings (a skipped bundle entry, a bad reload) as `Warning:` lines.

    Without a handler, Python's last-resort handler would print them raw.
    ``logging`` is imported here, not at module level: `--help` stays cheap.
    """
    import logging

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = _one_line(record.getMessage()).removeprefix("spiffile: ")
            click.echo(f"Warning: {message}", err=True)

    logger = logging.getLogger("spiffile")
    handler = Handler(logging.WARNING)
    logger.addHandler(handler)
    propagate = logger.propagate
    logger.propagate = False

    def restore() -> None:
        logger.removeHandler(handler)
        logger.propagate = propagate

    ctx.call_on_close(restore)


class _Group(click.Group):
    """A group that turns library and OS errors into one-line click errors."""

    def invoke(self, ctx: click.Context) -> Any:
        _show_library_warnings(ctx)
        try:
            return super().invoke(ctx)
        except SpiffileError as exc:
            raise click.ClickException(_describe(exc)) from exc
        except BrokenPipeError:
            raise  # `spiffile list | head`: click exits quietly on EPIPE.
        except OSError as exc:
            raise click.ClickException(_describe(exc)) from exc


def _emit_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def _complete_service(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Complete service names from the root (best effort: silence on any error)."""
    root = ctx.params.get("root") or os.environ.get("SPIFFILE_ROOT")
    if not root:
        return []
    try:
        from .provision import list_services

        names = [info.name for info in list_services(root)]
    except Exception:
        return []
    return [click.shell_completion.CompletionItem(n) for n in names if n.startswith(incomplete)]


def _root_option(f: F) -> F:
    return click.option(
        "--root",
        envvar="SPIFFILE_ROOT",
        show_envvar=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Identity root directory.",
    )(f)


def _name_argument(f: F) -> F:
    return click.argument("name", shell_complete=_complete_service)(f)


def _need_root(root: Path | None) -> Path:
    if root is None:
        raise click.UsageError("no identity root: pass --root or set SPIFFILE_ROOT")
    return root


def _open(root: Path | None) -> Root:
    from .provision import open_root

    return open_root(_need_root(root))


def _info_json(info: ServiceInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "id": str(info.id),
        "kid": info.kid,
        "bound_kids": list(info.bound_kids),
        "staged_kid": info.staged_kid,
        "directory": str(info.directory),
    }


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG,
)
@click.version_option(package_name="spiffile", prog_name="spiffile")
def cli() -> None:
    """SPIFFE workload identity from three files.

    Each workload signs its own JWT-SVIDs with its key and verifies its
    callers offline against a trust bundle that producers update in place.
    """


# --- producer commands -------------------------------------------------------------------------


@cli.command()
@_root_option
@click.option("--trust-domain", required=True, help="Trust domain, e.g. example.org.")
@_json_option
def init(root: Path | None, trust_domain: str, as_json: bool) -> None:
    """Create an identity root (idempotent for the same domain)."""
    from .provision import init_root

    created = init_root(_need_root(root), trust_domain)
    if as_json:
        _emit_json(
            {
                "root": str(created.path),
                "trust_domain": created.trust_domain,
                "bundle": str(created.bundle_path),
            }
        )
    else:
        click.echo(f"root {created.path} ready for trust domain {created.trust_domain}")


@cli.command()
@_root_option
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@_json_option
def add(root: Path | None, names: Sequence[str], as_json: bool) -> None:
    """Add services (idempotent: an existing one keeps its key).

    NAME may be nested (team/orders -> spiffe://TD/team/orders).
    """
    from .provision import add_service

    opened = _open(root)
    infos = [add_service(opened, name) for name in names]
    if as_json:
        _emit_json([_info_json(info) for info in infos])
        return
    for info in infos:
        click.echo(f"{info.id}  kid {info.kid}")


@cli.command()
@_root_option
@_name_argument
@click.option("--drop-old", is_flag=True, help="Remove the previous key from the bundle at once.")
@click.option(
    "--stage", is_flag=True, help="Phase 1: publish a new key, keep signing with the old."
)
@click.option("--commit", is_flag=True, help="Phase 2: switch the service to the staged key.")
@_json_option
def rotate(
    root: Path | None, name: str, drop_old: bool, stage: bool, commit: bool, as_json: bool
) -> None:
    """Give a service a new signing key.

    By default the old public key stays in the bundle so tokens already
    issued keep verifying; remove it later with `spiffile prune`.  When the
    bundle reaches other hosts later than the key does, rotate in two phases:
    --stage, wait until every verifier has the new bundle, --commit, prune.
    """
    from .provision import commit_rotation, rotate_service, service_info, stage_rotation

    if sum((drop_old, stage, commit)) > 1:
        raise click.UsageError("--drop-old, --stage and --commit are mutually exclusive")
    opened = _open(root)
    if stage:
        kid = stage_rotation(opened, name)
        message = f"staged kid {kid} for {name}; it signs after `spiffile rotate {name} --commit`"
    elif commit:
        kid = commit_rotation(opened, name)
        message = f"{name} now signs with kid {kid}; retire old keys with `spiffile prune {name}`"
    else:
        kid = rotate_service(opened, name, keep_old=not drop_old)
        message = f"{name} now signs with kid {kid}"
        if not drop_old:
            message += f"; old key kept until `spiffile prune {name}`"
    if as_json:
        _emit_json(_info_json(service_info(opened, name)))
    else:
        click.echo(message)


@cli.command()
@_root_option
@_name_argument
@click.option("--kid", required=True, help="Key id to remove from the bundle.")
def revoke(root: Path | None, name: str, kid: str) -> None:
    """Revoke one key of a service by kid.

    The current signing key cannot be revoked: rotate first.
    """
    from .provision import revoke_key

    revoke_key(_open(root), name, kid)
    click.echo(f"revoked kid {kid} of {name}")


@cli.command()
@_root_option
@_name_argument
@_json_option
def prune(root: Path | None, name: str, as_json: bool) -> None:
    """Drop a service's keys no longer in use from the bundle.

    Every bound key except the current (and a staged) one is removed.
    """
    from .provision import prune_service

    removed = prune_service(_open(root), name)
    if as_json:
        _emit_json({"name": name, "removed_kids": list(removed)})
    elif removed:
        click.echo(f"removed from {name}: {', '.join(removed)}")
    else:
        click.echo(f"nothing to prune for {name}")


@cli.command()
@_root_option
@_name_argument
def remove(root: Path | None, name: str) -> None:
    """Remove a service: bundle entry (every key) and files."""
    from .provision import remove_service

    remove_service(_open(root), name)
    click.echo(f"removed {name}")


@cli.command(name="list")
@_root_option
@_json_option
def list_(root: Path | None, as_json: bool) -> None:
    """List the services of a root."""
    from .provision import list_services

    infos = list_services(_open(root))
    if as_json:
        _emit_json([_info_json(info) for info in infos])
        return
    if not infos:
        click.echo("no services")
        return
    rows = [("NAME", "SPIFFE ID", "KID", "KEYS", "STAGED")]
    rows += [(i.name, str(i.id), i.kid, str(len(i.bound_kids)), i.staged_kid or "-") for i in infos]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _dotenv_value(value: str) -> str:
    """Quote only when needed, so the file also works with `docker --env-file` for plain paths."""
    if value and all(c.isalnum() or c in "_./:@%+,=-" for c in value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _shell_value(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


@cli.command()
@_root_option
@_name_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["shell", "dotenv", "json"]),
    default="shell",
    show_default=True,
    help="shell: export lines for eval; dotenv: KEY=value lines; json: an object.",
)
def env(root: Path | None, name: str, fmt: str) -> None:
    """Print the SPIFFILE_* environment of a service.

    \b
    eval "$(spiffile env orders)"
    spiffile env orders --format dotenv > orders.env
    """
    from .provision import service_env

    variables = service_env(_open(root), name)
    if fmt == "json":
        _emit_json(variables)
    elif fmt == "dotenv":
        for key, value in variables.items():
            click.echo(f"{key}={_dotenv_value(value)}")
    else:
        for key, value in variables.items():
            click.echo(f"export {key}={_shell_value(value)}")


@cli.command()
@_root_option
@_name_argument
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
    from .provision import export_kubernetes

    click.echo(export_kubernetes(_open(root), name, namespace=namespace), nl=False)


@cli.command(name="export-jwks")
@_root_option
@_name_argument
def export_jwks(root: Path | None, name: str) -> None:
    """Print a service's keys as a SPIFFE JWT bundle (JWK Set).

    For verifiers that speak the SPIFFE bundle format rather than spiffile's
    per-identity document.
    """
    from .bundle import Bundle, spiffe_jwt_bundle
    from .files import read_file
    from .provision import service_info

    opened = _open(root)
    info = service_info(opened, name)
    document = Bundle.parse(read_file(opened.bundle_path))
    _emit_json(spiffe_jwt_bundle(document, info.id))


# --- workload commands -------------------------------------------------------------------------


def _load_identity() -> Any:
    from .identity import Identity

    return Identity.from_env()


@cli.command()
@click.option("--audience", "-a", required=True, help="SPIFFE ID of the receiver.")
@click.option(
    "--ttl", type=click.IntRange(min=1), default=60, show_default=True, help="Lifetime, seconds."
)
def token(audience: str, ttl: int) -> None:
    """Mint a JWT-SVID for AUDIENCE (identity from SPIFFILE_*).

    \b
    curl -H "Authorization: Bearer $(spiffile token -a spiffe://example.org/billing)" ...
    """
    click.echo(_load_identity().token(audience=audience, ttl=ttl))


def _reject(exc: SpiffileError, as_json: bool) -> NoReturn:
    if as_json:
        _emit_json({"error": {"code": exc.code, "message": _one_line(str(exc))}})
    raise click.ClickException(f"token rejected ({exc.code}): {_describe(exc)}")


@cli.command()
@click.argument("token_text", metavar="[TOKEN|-]", required=False, default="-")
@click.option("--audience", "-a", help="Expected audience (default: this workload's SPIFFE ID).")
@_json_option
def verify(token_text: str, audience: str | None, as_json: bool) -> None:
    """Verify a JWT-SVID and print the caller's SPIFFE ID.

    The token comes from the argument, or stdin with `-` or no argument.

    Exits 1 with the reason on rejection.
    """
    if token_text == "-":
        if sys.stdin.isatty():
            raise click.UsageError("pass TOKEN, or pipe it to stdin")
        token_text = sys.stdin.read()
    token_text = token_text.strip()
    if token_text.lower().startswith("bearer "):
        token_text = token_text[7:].strip()
    identity = _load_identity()
    try:
        caller = identity.verify(token_text, audience=audience)
    except (InvalidTokenError, UnknownIdentityError) as exc:
        _reject(exc, as_json)
    if as_json:
        _emit_json({"id": str(caller.id), "claims": dict(caller.claims)})
    else:
        click.echo(str(caller.id))


@cli.command(name="whoami")
@_json_option
def whoami(as_json: bool) -> None:
    """Show this workload's identity and file health.

    Exits 1 when the identity is unhealthy (a file serves its last good
    version, or the signing key is not in the bundle), so it can serve as a
    health probe.
    """
    identity = _load_identity()
    status = identity.status()
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
    if as_json:
        _emit_json(data)
    else:
        for key, value in data.items():
            if value is not None:
                click.echo(f"{key:16} {value}")
    if not status.healthy:
        reason = status.key.error or status.bundle.error
        if reason is None and not status.key_bound:
            reason = f"signing key {status.kid} is not bound to {status.id} in the bundle"
        raise click.ClickException(f"identity unhealthy: {_one_line(reason or 'unknown')}")


# --- bundle tools ------------------------------------------------------------------------------


@cli.command()
@click.argument("bundle_file", metavar="BUNDLE", type=click.File("rb"))
@_json_option
def check(bundle_file: Any, as_json: bool) -> None:
    """Lint a bundle strictly; report every problem.

    BUNDLE is a file, or `-` for stdin.

    Consumers skip a malformed identity entry with a warning; producers
    should never write one.  Exits 1 if there is any problem.
    """
    from .bundle import lint_bundle

    name = getattr(bundle_file, "name", "-")
    name = name if isinstance(name, str) and name != "<stdin>" else "-"
    import logging

    logger = logging.getLogger("spiffile")
    previous = logger.level
    logger.setLevel(logging.ERROR)  # The problems are the output: no duplicate warnings.
    try:
        problems = lint_bundle(bundle_file.read())
    finally:
        logger.setLevel(previous)
    if as_json:
        _emit_json({"file": name, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            click.echo(f"{name}: {problem}")
        if not problems:
            click.echo(f"{name}: ok")
    if problems:
        plural = "s" if len(problems) != 1 else ""
        raise click.ClickException(f"{name}: {len(problems)} problem{plural}")


# --- exec and demo -----------------------------------------------------------------------------


class _ExecCommand(click.Command):
    """Split ``-- CMD ARGS...`` off before click parses (click would swallow the ``--``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["spiffile.exec.command"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "-- CMD [ARGS]..."]


@cli.command(name="exec", cls=_ExecCommand)
@_root_option
@click.argument("name", required=False, shell_complete=_complete_service)
@click.option(
    "--signal",
    "signal_name",
    default="HUP",
    show_default=True,
    help="Signal sent to CMD when the identity files change.",
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds without further change before signalling.",
)
@click.pass_context
def exec_(
    ctx: click.Context, root: Path | None, name: str | None, signal_name: str, settle: float
) -> None:
    """Run CMD with an identity; signal it when the files change.

    \b
    spiffile exec --root ./identity orders -- python app.py
    spiffile exec -- ./server          (identity from the SPIFFILE_* env)

    With NAME, CMD gets the service's environment from the root; without,
    the current SPIFFILE_* environment is passed through.  SIGINT and SIGTERM
    are forwarded; the exit status is CMD's (128+N if killed by signal N).
    """
    from . import exec_ as runner

    command = ctx.meta.get("spiffile.exec.command")
    if not command:
        raise click.UsageError("missing command: spiffile exec [--root R NAME] -- CMD [ARGS...]")
    reload_signal = runner.parse_signal(signal_name)
    environment = dict(os.environ)
    if name is not None:
        from .provision import service_env

        environment.pop("SPIFFILE_DIR", None)
        environment.update(service_env(_open(root), name))
    elif ctx.get_parameter_source("root") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--root needs a service NAME")
    files = runner.identity_paths_from_env(environment)
    # Fail before starting CMD if the identity is unusable, with the library's reason.
    from .identity import Identity

    Identity.from_env(environment)
    try:
        status = runner.run(
            command,
            environment,
            files,
            reload_signal=reload_signal,
            settle=settle,
            log=lambda message: click.echo(message, err=True),
        )
    except FileNotFoundError:
        click.echo(f"Error: command not found: {command[0]}", err=True)
        ctx.exit(127)
    except PermissionError:
        click.echo(f"Error: permission denied: {command[0]}", err=True)
        ctx.exit(126)
    ctx.exit(status)


@cli.command()
def demo() -> None:
    """Run two services that call each other (end-to-end check).

    Provisions a temporary root, starts `orders` and `billing` on 127.0.0.1,
    shows an accepted call, rejected forgeries and a key rotation picked up
    without restart, then cleans up.  Exits 1 if anything does not happen as
    expected.
    """
    from .demo import DemoFailedError, run_demo

    try:
        run_demo(click.echo)
    except DemoFailedError as exc:
        raise click.ClickException(f"demo failed: {_one_line(str(exc))}") from exc


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (`spiffile`, `python -m spiffile`)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="spiffile")
