"""An ``eval.json`` reused for a reproduction's row only beside the very checkpoint it
evaluated (its ``checkpoint_sha256``), and only after its fields are checked.

Evaluating K = 5000 on 10,000 images takes long, so a row reuses an evaluation it finds; but
the file is data in a run directory that anyone may have edited or copied, so every field a row
reads is checked here (:data:`SUMMARY_FIELDS`) before it is tabulated, with a one-line error
that names the file and the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from pyro_vae.core.errors import RunDirError
from pyro_vae.data import load_dataset
from pyro_vae.runs import RunDir, checkpoint_path, checkpoint_sha256, load_checkpoint, results
from pyro_vae.studies.protocol_settings import is_count, is_number

if TYPE_CHECKING:
    from pyro_vae.studies.reproduction_plan import Row


def read_json(path: Path, what: str) -> Any:
    """The JSON in ``path`` (None if there is no such file), or a one-line RunDirError: not a
    regular file, too large, not UTF-8 JSON (:func:`pyro_vae.runs.results.read_json`)."""
    if not path.exists() and not path.is_symlink():
        return None
    return results.read_json(path, f"delete it or {what}")


# What a table row (reproduction_table.make_row) reads from an eval.json, and what each must be
# (null: a non-finite estimate).
def _number_or_null(v):
    return v is None or is_number(v)


def _names_to_counts(v):
    return isinstance(v, dict) and all(isinstance(k, str) and is_count(n) for k, n in v.items())


SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "nll": (_number_or_null, "a number"),
    "stderr": (_number_or_null, "a number"),
    "epoch": (is_count, "a whole number"),
    "num_points": (lambda v: is_count(v, 1), "a whole number of at least 1"),
    "num_samples": (lambda v: is_count(v, 1), "a whole number of at least 1"),
    "seconds": (lambda v: is_number(v) and math.isfinite(v) and v >= 0, "a number of seconds"),
    "device": (lambda v: isinstance(v, str), "a string"),
    "split": (lambda v: isinstance(v, str), "a string"),
    "checkpoint": (lambda v: v in ("best", "last"), "'best' or 'last'"),
}
OPTIONAL_SUMMARY_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "psis": (lambda v: v is None or (isinstance(v, dict) and all(
        _number_or_null(v.get(k)) for k in ("khat_median", "share_khat_above_0.7"))),
        "a mapping with khat_median and share_khat_above_0.7 numbers"),
    "active_units": (is_count, "a whole number"),
    "accuracy": (lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "bits_per_dim": (lambda v: is_number(v) and v > 0, "a positive number"),
    "latent_dim": (lambda v: is_count(v, 1), "a whole number of at least 1"),
    "active_units_per_site": (_names_to_counts, "a mapping of site names to whole numbers"),
    "latent_dim_per_site": (_names_to_counts, "a mapping of site names to whole numbers"),
}


def check_summary(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    """``summary`` (an eval.json) if every field that a row reads is of its kind; a one-line
    RunDirError naming the file and the field otherwise."""
    def refuse(key: str, kind: str) -> RunDirError:
        return RunDirError(f"{path}: {key} must be {kind}, got {summary.get(key)!r}; delete it (it "
                           "is evaluated again) or run scripts/evaluate.py again")
    for key, (ok, kind) in SUMMARY_FIELDS.items():
        if not ok(summary.get(key, ...)):
            raise refuse(key, kind)
    for key, (ok, kind) in OPTIONAL_SUMMARY_FIELDS.items():
        if key in summary and not ok(summary[key]):
            raise refuse(key, kind)
    if "active_units" in summary and "latent_dim" not in summary:
        raise refuse("latent_dim", "given with active_units")
    per_site = summary.get("active_units_per_site") or {}
    if len(per_site) > 1 and not set(per_site) <= set(summary.get("latent_dim_per_site") or {}):
        raise refuse("latent_dim_per_site", "a size for every site of active_units_per_site")
    return summary


def evaluation_of(run: RunDir, state: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The run's eval.json if it evaluated the checkpoint ``state`` (its ``checkpoint_sha256``),
    its fields checked; None if there is none, or it evaluated another checkpoint (or is from a
    pyro-vae that did not record which)."""
    path = run.path / "eval.json"
    summary = read_json(path, "run scripts/evaluate.py again")
    if summary is None:
        return None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path} holds no JSON object; delete it or run scripts/evaluate.py again")
    if summary.get("checkpoint_sha256") != checkpoint_sha256(state):
        return None
    return check_summary(summary, path)


def reusable(row: Row, num_samples: int, limit: Optional[int]) -> Optional[dict[str, Any]]:
    """The run's eval.json if it evaluated the checkpoint now on disk the way asked."""
    state = load_checkpoint(checkpoint_path(row.run.path, "best"))
    summary = evaluation_of(row.run, state)
    if summary is None or (summary["split"], summary["num_samples"], summary["epoch"]) != (
            "test", num_samples, state["epoch"]):
        return None
    if limit is None or summary["num_points"] != limit:  # as many as the test split holds?
        test = load_dataset(row.cfg.data.dataset, row.cfg.data.data_dir, limit_train=1).test
        if summary["num_points"] != len(test[:limit]):
            return None
    return summary
