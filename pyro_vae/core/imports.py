"""Importing user code named by ``package.module:Name`` (a user prior or model).

Whether a path may be imported at all is decided before this is called
(:func:`~pyro_vae.config.check_trusted_imports`); here a bad path becomes one line that says what
failed.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence

from pyro_vae.core.errors import ConfigError


def import_path(path: str, kind: str, shipped: Sequence[str]) -> type:
    """``"package.module:Name"`` -> the object, or a ConfigError naming the ``kind`` ("prior")."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{kind} {path!r}: expected one of {', '.join(shipped)} or an import path "
                          "'package.module:ClassName'")
    if os.getcwd() not in sys.path:  # a file in the working directory is found too
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"{kind} {path!r}: cannot import {module_name} ({e}); is it on PYTHONPATH "
                          "or installed?") from None
    except Exception as e:  # a syntax or runtime error in the user's module
        raise ConfigError(f"{kind} {path!r}: importing {module_name} failed: "
                          f"{type(e).__name__}: {e}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{kind} {path!r}: {module_name} has no attribute {attr!r}") from None
