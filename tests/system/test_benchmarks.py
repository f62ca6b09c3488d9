"""benchmarks/train_step.py's NAME+graph variant: the whole-step CUDA graph that svi_train.py runs
on CUDA. The capture needs a GPU (benchmarks/gpu_check.sh times it there); here, the refusal on
a CPU and the same steps uncaptured."""

import importlib
from pathlib import Path

import pytest
import torch
from support import assert_one_line_error

from pyro_vae.config import make_config
from pyro_vae.models import build_model
from pyro_vae.training.trainer import make_optimizer, make_step

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def train_step(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the benchmarks import their timing module
    return importlib.import_module("train_step")


def test_the_graph_variant_is_refused_on_a_cpu_in_one_line(train_step, capsys):
    with pytest.raises(SystemExit) as stop:
        train_step.main(["--device", "cpu", "--variants", "trace", "trace+graph"])
    assert_one_line_error(stop.value.code, capsys.readouterr().err, "trace+graph", "--device cuda")


def test_a_graphed_block_runs_its_steps_across_epochs(train_step):
    """Uncaptured (as on a CPU), a block is the Trainer's device loop: 5 blocks of 4 steps over
    epochs of 10 batches start an epoch again before a block would run past its end."""
    cfg = make_config({"hidden": [16], "latent_dim": 2, "batch_size": 8})
    model = build_model(cfg)
    optimizer = make_optimizer(cfg, model)
    step = make_step(cfg, model, optimizer)
    before = [p.detach().clone() for p in model.parameters()]
    block = train_step.GraphedBlock(step, optimizer, torch.rand(80, 784), 8, steps=4, capture=False)
    for _ in range(5):
        block()
    total, bad = block.graphed.read()
    assert block.graphed.steps_run == 20 and bad is None and total > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
