"""An evaluation's result on disk: ``<stem>.json`` (the summary) and ``<stem>_points.npz`` (per
data point), written and read as one unit.

The two files of one evaluation carry the same ``result_id``. They are written together
(:func:`~pyro_vae.core.atomic.atomic_write_all`: both in full, then the per-point file renamed into
place, then the summary), so a full disk leaves the previous pair as it was, and a kill between
the two renames leaves a pair whose ids differ, which :func:`read_result` refuses instead of
reading one evaluation's summary beside another's numbers. A summary alone (without its points)
is always one evaluation's, and readers that need only the summary read it alone.
"""

from __future__ import annotations

import io
import json
import math
import secrets
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pyro_vae.core.atomic import atomic_write_all, read_regular_file
from pyro_vae.core.errors import RunDirError, WriteError

ID_KEY = "result_id"
# Largest files read back: a summary is a few KiB; the per-point file of BDMC on 10,000 images,
# which holds the images, about 32 MB.
MAX_JSON_BYTES = 2**20
MAX_POINTS_BYTES = 2**30


def _finite_or_none(value):
    """NaN and inf as null: the summary stays strict JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def paths(directory: Path, stem: str) -> tuple[Path, Path]:
    """(summary, per-point file) of ``stem`` in ``directory``."""
    return Path(directory) / f"{stem}.json", Path(directory) / f"{stem}_points.npz"


def write_result(directory: Path, stem: str, summary: dict, arrays: dict[str, np.ndarray]) -> dict:
    """Both files of one result, sharing a fresh ``result_id``; returns the summary written."""
    result_id = secrets.token_hex(8)
    summary = {**summary, ID_KEY: result_id}
    arrays = {**arrays, ID_KEY: np.array(result_id)}
    summary_path, points_path = paths(directory, stem)
    atomic_write_all([(points_path, lambda f: np.savez(f, **arrays)),
                      (summary_path, json.dumps(_finite_or_none(summary), indent=2) + "\n")])
    return summary


def save_result(directory: Path, stem: str, summary: dict, arrays: dict[str, np.ndarray]) -> None:
    """:func:`write_result`, and if that fails (disk full, read-only), a fresh directory under
    the system's temporary directory instead: an evaluation's result is never lost. The
    WriteError then names where the results are (or, if nothing could be written, holds
    the summary's content)."""
    try:
        write_result(Path(directory), stem, summary, arrays)
        return
    except WriteError as e:
        failure = e
    try:
        fallback = Path(tempfile.mkdtemp(prefix=f"pyro-vae-{stem}-{Path(directory).resolve().name}-"))
        write_result(fallback, stem, summary, arrays)
    except OSError:
        content = json.dumps(_finite_or_none(summary))
        raise WriteError(f"{failure}; no other place could be written either, so here is "
                         f"{stem}.json: {content}", failure.errno) from None
    raise WriteError(f"{failure}. The results were written to {fallback}/{stem}.json and "
                     f"{stem}_points.npz instead", failure.errno) from None


def read_json(path: Path, advice: str = "evaluate again") -> Any:
    """The JSON in ``path`` (a regular file of at most :data:`MAX_JSON_BYTES`: a shared run's file
    may be a FIFO or huge), or a one-line RunDirError naming the file and ending in ``advice``."""
    try:
        return json.loads(read_regular_file(path, MAX_JSON_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) else str(e) if type(e) is ValueError \
            else type(e).__name__
        raise RunDirError(f"{path} is not readable JSON ({reason}); {advice}") from None


def read_summary(path: Path, advice: str = "evaluate again") -> dict[str, Any]:
    """A summary file as a mapping, or a one-line RunDirError naming the file."""
    summary = read_json(path, advice)
    if not isinstance(summary, dict):
        raise RunDirError(f"{path} holds no JSON object (an evaluation summary); {advice}")
    return summary


def read_result(directory: Path, stem: str, columns: tuple[str, ...],
                summary: Optional[dict] = None) -> tuple[dict, dict[str, np.ndarray]]:
    """The summary and the per-point ``columns`` (1-D float arrays of one length) of one result,
    or a RunDirError that says which file is wrong and what to do. ``summary``: the summary file
    as the caller already read it (not read again)."""
    summary_path, points_path = paths(directory, stem)
    summary = read_summary(summary_path) if summary is None else summary
    try:
        content = io.BytesIO(read_regular_file(points_path, MAX_POINTS_BYTES))
        with np.load(content, allow_pickle=False) as points:
            found = {name: points[name] for name in (*columns, ID_KEY) if name in points.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise RunDirError(f"cannot read {points_path}: {e}") from None
    if not isinstance(summary.get(ID_KEY), str):
        raise RunDirError(f"{summary_path} has no {ID_KEY} (an earlier pyro-vae wrote it), so it "
                          f"cannot be matched with {points_path}; evaluate again")
    if ID_KEY not in found or str(found[ID_KEY]) != summary[ID_KEY]:
        raise RunDirError(f"{summary_path} and {points_path} are not from the same evaluation (one "
                          "was replaced without the other); evaluate again to write both")
    missing = [c for c in columns if c not in found]
    if missing:
        raise RunDirError(f"{points_path} lacks {', '.join(missing)}; evaluate again")
    arrays = {c: found[c] for c in columns}
    lengths = {a.shape for a in arrays.values()}
    if any(a.ndim != 1 or a.dtype.kind not in "fiu" for a in arrays.values()) or len(lengths) != 1:
        raise RunDirError(f"{points_path}: {', '.join(columns)} must be numeric columns of one "
                          "length; evaluate again")
    return summary, {c: a.astype(np.float64) for c, a in arrays.items()}
