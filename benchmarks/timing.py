"""Interleaved timing shared by the benchmarks: fair ratios on a noisy machine.

Each round runs every variant once, in a fresh random order, so that drifts in machine speed
(other processes, frequency scaling) hit all variants alike; ratios are taken per round and the
median over rounds is reported. Each variant runs in a Pyro param-store scope of its own, entered
outside the timed region: otherwise the first model's parameters, registered by name, would
shadow the others'.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from typing import Callable, Optional

import pyro
import torch

from pyro_vae.config import make_config
from pyro_vae.models import build_model
from pyro_vae.runs.opening import load_run, load_weights


def benchmark_model(run_dir: Optional[str], device: torch.device, settings: dict,
                    train_data: Optional[torch.Tensor] = None):
    """``(cfg, model)``: a run's trained networks, or a fresh model of ``settings`` (random
    weights; ``train_data`` for priors that start from data), on ``device``."""
    if run_dir:
        state, cfg = load_run(run_dir)
        model = build_model(cfg).to(device)
        load_weights(model, state["model"], run_dir)
    else:
        cfg = make_config(settings)
        model = build_model(cfg, train_data=train_data).to(device)
    return cfg, model


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call of each variant, ``rounds`` calls each, after ``warmup`` calls."""
    store = pyro.get_param_store()
    scopes = {name: None for name in variants}

    def timed(name: str) -> float:
        with store.scope(scopes[name]) as scopes[name]:
            sync()
            start = time.perf_counter()
            variants[name]()
            sync()
            return time.perf_counter() - start

    for name in variants:
        for _ in range(warmup):
            timed(name)
    times = {name: [] for name in variants}
    order = list(variants)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            times[name].append(timed(name))
    return times


def ratio_summary(times: list[float], reference: list[float]) -> dict[str, float]:
    """Median seconds, and the median and quartiles of the per-round ratio to ``reference``."""
    ratios = [t / r for t, r in zip(times, reference)]
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    return {"seconds": statistics.median(times), "ratio": statistics.median(ratios),
            "ratio_q1": q1, "ratio_q3": q3}


def write_json(path: str, results: dict) -> None:
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
