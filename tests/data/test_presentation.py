"""How values reach the likelihood (pyro_vae.data.presentation): MNIST's 8-bit levels binarized
(afresh or fixed), kept, or dequantized; every mismatched pair refused in one line, with the config
and at loading; presenting twice changes nothing."""

import pytest
import torch

from pyro_vae.config import make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.data import VAEData, binarize_fixed, load_dataset, present
from pyro_vae.models.model_data import load_model_data


def _config(**values):
    return make_config({"limit_train": 200, "limit_test": 100, **values})


def test_grey_levels_for_a_bernoulli_are_binarized_as_before(data_dir):
    """The default (binarize dynamic) is what MNIST runs always had: the test split binarized once
    with the fixed seed, the training images afresh per batch."""
    raw = load_dataset("mnist", data_dir, limit_train=200, limit_test=100, binarize="none")
    assert raw.kind == "levels" and len(raw.test.unique()) > 2
    data = load_model_data(_config(data_dir=data_dir))
    assert data.kind == "binary" and data.dynamic_binarization
    assert torch.equal(data.test, binarize_fixed(load_dataset("mnist", data_dir, binarize="none").test)[:100])
    fixed = load_model_data(_config(data_dir=data_dir, binarize="fixed"))
    assert not fixed.dynamic_binarization and set(fixed.train.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(fixed.train_batch(torch.arange(10)), fixed.train_batch(torch.arange(10)))
    assert torch.equal(fixed.test, data.test)


def test_levels_stay_levels_and_densities_see_them_dequantized(data_dir):
    levels = load_model_data(_config(data_dir=data_dir, likelihood="logistic"))
    assert levels.kind == "levels" and not levels.dequantized
    k = torch.round(levels.test * 255)
    assert torch.equal(levels.test, k / 255) and torch.equal(levels.train_batch(torch.arange(5)), levels.train[:5])
    dense = load_model_data(_config(data_dir=data_dir, likelihood="gaussian"))
    assert dense.kind == "continuous" and dense.dequantized
    assert ((dense.test >= k / 256) & (dense.test < (k + 1) / 256)).all()  # each value in its level's cell
    assert torch.equal(dense.test, load_model_data(_config(data_dir=data_dir, likelihood="gaussian")).test)
    a, b = dense.train_batch(torch.arange(5)), dense.train_batch(torch.arange(5))
    train_k = torch.round(dense.train[:5] * 255)
    assert not torch.equal(a, b) and ((a >= train_k / 256) & (a < (train_k + 1) / 256)).all()
    assert present(dense, None, "continuous") is dense  # presented once only


@pytest.mark.parametrize("values, phrase", [
    ({"likelihood": "logistic", "binarize": "dynamic"}, "binarize='dynamic' makes mnist's pixels binary; use binarize='none'"),
    ({"binarize": "none"}, "a Bernoulli of grey levels is not a likelihood; use binarize='dynamic'"),
    ({"likelihood": "gaussian", "dataset": "binarized-mnist"}, "binarized-mnist holds binary pixels; use likelihood='bernoulli'"),
    ({"likelihood": "logistic-mixture", "binarize": "fixed"}, "makes mnist's pixels binary"),
])
def test_mismatched_pairs_are_refused_with_the_config(values, phrase):
    with pytest.raises(ConfigError) as error:
        make_config(values)
    assert phrase in str(error.value) and "\n" not in str(error.value)


def test_data_given_in_python_are_checked_when_presented():
    """Tensors have no registered kind: their values decide, when the trainer presents them."""
    grey = torch.randint(0, 256, (4, 6)).float() / 255
    data = VAEData("mine", grey, grey, kind="levels")
    with pytest.raises(ConfigError, match="a Bernoulli of grey levels is not a likelihood"):
        present(data, "none", "binary", "likelihood='bernoulli'")
    assert present(data, "none", "levels").test is grey
    noisy = VAEData("mine", grey + 1e-3, grey + 1e-3, kind="continuous")
    with pytest.raises(ConfigError, match="not 8-bit levels"):
        present(noisy, "none", "levels", "likelihood='logistic'")
    assert present(noisy, "none", "continuous").train is noisy.train  # a density of them, as they are


def test_streamed_training_images_give_the_same_epoch(data_dir, caplog):
    """stream always keeps the training split in host memory and feeds the steps from DataLoader
    batches: the same images in the same order as the in-memory path, so the same weights."""
    import pyro_vae as pv

    caplog.set_level("INFO", logger="pyro_vae")
    runs = {}
    for stream in ("never", "always"):
        runs[stream] = pv.train(data_dir=data_dir, hidden=[16], latent_dim=2, epochs=2, batch_size=50, limit_train=300,
                                limit_test=50, plots=False, compile=False, stream=stream, seed=3, eval_samples=2)
    assert caplog.text.count("training images streamed from host memory") == 1  # the choice is reported
    for (name, a), b in zip(runs["never"].model.state_dict().items(), runs["always"].model.state_dict().values()):
        assert torch.equal(a, b), name
    assert runs["never"].history[-1]["test_elbo"] == runs["always"].history[-1]["test_elbo"]
