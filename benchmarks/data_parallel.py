#!/usr/bin/env python
"""Throughput of one process against ``torchrun`` with N ranks, interleaved: training, or with
``--evaluate RUN`` the log p(x) evaluation.

Training: each variant trains a fresh run for ``--epochs`` epochs through the real entry point
(``scripts/svi_train.py``, under ``python -m torch.distributed.run --nproc-per-node N`` for the
ranked ones) and is scored by the images per second of its training steps: the epochs'
``train_seconds`` from metrics.jsonl, which leave out start-up, the per-epoch test ELBO and the
checkpoint writes. Evaluation: each variant runs ``scripts/evaluate.py RUN`` on ``--limit``
test images with ``--num-samples`` K, scored by images per second of the estimate (eval.json's
``seconds``, which leave out start-up and loading). The CPU's cores are split evenly: one process gets ``--threads`` threads, each
of N ranks ``--threads / N``. Rounds run the variants in a fresh random order; the ratio of each
variant's throughput to the one process's is taken per round, and the median reported.

    python benchmarks/data_parallel.py --ranks 1 2 --threads 2             # 2-core CPU
    python benchmarks/data_parallel.py --device cuda --ranks 1 2 4 8        # one GPU per rank
    python benchmarks/data_parallel.py --config configs/fast/dreg5_1layer.yaml --batch-size 100
    python benchmarks/data_parallel.py --evaluate runs/<run> --limit 200 --num-samples 5000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "scripts" / "svi_train.py"
EVALUATE = REPO / "scripts" / "evaluate.py"


def command(ranks: int, args: argparse.Namespace, out: Path) -> list[str]:
    launcher = [sys.executable] if ranks == 0 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    if args.evaluate:
        return [*launcher, str(EVALUATE), args.evaluate, "--limit", str(args.limit), "--num-samples",
                str(args.num_samples), "--device", args.device, "--out", str(out)]
    flags = ["--epochs", str(args.epochs), "--limit-train", str(args.limit_train), "--limit-test",
             "1000", "--batch-size", str(args.batch_size), "--device", args.device, "--no-plots",
             "--out", str(out)]
    if args.config:
        flags += ["--config", args.config]
    return [*launcher, str(TRAIN), *flags]


def images_per_second(ranks: int, args: argparse.Namespace, workdir: Path) -> float:
    out = Path(tempfile.mkdtemp(dir=workdir)) / "run"
    threads = args.threads if ranks == 0 else max(1, args.threads // ranks)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command(ranks, args, out), check=True, env=env, stdout=subprocess.DEVNULL)
    if args.evaluate:
        return args.limit / json.loads((out / "eval.json").read_text())["seconds"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps_per_epoch = args.limit_train // args.batch_size
    return len(records) * steps_per_epoch * args.batch_size / sum(r["train_seconds"] for r in records)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="torchrun ranks to time")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads in all")
    p.add_argument("--config", help="a YAML config (default: the default model)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=100, help="the global batch")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--evaluate", metavar="RUN", help="time scripts/evaluate.py RUN instead of training")
    p.add_argument("--limit", type=int, default=200, help="--evaluate: test images")
    p.add_argument("--num-samples", type=int, default=5000, help="--evaluate: K")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    variants = {"1 process": 0, **{f"torchrun {n}": n for n in args.ranks}}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as workdir:
        order = list(variants)
        for r in range(args.rounds):
            random.shuffle(order)
            for name in order:
                rates[name].append(images_per_second(variants[name], args, Path(workdir)))
            print(f"round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:.0f}" for n in variants),
                  flush=True)
    reference = rates["1 process"]
    results = {}
    for name, values in rates.items():
        ratios = [v / ref for v, ref in zip(values, reference)]
        results[name] = {"images_per_second": statistics.median(values),
                         "ratio_to_one_process": statistics.median(ratios)}
        print(f"{name:>12}: {statistics.median(values):8.0f} images/s, "
              f"x{statistics.median(ratios):.2f} of one process (rounds: "
              f"{', '.join(f'{x:.2f}' for x in ratios)})")
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
