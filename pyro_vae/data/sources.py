"""Where dataset files are and where they come from: the data directory (``data_dir``, else
``$PYRO_VAE_DATA``, else ``./data``), whether downloads are allowed (not with
``$PYRO_VAE_OFFLINE`` set), and the one-line error that says what is missing and how to
provide it. Loaders download through :data:`download_url` here (one name to replace in tests)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from torchvision.datasets.utils import download_url  # noqa: F401  (called as sources.download_url)

from pyro_vae.core.errors import DatasetNotFoundError
from pyro_vae.core.options import option

DATA_DIR_ENV = "PYRO_VAE_DATA"
OFFLINE_ENV = "PYRO_VAE_OFFLINE"  # set (to anything but "" or "0") to never try a download


def resolve_data_dir(data_dir: Optional[str] = None) -> Path:
    """``data_dir``, else ``$PYRO_VAE_DATA``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data").expanduser()


def offline_by_env() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def downloads_allowed(download: bool = True) -> bool:
    return download and not offline_by_env()


def downloads_off() -> str:
    """Why nothing was downloaded, when downloads are off."""
    return f"downloads are off: ${OFFLINE_ENV} is set" if offline_by_env() else "downloads are off"


def missing(name: str, root: Path, expected: list[Path], reason: str) -> DatasetNotFoundError:
    """One line: what is missing where, why it was not downloaded, and how to provide it."""
    return DatasetNotFoundError(
        f"{name} is not in the data directory {root} and could not be downloaded ({reason}); "
        f"missing: {', '.join(map(str, expected))}. Copy them there (the .gz archives are enough), "
        f"or point {option('data_dir')} or ${DATA_DIR_ENV} at a directory that holds them, or run "
        "once with internet access to download them.")
