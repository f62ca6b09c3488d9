"""An evaluation's two files (``<stem>.json`` and ``<stem>_points.npz``) are one unit.

A full disk while writing either leaves the previous complete pair; a kill between the two
renames leaves a pair that readers refuse in one line; a finished AIS result is kept whatever
state the eval.json it is compared with is in.
"""

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support.processes import enospc_in, one_line_error, run, train_here

from pyro_vae.core.errors import RunDirError
from pyro_vae.runs import read_result, write_result

EVALUATE = ("--num-samples", "5", "--limit", "8")
AIS = ("--method", "ais", "--limit", "4", "--ais-steps", "2", "--ais-chains", "2", "--leapfrog", "1")
COLUMNS = ("log_px", "khat")


@pytest.fixture(scope="module")
def evaluated(data_dir, tmp_path_factory) -> Path:
    """A small run with one complete eval.json / eval_points.npz pair."""
    out = tmp_path_factory.mktemp("pairs") / "run"
    train_here(out, data_dir)
    result = run("evaluate.py", str(out), *EVALUATE, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return out


def copy(run_dir: Path, target: Path) -> Path:
    target.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def pair_bytes(run_dir: Path) -> tuple[bytes, bytes]:
    return (run_dir / "eval.json").read_bytes(), (run_dir / "eval_points.npz").read_bytes()


def test_written_pair_reads_back_with_one_id(tmp_path):
    summary = write_result(tmp_path, "eval", {"nll": 90.0}, {"log_px": np.array([-1.0, -2.0]),
                                                             "khat": np.array([0.1, 0.2])})
    read, arrays = read_result(tmp_path, "eval", COLUMNS)
    assert read == summary and len(summary["result_id"]) == 16
    np.testing.assert_array_equal(arrays["log_px"], [-1.0, -2.0])


@pytest.mark.parametrize("failing", ["eval_points.npz", "eval.json"])
def test_a_full_disk_keeps_the_previous_pair(evaluated, data_dir, tmp_path, failing):
    """Whichever of the two files the disk fills up on, neither is replaced."""
    run_dir = copy(evaluated, tmp_path / "run")
    before = pair_bytes(run_dir)
    result = run("evaluate.py", str(run_dir), *EVALUATE, "--seed", "7", data_dir=data_dir,
                 prelude=enospc_in(failing))
    assert result.returncode == 2 and f"{failing}: the disk is full" in one_line_error(result)
    assert pair_bytes(run_dir) == before
    read_result(run_dir, "eval", COLUMNS)  # still one evaluation's pair
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


KILL_BETWEEN_RENAMES = textwrap.dedent("""
    import os, signal
    real_replace = os.replace
    def replace(src, dst):
        real_replace(src, dst)
        if str(dst).endswith("eval_points.npz"):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
""")


def test_a_kill_between_the_renames_leaves_a_pair_that_is_refused(evaluated, data_dir, tmp_path):
    run_dir = copy(evaluated, tmp_path / "run")
    old_summary = (run_dir / "eval.json").read_bytes()
    killed = run("evaluate.py", str(run_dir), *EVALUATE, "--seed", "7", data_dir=data_dir,
                 prelude=KILL_BETWEEN_RENAMES)
    assert killed.returncode == -9
    assert (run_dir / "eval.json").read_bytes() == old_summary  # the new points, the old summary
    with pytest.raises(RunDirError, match="not from the same evaluation.*evaluate again"):
        read_result(run_dir, "eval", COLUMNS)
    # AIS keeps its result and says in one line why it did not compare
    ais = run("evaluate.py", str(run_dir), *AIS, data_dir=data_dir)
    assert ais.returncode == 0, ais.stderr
    assert "not compared with the importance-weighted estimate" in ais.stdout
    assert "iwae" not in json.loads((run_dir / "eval_ais.json").read_text())
    read_result(run_dir, "eval_ais", ("log_px",))
    # evaluating again makes a matching pair
    again = run("evaluate.py", str(run_dir), *EVALUATE, data_dir=data_dir)
    assert again.returncode == 0, again.stderr
    read_result(run_dir, "eval", COLUMNS)


@pytest.mark.parametrize("damage", [
    ("eval.json", b"[1, 2, 3]\n"),
    ("eval.json", b"{not json"),
    ("eval_points.npz", b"PK\x03\x04 truncated"),
    ("eval_points.npz", b""),
])
def test_ais_is_saved_whatever_eval_json_holds(evaluated, data_dir, tmp_path, damage):
    run_dir = copy(evaluated, tmp_path / "run")
    name, content = damage
    (run_dir / name).write_bytes(content)
    result = run("evaluate.py", str(run_dir), *AIS, data_dir=data_dir)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    summary, points = read_result(run_dir, "eval_ais", ("log_px",))
    assert summary["num_points"] == 4 and len(points["log_px"]) == 4
    if name == "eval_points.npz":  # a readable eval.json of this checkpoint, unreadable points
        assert "not compared with the importance-weighted estimate" in result.stdout


def test_ais_compares_with_a_matching_pair(evaluated, data_dir, tmp_path):
    run_dir = copy(evaluated, tmp_path / "run")
    result = run("evaluate.py", str(run_dir), *AIS, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    summary, points = read_result(run_dir, "eval_ais", ("log_px", "iwae_log_px"))
    iwae = json.loads((run_dir / "eval.json").read_text())
    assert summary["iwae"]["num_points"] == 4 and summary["checkpoint_sha256"] == iwae["checkpoint_sha256"]
    np.testing.assert_allclose(points["iwae_log_px"],
                               read_result(run_dir, "eval", COLUMNS)[1]["log_px"][:4])


def test_the_evaluation_at_the_end_of_training_records_its_checkpoint(small_run):
    from support import quiet

    from pyro_vae.runs import load_checkpoint
    from pyro_vae.training.trainer import train
    train({**small_run, "epochs": 1, "eval_samples": 5}, log=quiet, progress=False)
    run_dir = Path(small_run["out"])
    summary, _ = read_result(run_dir, "eval", COLUMNS)
    assert summary["checkpoint_sha256"] == load_checkpoint(run_dir / "checkpoint.pt")["checksum"]


def test_a_fifo_planted_as_eval_json_blocks_nothing(evaluated, data_dir, tmp_path):
    """A named pipe would block a plain read for ever: it is refused as not a regular file."""
    import os
    run_dir = copy(evaluated, tmp_path / "run")
    (run_dir / "eval.json").unlink()
    os.mkfifo(run_dir / "eval.json")
    result = run("evaluate.py", str(run_dir), *AIS, data_dir=data_dir)  # run() times out at 300 s
    assert result.returncode == 0, result.stderr
    assert "not a regular file" in result.stdout
    read_result(run_dir, "eval_ais", ("log_px",))
