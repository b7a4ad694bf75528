"""Shared pieces of the ``spiffile`` command line (private).

The error mapping lives here once: every command runs under
:class:`SpiffileGroup`, which turns a :class:`~spiffile.errors.SpiffileError`
or an :class:`OSError` into one ``Error: ...`` line and exit status 1.
Nothing here imports cryptography, PyJWT or watchfiles.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from spiffile._quote import printable, quote
from spiffile.errors import SpiffileError

if TYPE_CHECKING:
    from spiffile.provision import Root, ServiceInfo

__all__ = [
    "Seconds",
    "SpiffileGroup",
    "complete_service",
    "describe",
    "emit_json",
    "info_json",
    "json_option",
    "name_argument",
    "need_root",
    "one_line",
    "opened_root",
    "root_option",
    "show_library_warnings",
]

F = TypeVar("F", bound=Callable[..., Any])


def one_line(text: str) -> str:
    """One printable line: whitespace collapsed, any other control character escaped.

    A multi-line library message must not break the one-line rule, and no
    text that reached a message (a path, a quoted file or header member) may
    drive the terminal it is printed on.
    """
    return printable(" ".join(text.split()))


def describe(exc: BaseException) -> str:
    """One line for an error a user can cause, without key material (the library ensures it)."""
    if isinstance(exc, OSError):
        parts = [exc.strerror or str(exc) or type(exc).__name__]
        if exc.filename is not None:
            parts.append(str(exc.filename))
        if exc.filename2 is not None:
            parts.append(str(exc.filename2))
        return one_line(": ".join(parts))
    message = one_line(str(exc))
    return message or getattr(exc, "code", type(exc).__name__)


def show_library_warnings(ctx: click.Context) -> None:
    """Print the library's warnings (a skipped bundle entry, a bad reload) as `Warning:` lines.

    Without a handler, Python's last-resort handler would print them raw.
    ``logging`` is imported here, not at module level: `--help` stays cheap.
    """
    import logging

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = one_line(record.getMessage()).removeprefix("spiffile: ")
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


class SpiffileGroup(click.Group):
    """A group that turns library and OS errors into one-line click errors."""

    def invoke(self, ctx: click.Context) -> Any:
        show_library_warnings(ctx)
        try:
            return super().invoke(ctx)
        except SpiffileError as exc:
            raise click.ClickException(describe(exc)) from exc
        except BrokenPipeError:
            raise  # `spiffile list | head`: click exits quietly on EPIPE.
        except OSError as exc:
            raise click.ClickException(describe(exc)) from exc


class Seconds(click.ParamType):  # type: ignore[type-arg]
    """A finite number of seconds in ``[0, maximum]``.

    ``click.FloatRange(min=0)`` lets ``inf``, ``nan`` and ``1e30`` through,
    which later overflow a timer or compare false with everything.
    """

    name = "seconds"

    def __init__(self, maximum: float) -> None:
        self.maximum = maximum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float | int) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{quote(str(value), 40)} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not 0 <= number <= self.maximum:
            self.fail(
                f"{quote(str(value), 40)} is not between 0 and {self.maximum:g} seconds", param, ctx
            )
        return number


def emit_json(data: object) -> None:
    """Stable, readable JSON: indented, keys sorted."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def complete_service(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[click.shell_completion.CompletionItem]:
    """Complete service names from the root (best effort: silence on any error)."""
    root = ctx.params.get("root") or os.environ.get("SPIFFILE_ROOT")
    if not root:
        return []
    try:
        from spiffile.provision import open_root
        from spiffile.provision.doctor import survey

        # A producer holding the lock must not freeze the user's shell; one
        # broken service must not hide the others.
        entries = survey(open_root(root, lock_timeout=0.5)).entries
        names = [entry.name for entry in entries if entry.name]
    except Exception:
        return []
    return [click.shell_completion.CompletionItem(n) for n in names if n.startswith(incomplete)]


def root_option(f: F) -> F:
    return click.option(
        "--root",
        envvar="SPIFFILE_ROOT",
        show_envvar=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Identity root directory.",
    )(f)


def name_argument(f: F) -> F:
    return click.argument("name", shell_complete=complete_service)(f)


def need_root(root: Path | None) -> Path:
    """The root from --root or SPIFFILE_ROOT, or a usage error naming both."""
    if root is None:
        raise click.UsageError("no identity root: pass --root or set SPIFFILE_ROOT")
    return root


def opened_root(root: Path | None) -> Root:
    from spiffile.provision import open_root

    return open_root(need_root(root))


def info_json(info: ServiceInfo) -> dict[str, Any]:
    """A :class:`~spiffile.provision.ServiceInfo` as the JSON the producer commands print."""
    return {
        "name": info.name,
        "id": str(info.id),
        "kid": info.kid,
        "bound_kids": list(info.bound_kids),
        "staged_kid": info.staged_kid,
        "directory": str(info.directory),
    }
