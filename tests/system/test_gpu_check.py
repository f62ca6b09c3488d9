"""benchmarks/gpu_check.sh, the check that a borrowed GPU runs (docs/performance.md, "GPU check"), as its dry
run: DEVICE=cpu QUICK=1 runs every command of the check on the CPU with tiny sizes, so that a flag
renamed or a file moved breaks this test here, not the few minutes a GPU is lent for."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)  # by its path: benchmarks/ on sys.path would shadow names


@pytest.mark.slow  # 90 s on 2 CPU cores (4 min when busy): 15 processes, each importing torch and Pyro
def test_the_dry_run_runs_every_step_of_the_check(data_dir, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "OUT": str(out), "DATA": data_dir,
           "PY": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["all.log", "steps.tar.gz", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert list(steps) == gpu_check.STEPS

    # The CUDA tests are skipped on a CPU, never failed (and "no tests" until a test is marked cuda).
    cuda = steps.pop("tests_cuda")
    assert not {"passed", "failed", "error", "errors"} & set(cuda["tests"]), cuda
    if any((REPO / "tests").rglob("test_cuda*.py")):
        assert cuda["status"] == "ok" and cuda["tests"].get("skipped"), cuda
    else:
        assert cuda["status"] == "no tests", cuda
    assert {name: s["status"] for name, s in steps.items()} == {name: "ok" for name in steps}, \
        (out / "all.log").read_text()[-5000:]

    # the numbers each kind of step records
    for name in ("train_default_graph", "train_default_eager", "train_iwae_graph", "train_iwae_eager"):
        assert steps[name]["epochs"] == 1 and steps[name]["ms_per_step_last_epoch"] > 0, steps[name]
    assert steps["eval_1k"]["num_points"] == 50 and steps["eval_10k"]["num_points"] == 100
    assert steps["ais_100"]["num_points"] == 10 and steps["ais_100"]["seconds_per_step"] > 0
    for name in ("bench_train_default", "bench_train_iwae", "bench_eval", "bench_ais"):
        assert steps[name]["variants"], name
    assert steps["tests_short"]["tests"]["tests collected"] > 0
    assert [c["name"].split()[0] for c in summary["checks"]] == [g for g, _, _ in gpu_check.TRAIN_PAIRS]
    assert all(c["ok"] is not None for c in summary["checks"]), summary["checks"]
