"""TF32 (pyro_vae.core.precision): off by default, on in training with --tf32, always off while log
p(x) is estimated, and whatever was set before comes back."""

import pytest
import torch
from support import TINY_RUN, quiet
from support.linear_gaussian import LinearGaussianVAE

from pyro_vae.config import make_config
from pyro_vae.core.precision import tf32, tf32_enabled, tf32_state
from pyro_vae.evaluation import estimate_ais, evaluation_context
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.trainer import Trainer

CPU = torch.device("cpu")


def test_the_context_switches_tf32_and_restores_the_exact_switches():
    before = tf32_state()
    with tf32(True):
        assert tf32_enabled()
        on = tf32_state()
        with tf32(False):
            assert not tf32_enabled()
        assert tf32_state() == on
    assert tf32_state() == before and not tf32_enabled()  # PyTorch's default: matmuls in float32


def test_an_evaluation_runs_without_tf32_and_restores_the_previous_setting():
    vae = LinearGaussianVAE()
    with tf32(True):
        enabled = tf32_state()
        with evaluation_context(vae, CPU, seed=0):
            assert not tf32_enabled()
            assert all(value in ("ieee", False) for value in tf32_state())  # convolutions too
        assert tf32_state() == enabled


def test_ais_runs_without_tf32(monkeypatch):
    import pyro_vae.evaluation.ais as ais_module
    seen = []
    real = ais_module.anneal

    def spy(*args, **kwargs):
        seen.append(tf32_enabled())
        return real(*args, **kwargs)
    monkeypatch.setattr(ais_module, "anneal", spy)
    vae = LinearGaussianVAE()
    with tf32(True):
        estimate_ais(vae, vae.sample_data(3), 2, num_chains=2, log=quiet)
        assert tf32_enabled()
    assert seen == [False]


@pytest.mark.parametrize("flag", [True, False])
def test_training_runs_with_tf32_only_when_asked(data_dir, tmp_path, flag):
    seen = []

    class SeesTF32(Callback):
        def on_epoch_start(self, trainer, epoch):
            seen.append(tf32_enabled())

    cfg = make_config({**TINY_RUN, "data_dir": data_dir, "out": str(tmp_path / "run"), "tf32": flag})
    before = tf32_state()
    Trainer(cfg, log=quiet, progress=False, callbacks=[SeesTF32()]).fit()
    assert seen == [flag] and tf32_state() == before


def test_the_flag_and_the_config_key():
    assert make_config({}).run.tf32 is False
    assert make_config({"tf32": True}).run.tf32 is True
