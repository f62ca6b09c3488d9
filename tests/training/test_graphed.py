"""The on-device training loop behind CUDA graphs (pyro_vae.training.graphed), exercised on the CPU: the
same step the graph captures, run uncaptured. Capture itself needs a GPU (tests/training/test_cuda.py).
Every run here is pinned to the CPU (small_run's device): with "auto" on a GPU machine the host
run would be graphed too."""

import math

import pytest
import torch
from support import poison_losses, quiet

from pyro_vae.config import Config
from pyro_vae.core.errors import TrainingDivergedError
from pyro_vae.training.graphed import READ_EVERY, portable_state, set_learning_rate, use_tensor_learning_rate
from pyro_vae.training.trainer import Trainer, train


def run(overrides, device_loop=None, **extra):
    return train({**overrides, **extra}, log=quiet, progress=False, device_loop=device_loop)


@pytest.mark.parametrize("options", [{"elbo": "trace"}, {"elbo": "dreg", "num_particles": 3},
                                     {"model": "hvae", "latent_dim": [6, 3]}],
                         ids=lambda o: "+".join(map(str, o.values())))
def test_the_device_loop_trains_exactly_like_the_host_loop(small_run, tmp_path, options):
    small_run.update(options, epochs=2)
    assert small_run["device"] == "cpu"  # the host loop: on CUDA every compiled run is graphed
    host = run(small_run)
    device = run(small_run, out=str(tmp_path / "device"), device_loop=True)
    assert device.graphed is not None and host.graphed is None
    for (name, p), q in zip(host.model.named_parameters(), device.model.parameters()):
        assert torch.equal(p, q), name  # same batches, same draws, same updates
    for a, b in zip(host.history, device.history):
        assert a["test_elbo"] == b["test_elbo"]
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-5)  # summed in float32


def test_resume_with_the_device_loop_is_exact(small_run, tmp_path):
    small_run.update(epochs=3, lr_schedule="iwae")
    whole = run(small_run, device_loop=True)
    part = str(tmp_path / "part")
    run(small_run, out=part, epochs=1, device_loop=True)
    resumed = run({"resume": part, "epochs": 3}, device_loop=True)
    assert whole.graphed is not None and resumed.graphed is not None
    for (name, p), q in zip(whole.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name


def test_a_nan_loss_on_the_device_stops_the_run_naming_the_batch(small_run, monkeypatch):
    trainer = Trainer(Config.from_flat(**small_run), log=quiet, progress=False, device_loop=True)
    poison_losses(monkeypatch, trainer, float("nan"))
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 0: the training loss became nan"):
        trainer.fit()
    assert trainer.graphed.steps_run == min(READ_EVERY, 256 // small_run["batch_size"])


def test_the_optimizer_state_of_a_captured_step_is_saved_portably():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=1e-3)
    p.grad = torch.ones(3)
    opt.step()
    use_tensor_learning_rate(opt, capturable=False)  # the form a CUDA graph needs, minus the device
    set_learning_rate(opt, 5e-4)
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert opt.param_groups[0]["lr"].item() == pytest.approx(5e-4)
    state = portable_state(opt)
    assert state["param_groups"][0]["lr"] == pytest.approx(5e-4) and not state["param_groups"][0]["capturable"]
    fresh = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=1.0)
    fresh.load_state_dict(state)
    assert isinstance(fresh.param_groups[0]["lr"], float)
