"""The CUDA paths of training, on a GPU (skipped without one; ``pytest -m cuda`` runs them alone).

Written before any GPU ran this code, from reading it: the CUDA-graph step against the same step
launched from the host, a resume on the GPU against an uninterrupted run, runs moved between the
GPU and the CPU (checkpoint, optimizer state, generator state), the traced step's tensors all on
the GPU, and a torchrun job with more ranks than GPUs refused in one line. Evaluation and AIS on
the GPU are tests/evaluation/test_cuda_evaluate.py's. Comparisons between a captured graph and kernels
launched one by one allow float32 rounding (Adam's bias corrections are computed on the device
in one and on the host in the other); a resume on the GPU replays the same kernels.
"""

import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
from support import REPO, TINY_RUN, quiet, run_script

from pyro_vae.config import Config
from pyro_vae.runs.checkpoint import load_checkpoint, save_checkpoint
from pyro_vae.training.trainer import Trainer, train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

# 8 steps an epoch: the graph is captured after graphed.WARMUP_STEPS (3) uncaptured steps.
CUDA_RUN = {**TINY_RUN, "device": "cuda", "limit_train": 256, "limit_test": 64, "batch_size": 32,
            "hidden": [32], "latent_dim": 4, "epochs": 2}


def run(data_dir, out, device_loop=None, **overrides) -> Trainer:
    return train({"data_dir": data_dir, **CUDA_RUN, "out": str(out), **overrides}, log=quiet, progress=False,
                 device_loop=device_loop)


def assert_same_training(a: Trainer, b: Trainer, rtol: float, atol: float) -> None:
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=name)
    assert len(a.history) == len(b.history)
    for x, y in zip(a.history, b.history):
        for key in ("train_loss", "test_elbo"):
            assert math.isclose(x[key], y[key], rel_tol=rtol * 10), (key, x[key], y[key])


@pytest.mark.parametrize("options", [{"elbo": "trace"}, {"elbo": "dreg", "num_particles": 3}],
                         ids=["trace", "dreg"])
def test_the_cuda_graph_step_equals_the_host_launched_step(data_dir, tmp_path, options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graphed = run(data_dir, tmp_path / "graphed", **options)
    assert graphed.graphed is not None and graphed.graphed.graph is not None  # captured, replayed
    assert graphed.graphed.steps_run == 16
    assert not [w for w in caught if "capturable" in str(w.message)]  # the warm-up says nothing
    host = run(data_dir, tmp_path / "host", device_loop=False, **options)  # every step launched from the host
    assert host.graphed is None and host.device.type == "cuda"
    assert_same_training(graphed, host, rtol=1e-4, atol=1e-5)  # same batches and draws


def test_a_resume_on_cuda_equals_an_uninterrupted_run(data_dir, tmp_path):
    whole = run(data_dir, tmp_path / "whole", epochs=2)
    run(data_dir, tmp_path / "part", epochs=1)
    resumed = train({"resume": str(tmp_path / "part"), "epochs": 2}, log=quiet, progress=False)
    assert resumed.device.type == "cuda" and resumed.graphed is not None
    assert_same_training(whole, resumed, rtol=1e-6, atol=1e-7)


def test_the_checkpoint_holds_the_runs_own_gpu_generator_and_a_resume_restores_it(data_dir, tmp_path):
    out = tmp_path / "run"
    run(data_dir, out, epochs=1)
    saved = load_checkpoint(out / "checkpoint.pt")["rng"]["cuda"]
    assert isinstance(saved, torch.Tensor) and saved.dtype == torch.uint8 and saved.dim() == 1
    caller = torch.cuda.get_rng_state()
    resumed = Trainer.resume(str(out), {"epochs": 2}, log=quiet, progress=False)
    assert torch.equal(resumed.generators.state["cuda"], saved)  # the run's own generator
    assert torch.equal(torch.cuda.get_rng_state(), caller)  # the caller's is left as it was
    # as earlier pyro-vae wrote it: one state per GPU of the machine, the run's device's taken
    state = load_checkpoint(out / "checkpoint.pt")
    state["rng"]["cuda"] = [saved] + [torch.zeros_like(saved)] * 7
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "checksum")},
                    out / "checkpoint.pt")
    torch.cuda.manual_seed(12345)
    resumed = Trainer.resume(str(out), {"epochs": 2}, log=quiet, progress=False)
    assert torch.equal(resumed.generators.state["cuda"], saved)


def test_a_gpu_trained_run_opens_on_the_cpu(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    run(data_dir, out, epochs=1)
    lines = []
    resumed = Trainer.resume(str(out), {"epochs": 2, "device": "cpu"}, log=lines.append, progress=False)
    resumed.fit()
    assert resumed.epoch == 2 and all(p.device.type == "cpu" for p in resumed.model.parameters())
    assert all(t.device.type == "cpu" for s in resumed.optimizer.state.values() for t in s.values()
               if isinstance(t, torch.Tensor))
    assert any("CUDA generator state is not restored on the cpu" in line for line in lines), lines
    status, err = run_script(capsys, "evaluate", out, "--device", "cpu", "--num-samples", "5",
                             "--limit", "8", "--data-dir", data_dir, "--out", tmp_path / "eval")
    assert status == 0, err


def test_a_cpu_trained_run_opens_on_the_gpu(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    run(data_dir, out, epochs=1, device="cpu")
    lines = []
    resumed = Trainer.resume(str(out), {"epochs": 2, "device": "cuda"}, log=lines.append, progress=False)
    resumed.fit()
    assert resumed.epoch == 2 and all(p.device.type == "cuda" for p in resumed.model.parameters())
    for state in resumed.optimizer.state.values():  # beside their parameters; captured: step too
        assert all(t.device.type == "cuda" for t in state.values() if isinstance(t, torch.Tensor))
    assert any("written on the cpu" in line for line in lines), lines
    status, err = run_script(capsys, "evaluate", out, "--device", "cuda", "--num-samples", "5",
                             "--limit", "8", "--data-dir", data_dir, "--out", tmp_path / "eval")
    assert status == 0, err


@pytest.mark.parametrize("options", [{"elbo": "trace"}, {"elbo": "iwae", "num_particles": 3},
                                     {"elbo": "meanfield"}, {"prior": "vamp"},
                                     {"model": "hvae", "latent_dim": [6, 3]}],
                         ids=lambda o: "+".join(map(str, o.values())))
def test_the_traced_step_keeps_every_tensor_on_the_gpu(data_dir, tmp_path, options):
    """A CPU tensor inside the captured step would be a host copy in the graph (refused while
    capturing) or a value frozen at capture; 0-dim CPU scalars are kernel arguments, allowed."""
    cfg = Config.from_flat(**{"data_dir": data_dir, **CUDA_RUN, "out": str(tmp_path / "never"), **options})
    trainer = Trainer(cfg, log=quiet, progress=False)
    x = trainer.data.train_batch(torch.arange(cfg.optim.batch_size, device="cuda"))
    with trainer.param_scope():
        graph = trainer.step.lowered.compile(x)
    on_cpu = [f"{node.name} ({node.target})" for node in graph.graph.nodes
              if isinstance(node.meta.get("val"), torch.Tensor) and node.meta["val"].device.type == "cpu"
              and node.meta["val"].dim() > 0]
    tensors = {**dict(graph.named_buffers()), **{name: getattr(graph, name) for name in dir(graph)
                                                   if name.startswith("_tensor_constant")}}
    constants = sorted(name for name, t in tensors.items() if t.device.type == "cpu" and t.dim() > 0)
    assert not on_cpu and not constants, (on_cpu, constants)


def test_torchrun_refuses_more_ranks_than_gpus_in_one_line(data_dir, tmp_path):
    ranks = torch.cuda.device_count() + 1
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
               str(REPO / "scripts" / "svi_train.py"), "--data-dir", data_dir, "--device", "cuda",
               "--limit-train", "256", "--limit-test", "64", "--batch-size", "32", "--hidden", "32",
               "--latent-dim", "4", "--epochs", "1", "--no-plots", "--out", str(tmp_path / "run")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if "each rank needs a GPU of its own" in line]
    assert len(said) == 1, done.stderr  # printed by rank 0 only
    assert f"started {ranks} processes" in said[0] and "--device cpu" in said[0]
    assert not (tmp_path / "run").exists()
