"""The import-path trust policy: a run directory is data that people share, so opening one imports
no code that its config names unless the person opening it names that code too.

A checkpoint is read with ``weights_only=True`` so that loading it runs no code. An import path
stored in its config would undo that: building the run imports the module and calls the name
with options from the same file (``logging:basicConfig`` truncates a file of the attacker's
choosing). So a saved path is imported only if the person opening the run names it: the
``trust_import`` option (``--trust-import PATH``), or the same ``prior`` or ``model`` path when
resuming.
"""

from __future__ import annotations

from typing import Any, Iterable

from pyro_vae.config.values import shown
from pyro_vae.core.commands import quote
from pyro_vae.core.errors import UntrustedImportError
from pyro_vae.core.options import uses_flags

# Keys whose value may be the import path "package.module:Name" of user code.
IMPORT_PATH_KEYS = ("prior", "model")


def import_paths(values: dict[str, Any]) -> dict[str, str]:
    """The values of :data:`IMPORT_PATH_KEYS` in flat ``values`` that are import paths
    ("package.module:Name")."""
    return {key: values[key] for key in IMPORT_PATH_KEYS
            if isinstance(values.get(key), str) and ":" in values[key]}


def trust_advice(path: str) -> str:
    """How the reader names ``path`` as trusted: ``--trust-import PATH`` on the command line,
    ``trusted_imports=['PATH']`` in Python."""
    return f"--trust-import {quote(path)}" if uses_flags() else f"trusted_imports=[{path!r}]"


def check_trusted_imports(values: dict[str, Any], trusted: Iterable[str], source: str) -> None:
    """Refuse the import paths in flat ``values`` (a saved run's config) that the user did not
    name (see the module's docstring)."""
    trusted = set(trusted)
    for key, path in import_paths(values).items():
        if path not in trusted:
            raise UntrustedImportError(
                f"{source} names the {key} {shown(path)}, code that opening the run would import "
                f"and run; pyro-vae imports only code you name. If you trust it, pass "
                f"{trust_advice(path)}")
