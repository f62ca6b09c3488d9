#!/usr/bin/env python
"""The Python half of ``benchmarks/gpu_check.sh``: what is easier to read in Python than in bash.

    python benchmarks/gpu_check.py versions              # one JSON line: python, torch, CUDA, pyro, ...
    python benchmarks/gpu_check.py summarize WORK OUT    # WORK/steps.tsv + the steps' files -> OUT/summary.json

The summary lists every step the driver knows (``STEPS``), in its order, with its status (ok,
failed, timeout, skipped, not run; "no tests" where pytest selected none), exit status, wall
seconds (start-up included) and the key numbers read from the files the step wrote (the
evaluations' own seconds are ``eval_seconds`` and ``ais_seconds``). A step's numbers are read
by the reader named after the first word of its name, so a new step of an existing kind needs no
code here. The checks compare steps: the CUDA-graph training against ``--no-compile``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Every step of gpu_check.sh, in its order: a step the driver never reached is listed as "not run",
# so that a summary cut short still says what is missing.
STEPS = ["install", "versions", "tests_cuda", "train_iwae_graph", "eval_1k", "eval_10k", "ais_100",
         "train_default_graph", "train_default_eager", "train_iwae_eager", "bench_train_default",
         "bench_train_iwae", "tests_short", "bench_eval", "bench_ais"]

# (graph run, --no-compile run, tolerance in nats on the final test ELBO). On a GPU the two may
# draw different random numbers (a replayed graph advances the generator its own way; Pyro's
# eager step samples in its own order), so they can agree only as two seeds of one run do (on a
# CPU, where both are launched from the host, they agreed exactly in the dry run). Seeds measured
# on the CPU (scripts/svi_train.py --seed 0..3): the default net after the check's 3 epochs ended
# at -121.42, -119.09, -119.64, -120.97 (std 1.1 nats; the curve still climbs 8 nats an epoch),
# so the difference of two seeds has a std of about 1.6 and 5 nats is 3 of them. The IWAE net
# after 2 epochs of a fifth of the data (1,200 steps; the check runs 6,000, where the curve is
# flatter and the spread likely smaller) ended at -143.53, -142.97, -144.76, -146.65 (std 1.6).
# A broken graph (stale batches, a learning rate never applied) is off by tens of nats, or NaN.
TRAIN_PAIRS = [("train_default_graph", "train_default_eager", 5.0),
               ("train_iwae_graph", "train_iwae_eager", 5.0)]


def versions() -> dict:
    import platform

    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "numpy": numpy.__version__,
           "cuda_available": torch.cuda.is_available(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "gpus": torch.cuda.device_count()}
    for name in ("pyro", "arviz"):  # reported, not required: the failure is the step's to show
        try:
            out[name] = __import__(name).__version__
        except ImportError as e:
            out[name] = f"missing ({e})"
    return out


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _round(value, digits=3):
    return round(value, digits) if isinstance(value, float) else value


def read_versions(work: Path, name: str) -> dict:
    lines = [line for line in (work / "logs" / f"{name}.log").read_text().splitlines()
             if line.startswith("{")]
    return json.loads(lines[0]) if lines else {}


def read_tests(work: Path, name: str) -> dict:
    """pytest's last line: '3 passed, 2 skipped, 820 deselected in 4.1s' (or 'N tests collected')."""
    text = (work / "logs" / f"{name}.log").read_text()
    counts = {word: int(n) for n, word in re.findall(
        r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed|tests? collected)", text)}
    return {"tests": counts}


def read_train(work: Path, name: str) -> dict:
    """metrics.jsonl of the run: test ELBO and seconds of each epoch, ms per step, and how the
    step ran (the Trainer's 'step:' and 'whole step' lines)."""
    run = work / "runs" / name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    log = (work / "logs" / f"{name}.log").read_text().splitlines()
    steps = rows[-1]["step"] - (rows[-2]["step"] if len(rows) > 1 else 0)  # in the last epoch
    return {"epochs": len(rows), "steps_per_epoch": steps,
            "final_test_elbo": _round(rows[-1]["test_elbo"]),
            "test_elbo": [_round(r["test_elbo"]) for r in rows],
            "train_seconds_per_epoch": [_round(r["train_seconds"]) for r in rows],
            "epoch_seconds": [_round(r["epoch_seconds"]) for r in rows],
            # the last epoch: the first one also traces the step and captures the graph
            "ms_per_step_last_epoch": _round(1e3 * rows[-1]["train_seconds"] / steps),
            "how": [line.strip() for line in log if "step:" in line or "whole step" in line]}


def read_eval(work: Path, name: str) -> dict:
    result = _json(work / name / "eval.json") or {}
    keep = ("num_points", "num_samples", "log_likelihood", "stderr", "elbo", "device")
    out = {"eval_seconds": _round(result.get("seconds")), **{k: _round(result.get(k)) for k in keep}}
    out["khat_median"] = _round((result.get("psis") or {}).get("khat_median"))
    return out


def read_ais(work: Path, name: str) -> dict:
    """eval_ais.json, written beside eval_1k's eval.json so that it is compared with IWAE."""
    result = _json(work / "eval_1k" / "eval_ais.json") or {}
    keep = ("num_points", "ais_steps", "ais_chains", "leapfrog", "log_likelihood", "acceptance_rate",
            "device")
    out = {"ais_seconds": _round(result.get("seconds")), **{k: _round(result.get(k)) for k in keep}}
    if result.get("seconds") and result.get("ais_steps"):
        out["seconds_per_step"] = _round(result["seconds"] / result["ais_steps"], 5)
    out["ais_minus_iwae"] = _round((result.get("iwae") or {}).get("ais_minus_iwae"))
    return out


def read_bench(work: Path, name: str) -> dict:
    """The benchmark's JSON: per variant its time and its ratios (to the hand-written reference,
    and for NAME+graph to the host-launched step)."""
    result = _json(work / f"{name}.json") or {}
    keep = ("ms_per_step", "seconds", "ratio", "ratio_to_host", "images_steps_per_second")
    return {"variants": {variant: {k: _round(v) for k, v in entry.items() if k in keep}
                         for variant, entry in (result.get("variants") or {}).items()}}


READERS = {"versions": read_versions, "tests": read_tests, "train": read_train, "eval": read_eval,
           "ais": read_ais, "bench": read_bench}


def status(name: str, rc: str) -> str:
    if rc == "skipped":
        return "skipped"
    if name.startswith("tests") and rc == "5":  # pytest: nothing matched the selection
        return "no tests"
    return {"0": "ok", "124": "timeout", "137": "timeout"}.get(rc, "failed")


def summarize(work: Path, out: Path) -> dict:
    ran = {}
    for line in (work / "steps.tsv").read_text().splitlines():
        name, rc, seconds, limit = line.split("\t")
        ran[name] = {"name": name, "status": status(name, rc), "rc": None if rc == "skipped" else int(rc),
                     "seconds": int(seconds), "limit_seconds": int(limit)}
    steps = []
    for name in STEPS + [n for n in ran if n not in STEPS]:
        step = ran.get(name, {"name": name, "status": "not run"})
        reader = READERS.get(name.split("_")[0])
        if reader and step["status"] not in ("skipped", "not run"):
            try:
                step.update(reader(work, name))
            except (OSError, ValueError, KeyError, IndexError) as e:  # a failed step wrote nothing
                step["unread"] = f"{type(e).__name__}: {e}"
        steps.append(step)
    by_name = {s["name"]: s for s in steps}
    checks = []
    for graph, eager, tolerance in TRAIN_PAIRS:
        a, b = (by_name[graph].get("final_test_elbo"), by_name[eager].get("final_test_elbo"))
        check = {"name": f"{graph} vs {eager}", "tolerance_nats": tolerance}
        if isinstance(a, float) and isinstance(b, float):
            check.update(difference=_round(a - b), ok=abs(a - b) <= tolerance, **{
                key: [by_name[graph][key], by_name[eager][key]]  # the graph's, then --no-compile's
                for key in ("ms_per_step_last_epoch", "train_seconds_per_epoch")})
        else:
            check.update(ok=None, why="a run is missing")
        checks.append(check)
    summary = {"ok": all(s["status"] == "ok" for s in steps) and all(c["ok"] for c in checks),
               "steps": steps, "checks": checks}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str]) -> int:
    if argv[:1] == ["versions"]:
        print(json.dumps(versions()))
    elif argv[:1] == ["summarize"] and len(argv) == 3:
        summary = summarize(Path(argv[1]), Path(argv[2]))
        for s in summary["steps"]:
            print(f"{s['name']:<22}{s['status']:<9}{s.get('seconds', ''):>5}")
        for c in summary["checks"]:
            print(f"check {c['name']}: {c}")
        print(f"all ok: {summary['ok']}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
