"""Data-parallel training and sharded evaluation on 2 CPU ranks (gloo), spawned by the tests as
torchrun would launch them (:mod:`spawn_ranks`), against one process."""

import json
import math
import os
import pickle
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pyro.distributions import Independent
from pyro.poutine.messenger import Messenger
from support import REPO, load_command, quiet, run_script
from support.spawn_ranks import run_ranks, torchrun_environment

from pyro_vae.config import Config
from pyro_vae.core.distributed import Ranks, batch_span, ranks, share, stream_seed
from pyro_vae.core.errors import ConfigError
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.data_parallel import data_parallel_problem
from pyro_vae.training.trainer import SVIStep, Trainer

BATCH = 8  # the global batch of the one-step comparison




class CommonNoise(Messenger):
    """Every latent value z = loc + scale * eps with a given ``eps``: the guide's noise made the
    same for a data point whichever rank it is on (common random numbers), so that one step on
    shares of a batch can be compared exactly with one step on the whole batch."""

    def __init__(self, eps: torch.Tensor):
        super().__init__()
        self.eps = eps

    def _pyro_sample(self, msg):
        if msg["name"] != "z":  # the VAE's one latent site
            return
        fn = msg["fn"].base_dist if isinstance(msg["fn"], Independent) else msg["fn"]
        msg["value"] = fn.loc + fn.scale * self.eps


def tiny(data_dir, out, **options):
    """A tiny run on the CPU (the ranks see no GPU: spawn_ranks), whatever the machine."""
    return {"data_dir": data_dir, "device": "cpu", "limit_train": 64, "limit_test": 40, "batch_size": BATCH,
            "hidden": [32], "latent_dim": 4, "plots": False, "out": str(out), **options}


def one_step(overrides: dict) -> dict:
    """One SVI step on this rank's share of the first BATCH test images, with common noise;
    the loss and the parameters after the step."""
    trainer = Trainer(Config.from_flat(**overrides), log=quiet, progress=False)
    mine = share(BATCH, ranks())
    k = trainer.cfg.objective.num_particles
    eps = torch.randn(k, BATCH, 4, generator=torch.Generator().manual_seed(1))[:, mine]
    guide = CommonNoise(eps if k > 1 else eps[0])(trainer.model.guide)
    model = SimpleNamespace(model=trainer.model.model, guide=guide, parameters=trainer.model.parameters)
    step = SVIStep(model, trainer.step.elbo, trainer.optimizer, data_parallel=ranks().distributed)
    with trainer.param_scope():
        loss = step(trainer.data.test[:BATCH][mine])
    return {"loss": loss, "compiled": step.lowered is not None,
            "params": {k: v.clone() for k, v in trainer.model.state_dict().items()}}


@pytest.mark.parametrize("options", [{"elbo": "trace"}, {"elbo": "iwae", "num_particles": 5}],
                         ids=["trace", "iwae"])
def test_two_ranks_take_the_step_one_process_takes_on_the_whole_batch(data_dir, tmp_path, options):
    overrides = tiny(data_dir, tmp_path / "never-written", **options)
    one = one_step(overrides)
    two = [r["result"] for r in run_ranks(2, one_step, overrides, tmp=tmp_path)]
    assert one["compiled"] and all(r["compiled"] for r in two)
    assert two[0]["loss"] == two[1]["loss"]  # the summed loss, on both ranks
    assert math.isclose(two[0]["loss"], one["loss"], rel_tol=1e-6)
    initial = dict(Trainer(Config.from_flat(**overrides), log=quiet, progress=False).model.named_parameters())
    for name, value in one["params"].items():
        assert torch.equal(two[0]["params"][name], two[1]["params"][name]), name  # in lockstep
        torch.testing.assert_close(two[0]["params"][name], value, rtol=1e-5, atol=1e-6)
        if name in initial:  # a parameter, not a buffer: the step moved it
            assert not torch.equal(value, initial[name]), name


def train_script(argv: list[str]) -> int:
    return load_command("svi_train").parse_and_run(argv)


def evaluate_scripts(argvs: list[list[str]]) -> list[int]:
    return [load_command("evaluate").parse_and_run(argv) for argv in argvs]


def flags(overrides: dict) -> list[str]:
    out = []
    for key, value in overrides.items():
        flag = key.replace('_', '-')
        if isinstance(value, bool):
            out.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            out += [f"--{flag}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    return out


def test_only_rank_0_writes_and_runs_resume_across_one_and_two_ranks(data_dir, tmp_path):
    run = tmp_path / "run"
    base = flags(tiny(data_dir, run, elbo="iwae", num_particles=3))
    ranks2 = run_ranks(2, train_script, base + ["--epochs", "1", "--tensorboard"], tmp=tmp_path, watch=tmp_path)
    assert [r["result"] for r in ranks2] == [0, 0]
    written = {os.path.basename(p) for p in ranks2[0]["written"]}
    assert {"checkpoint.pt", "metrics.jsonl", "config.yaml", ".lock", "tensorboard"} <= written
    assert any(name.startswith("events.out.tfevents.") for name in written)
    assert ranks2[1]["written"] == []
    assert train_script(["--resume", str(run), "--epochs", "2"]) == 0  # 2 ranks -> 1 process
    ranks2 = run_ranks(2, train_script, ["--resume", str(run), "--epochs", "3"], tmp=tmp_path,
                       watch=tmp_path)  # 1 process -> 2 ranks
    assert [r["result"] for r in ranks2] == [0, 0] and ranks2[1]["written"] == []
    history = RunDir(run).read_metrics()
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["step"] for r in history] == [8, 16, 24]  # 64 images in global batches of 8
    assert all(math.isfinite(r["test_elbo"]) for r in history)
    assert history[2]["test_elbo"] > history[0]["test_elbo"]


def test_a_two_rank_run_resumed_on_two_ranks_equals_an_uninterrupted_one(data_dir, tmp_path):
    base = flags(tiny(data_dir, tmp_path / "whole"))
    run_ranks(2, train_script, base + ["--epochs", "2"], tmp=tmp_path)
    part = tiny(data_dir, tmp_path / "part")
    run_ranks(2, train_script, flags(part) + ["--epochs", "1"], tmp=tmp_path)
    run_ranks(2, train_script, ["--resume", part["out"], "--epochs", "2"], tmp=tmp_path)
    times = ("train_seconds", "epoch_seconds", "wall_seconds")
    whole, resumed = (RunDir(tmp_path / name).read_metrics() for name in ("whole", "part"))
    assert [{k: v for k, v in r.items() if k not in times} for r in resumed] == \
        [{k: v for k, v in r.items() if k not in times} for r in whole]


EVAL_ARRAYS = {"eval": ("log_px", "elbo", "khat", "ess"), "eval_ais": ("log_px", "acceptance", "step_size")}


def test_evaluation_on_two_ranks_equals_evaluation_on_one(data_dir, tmp_path):
    run = tmp_path / "run"
    assert train_script(flags(tiny(data_dir, run)) + ["--epochs", "1"]) == 0
    results = {}
    for world in (1, 2):
        out = tmp_path / f"eval-{world}"
        # 40 images in batches of 6: 7 batches, shared 4 + 3 (the last one short)
        iwae = [str(run), "--num-samples", "30", "--batch-size", "6", "--limit", "40", "--out", str(out)]
        ais = [str(run), "--method", "ais", "--ais-steps", "4", "--ais-chains", "2", "--leapfrog", "2",
               "--limit", "10", "--batch-size", "3", "--out", str(out)]
        statuses = [r["result"] for r in run_ranks(world, evaluate_scripts, [iwae, ais], tmp=tmp_path)]
        assert statuses == [[0, 0]] * world
        results[world] = out
    for stem, names in EVAL_ARRAYS.items():
        with np.load(results[1] / f"{stem}_points.npz") as one, np.load(results[2] / f"{stem}_points.npz") as two:
            for name in names:
                np.testing.assert_array_equal(one[name], two[name], err_msg=f"{stem} {name}")
            assert len(one["log_px"]) == (40 if stem == "eval" else 10)
        summaries = [json.loads((results[w] / f"{stem}.json").read_text()) for w in (1, 2)]
        assert summaries[0]["ranks"] == 1 and summaries[1]["ranks"] == 2
        for key in ("log_likelihood", "stderr", "num_points"):
            assert summaries[0][key] == summaries[1][key], (stem, key)


def refused(data_dir, out) -> int:
    return train_script(flags(tiny(data_dir, out, estimator="score", elbo="tracegraph", baseline="avg")))


def test_a_refused_run_stops_every_rank_with_one_message(data_dir, tmp_path, capfd):
    results = run_ranks(2, refused, data_dir, tmp_path / "run", tmp=tmp_path)
    assert [r["result"] for r in results] == [2, 2]
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "--baseline avg" in lines[0] and "without torchrun" in lines[0], err
    assert not (tmp_path / "run").exists()


def test_the_readme_command_trains_with_torchrun(data_dir, tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               str(REPO / "scripts" / "svi_train.py"), *flags(tiny(data_dir, run)), "--epochs", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo alone
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("epoch   1/1") == 1, done.stdout  # printed by rank 0 only
    assert "data-parallel over 2 ranks (gloo)" in done.stdout
    assert RunDir(run).read_metrics()[0]["step"] == 8


# --- in one process ---

def test_shares_cover_the_items_in_order():
    for n in (0, 1, 7, 8, 100):
        for world in (1, 2, 3, 8):
            parts = [range(n)[share(n, Ranks(r, world, "gloo"))] for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_batch_spans_give_each_rank_whole_batches_in_order():
    for n, batch in ((40, 6), (10, 3), (5, 100), (0, 4)):
        for world in (1, 2, 3, 8):
            spans = [batch_span(n, batch, Ranks(r, world, "gloo")) for r in range(world)]
            images = [i for first, end in spans for i in range(first, end)]
            assert images == list(range(n))
            assert all(first % batch == 0 for first, end in spans if end > first)


def test_streams_are_named_apart():
    seeds = {stream_seed("rank", 0, 1), stream_seed("rank", 0, 1, 0), stream_seed("rank", 0, 1, 1),
             stream_seed("rank", 1, 1), stream_seed("rank", 0, 2, 0), stream_seed("data order", 0, 1)}
    assert len(seeds) == 6 and stream_seed("rank", 0, 1, 1) == stream_seed("rank", 0, 1, 1)


def test_one_process_sums_nothing():
    assert ranks() == Ranks()  # no process group: every helper is the identity


@pytest.mark.parametrize("options, problem", [
    ({"estimator": "score", "elbo": "tracegraph", "baseline": "avg"}, "baseline='avg'"),
    ({"estimator": "score", "elbo": "tracegraph", "baseline": "nn"}, "baseline='nn' keeps its moving average"),
    ({"estimator": "score", "elbo": "tracegraph", "baseline": "nn-only"}, None),  # the network alone splits
    ({"batch_size": 1}, "batch_size=1 leaves"),
])
def test_data_parallel_refuses_what_does_not_split(data_dir, tmp_path, options, problem):
    trainer = Trainer(Config.from_flat(**tiny(data_dir, tmp_path / "run", **options)), log=quiet, progress=False)
    found = data_parallel_problem(trainer.cfg, trainer.model, trainer.data.test[:2], Ranks(0, 2, "gloo"))
    assert found is None if problem is None else problem in found


def test_an_objective_must_declare_that_it_sums_over_data(data_dir, tmp_path):
    from pyro_vae.infer import objectives

    trace = objectives.OBJECTIVES.get("trace")
    objectives.register_objective("trace", replace=True, kl_warmup=True)(trace.factory)
    try:
        trainer = Trainer(Config.from_flat(**tiny(data_dir, tmp_path / "run")), log=quiet, progress=False)
        found = data_parallel_problem(trainer.cfg, trainer.model, trainer.data.test[:2], Ranks(0, 2, "gloo"))
    finally:
        objectives.register_objective("trace", replace=True, description=trace.description,
                                      **trace.capabilities)(trace.factory)
    assert "sums_over_data=True" in found



@pytest.mark.parametrize("script", ["plot_run", "grad_variance"])
def test_one_process_commands_refuse_several_ranks(script, tmp_path, monkeypatch, capsys):
    for name, value in torchrun_environment(0, 2, 29500).items():
        monkeypatch.setenv(name, value)
    status, err = run_script(capsys, script, tmp_path)
    assert status == 2 and "runs in one process; start it with python, not torchrun" in err
    monkeypatch.setenv("RANK", "1")
    assert run_script(capsys, script, tmp_path) == (2, "")  # said once, by rank 0


# --- objects between ranks: plain data only; one GPU per rank ---

class Exotic:
    """Not plain data: unpickling it would import and call code of the sender's choosing."""

    def __reduce__(self):
        return (print, ("code ran on the receiving rank",))


def test_object_bytes_round_trip_plain_data_and_refuse_anything_else():
    from pyro_vae.core.distributed import from_bytes, to_bytes

    value = ("ok", {"epoch": 3, "loss": [1.5, float("inf")], "x": torch.arange(4)}, None, "text")
    back = from_bytes(to_bytes(value))
    assert back[0] == "ok" and back[2:] == (None, "text")
    assert back[1]["loss"] == [1.5, float("inf")] and torch.equal(back[1]["x"], torch.arange(4))
    with pytest.raises(pickle.UnpicklingError):
        from_bytes(to_bytes(Exotic()))


def send_an_object_that_is_not_plain_data() -> str:
    from pyro_vae.core.distributed import broadcast

    try:
        broadcast(Exotic() if ranks().main else None)
    except pickle.UnpicklingError:
        return "refused"
    return "kept"


def test_a_rank_refuses_an_object_that_is_not_plain_data(tmp_path, capfd):
    results = [r["result"] for r in run_ranks(2, send_an_object_that_is_not_plain_data, tmp=tmp_path)]
    assert results == ["kept", "refused"]  # rank 0 keeps its own object; rank 1 never unpickles it
    assert "code ran" not in capfd.readouterr().out


@pytest.mark.parametrize("local_rank, local_world, gpus", [(1, 2, 1), (0, 2, 1), (2, 3, 2)])
def test_a_cuda_run_refuses_more_ranks_on_a_machine_than_gpus(monkeypatch, local_rank, local_world, gpus):
    from pyro_vae.core.distributed import resolve_device

    for name, value in torchrun_environment(local_rank, local_world, 29500).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    for device in ("cuda", "auto"):
        with pytest.raises(ConfigError) as refused:
            resolve_device(device)
        message = str(refused.value)
        assert "\n" not in message and f"--nproc-per-node {gpus} or fewer, or device='cpu'" in message
        assert f"started {local_world} processes" in message
    assert resolve_device("cpu") == torch.device("cpu")  # a CPU run needs no GPU per rank
    monkeypatch.setattr(torch.cuda, "device_count", lambda: local_world)
    assert resolve_device("cuda") == torch.device("cuda")  # one GPU each: fine
