"""The public surface of ``spiffile``: one list, derived, and every name importable."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import spiffile
from spiffile import errors

_INIT = Path(spiffile.__file__)


def _type_checking_names() -> set[str]:
    tree = ast.parse(_INIT.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            return {
                alias.asname or alias.name
                for child in node.body
                if isinstance(child, ast.ImportFrom)
                for alias in child.names
            }
    raise AssertionError("no TYPE_CHECKING block in spiffile/__init__.py")


def test_type_checking_imports_name_the_lazy_map() -> None:
    assert _type_checking_names() == set(spiffile._LAZY)


def test_every_public_name_resolves_to_the_object_of_its_module() -> None:
    for name in spiffile.__all__:
        value = getattr(spiffile, name)
        if name in spiffile._LAZY:
            module = sys.modules[spiffile._LAZY[name]]
            assert getattr(module, name) is value


def test_every_error_class_is_public_at_top_level() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.SpiffileError)
    }
    classes |= set(errors.LAZY_ERRORS)  # Defined on first use (they import ssl).
    assert classes - set(errors.LAZY_ERRORS) == set(errors.__all__)
    for name in errors.LAZY_ERRORS:
        value = getattr(errors, name)
        assert issubclass(value, errors.SpiffileError) and value.__module__ == "spiffile.errors"
        assert getattr(spiffile, name) is value
    assert classes <= set(spiffile.__all__)
    assert spiffile.RootNotFoundError is errors.RootNotFoundError


def test_no_name_is_listed_twice() -> None:
    assert len(spiffile.__all__) == len(set(spiffile.__all__))


def test_importing_spiffile_does_not_import_cryptography() -> None:
    """The lazy names keep `import spiffile` (and so `spiffile --help`) light."""
    code = (
        "import sys, spiffile, spiffile.errors, spiffile.spiffe_id\n"
        "heavy = [m for m in ('cryptography', 'jwt', 'watchfiles', 'ssl') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
