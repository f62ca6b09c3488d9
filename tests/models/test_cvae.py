"""The conditional VAE (``--model cvae``): Pyro's quadrant masks, a likelihood of the target
pixels only (so log p(x) is log p(target | given)), and a run that trains, resumes exactly,
evaluates and draws its completions."""

import json

import pyro
import pytest
import torch
from support import assert_one_line_error, quiet, run_script

from pyro_vae.models.cvae import ConditionalVAE, given_mask
from pyro_vae.training.trainer import train


def _pyro_example_input_mask(quadrants: int) -> torch.Tensor:
    """Pyro's examples/cvae/mnist.py MaskImages: where ``input`` keeps the image's pixels."""
    out = torch.zeros(28, 28)
    out[14:, :14] = -1
    if quadrants == 2:
        out[:, :14] = -1
    if quadrants == 3:
        out[:14, :] = -1
    return (out == -1).float().flatten()


@pytest.mark.parametrize("quadrants", [1, 2, 3])
def test_the_given_pixels_are_those_of_pyros_example(quadrants):
    mask = given_mask((1, 28, 28), quadrants)
    assert torch.equal(mask, _pyro_example_input_mask(quadrants))
    assert mask.sum() == 196 * quadrants


def test_the_likelihood_scores_the_target_pixels_only_and_the_prior_reads_the_given_ones():
    torch.manual_seed(0)
    model = ConditionalVAE(784, 3, given_mask((1, 28, 28), 1), hidden=[8, 8])
    x = torch.bernoulli(torch.full((2, 784), 0.3))
    trace = pyro.poutine.trace(model.model).get_trace(x)
    site, z = trace.nodes["x"], trace.nodes["z"]["value"]
    logits = model.decoder(z)
    by_hand = torch.distributions.Bernoulli(logits=logits).log_prob(x) * model.target_mask
    torch.testing.assert_close(site["fn"].log_prob(x), by_hand.sum(-1))
    changed = x.clone()
    changed[:, model.target_mask.bool()] = 1 - changed[:, model.target_mask.bool()]
    loc, _ = model.prior_net(model.givens(x))
    torch.testing.assert_close(model.prior_net(model.givens(changed))[0], loc)  # targets unseen
    assert set(model.givens(x)[:, model.target_mask.bool()].unique().tolist()) == {-1.0}


SMALL = {"model": "cvae", "limit_train": 200, "limit_test": 40, "batch_size": 50, "hidden": [32, 32],
         "latent_dim": 4, "device": "cpu", "eval_samples": 30}


def test_a_cvae_run_trains_resumes_exactly_evaluates_and_draws(data_dir, tmp_path):
    straight = train({"data_dir": data_dir, **SMALL, "epochs": 2, "out": str(tmp_path / "a"), "plots": True},
                     log=quiet, progress=False)
    train({"data_dir": data_dir, **SMALL, "epochs": 1, "plots": False, "eval_samples": None,
           "out": str(tmp_path / "b")}, log=quiet, progress=False)
    resumed = train({"resume": str(tmp_path / "b"), "epochs": 2}, log=quiet, progress=False)
    assert [r["test_elbo"] for r in resumed.history] == [r["test_elbo"] for r in straight.history]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    result = json.loads((tmp_path / "a" / "eval.json").read_text())
    assert result["conditional"] == 784 - 196 and result["log_likelihood"] < 0
    assert (tmp_path / "a" / "figures" / "completions.png").stat().st_size > 0


def test_quadrants_for_another_model_is_refused_in_one_line(capsys, data_dir, tmp_path):
    status, err = run_script(capsys, "svi_train", "--data-dir", data_dir, "--quadrants", 2, "--epochs", 1,
                             "--out", tmp_path / "r")
    assert_one_line_error(status, err, "--quadrants is read by --model cvae only")
