"""Every likelihood through a whole run (pyro_vae.models.likelihoods wired into the models): a few
steps of training, log p(x) with bits/dim, the figures; the change of variables of dequantized data
in every reported number; colour images through a conv decoder; a user model given the likelihood."""

import math

import pytest
import torch

import pyro_vae as pv
from pyro_vae.config import make_config
from pyro_vae.models import build_model

SMALL = {"hidden": [32], "latent_dim": 4, "epochs": 1, "batch_size": 50, "limit_train": 200,
         "limit_test": 50, "plots": False}


@pytest.mark.parametrize("likelihood, extra", [
    ("logistic", {}), ("logistic-mixture", {"mixtures": 2}), ("gaussian", {}),
    ("gaussian", {"likelihood_options": {"variance": "shared"}}), ("continuous-bernoulli", {}),
])
def test_a_grey_level_run_trains_evaluates_and_reports_bits_per_dim(data_dir, tmp_path, likelihood, extra):
    run = pv.train(likelihood=likelihood, data_dir=data_dir, out=str(tmp_path / "run"), **SMALL, **extra)
    record = run.history[-1]
    assert math.isfinite(record["test_elbo"])
    assert record["test_bits_per_dim"] == pytest.approx(-record["test_elbo"] / (784 * math.log(2)), rel=1e-12)
    estimate = pv.log_likelihood(run.model, run.data.test[:20], num_samples=8)
    summary = estimate.summary
    assert summary["bits_per_dim"] == pytest.approx(-summary["log_likelihood"] / (784 * math.log(2)), rel=1e-12)
    assert 0 < summary["bits_per_dim"] < 20
    paths = pv.plot_run(run, out=str(tmp_path / "figures"))
    assert any(p.name == "samples.png" for p in paths)


def test_dequantized_numbers_are_of_the_8bit_data(data_dir):
    """A density's report on dequantized levels is D log 256 below the same density's on [0, 1]:
    every number is a bound on the 8-bit data's log-likelihood, comparable across likelihoods."""
    cfg = make_config({"likelihood": "gaussian", "hidden": [8], "latent_dim": 2})
    model = build_model(cfg)
    assert model.likelihood.log_cell == pytest.approx(-math.log(256))
    x = torch.rand(3, 784)
    output = torch.randn(3, model.likelihood.out_features)
    on_levels = model.likelihood(output).log_prob(x)
    model.likelihood.on_levels(False)
    assert torch.allclose(on_levels, model.likelihood(output).log_prob(x) - 784 * math.log(256))
    assert not build_model(make_config({"likelihood": "gaussian", "hidden": [8], "latent_dim": 2}),
                           dequantized=False).likelihood.log_cell


@pytest.mark.parametrize("arch", ["conv", "resnet"])
def test_colour_images_through_a_conv_decoder(tmp_path, arch):
    """3 x 32 x 32 8-bit images given as tensors: the conv and resnet networks take any C x H x W,
    the decoder emits the mixture's 10 M channels, and training, evaluation and figures run."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (45, 3, 32, 32)).float() / 255
    run = pv.train(data=(images[:40], images[40:]), likelihood="logistic-mixture", mixtures=2, arch=arch,
                   hidden=[16], latent_dim=4, epochs=1, batch_size=20, plots=False, eval_samples=2,
                   out=str(tmp_path / "run"))
    assert run.model.decoder.output_layer.out_channels == 20
    assert run.data.kind == "levels" and run.data.image_shape == (3, 32, 32)
    summary = pv.log_likelihood(run.model, run.data.test, num_samples=2).summary
    assert math.isfinite(summary["bits_per_dim"])
    pv.plot_run(run, out=str(tmp_path / "figures"))


def test_a_user_model_is_given_the_likelihood(data_dir, tmp_path):
    run = pv.train(model="support.likelihood_user_model:LikelihoodVAE", likelihood="logistic",
                   data_dir=data_dir, out=str(tmp_path / "run"),
                   **{k: v for k, v in SMALL.items() if k not in ("hidden", "latent_dim")})
    assert "test_bits_per_dim" in run.history[-1]
