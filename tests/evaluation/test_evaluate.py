"""The importance-weighted log p(x) estimator against closed forms, and its plumbing."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from support import quiet
from support.linear_gaussian import LinearGaussianVAE
from torch import nn

from pyro_vae.config import Config, make_config
from pyro_vae.core.options import flag_style
from pyro_vae.evaluation import (
    active_units,
    estimate_log_likelihood,
    evaluate_model,
    evaluation_context,
    host_results,
    iwae,
    memory,
    memory_budget,
    parse_memory,
    particle_bytes,
    summarize,
    trust_sentence,
)
from pyro_vae.models import build_model
from pyro_vae.models.vae import VAE
from pyro_vae.nn.nets import networks
from pyro_vae.training.trainer import train

REPO = Path(__file__).resolve().parents[2]


def estimate(vae, x, k, **kwargs):
    kwargs.setdefault("batch_size", len(x))
    return estimate_log_likelihood(vae.model, vae.guide, x, k, log=quiet, **kwargs)


def exact_posterior_guide(vae):
    """q(z | x) = p(z | x) = N(S W^T (x - b) / sigma^2, S), S = (I + W^T W / sigma^2)^-1."""
    W, b, s2 = vae.decoder["W"].detach(), vae.decoder["b"].detach(), vae.sigma ** 2
    S = torch.linalg.inv(torch.eye(vae.d) + W.T @ W / s2)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.MultivariateNormal((x - b) @ W @ S / s2, covariance_matrix=S))
    return guide


def test_matches_the_closed_form_log_likelihood():
    vae = LinearGaussianVAE()
    x = vae.sample_data(20)
    exact = vae.exact_log_likelihood(x).detach().numpy()
    diff = estimate(vae, x, 2000).log_px - exact
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    assert abs(diff.mean()) < 4 * se + 0.01  # measured: -0.04 +- 0.07 nats


@pytest.mark.parametrize("k", [1, 7, 50])
def test_exact_posterior_guide_gives_the_exact_answer_for_any_k(k):
    vae = LinearGaussianVAE()
    x = vae.sample_data(10)
    points = estimate_log_likelihood(vae.model, exact_posterior_guide(vae), x, k, log=quiet)
    exact = vae.exact_log_likelihood(x).detach().numpy()
    np.testing.assert_allclose(points.log_px, exact, atol=1e-4)
    np.testing.assert_allclose(points.elbo, exact, atol=1e-4)  # the bound is tight
    if k >= 21:
        assert (points.khat == 0).all()  # equal weights: nothing heavy-tailed


def test_estimate_is_above_the_elbo_and_grows_with_k():
    """log p^(x) >= the ELBO of the same draws, always (Jensen); on average it grows with K from
    the ELBO (K = 1) towards log p(x). Single-sample log-weights are heavily skewed, so the
    means are taken over 30 seeds."""
    vae = LinearGaussianVAE()
    x = vae.sample_data(10)
    stats = {}
    for k in (1, 10, 100):
        means = []
        for seed in range(30):
            torch.manual_seed(seed)
            points = estimate(vae, x, k)
            assert (points.log_px >= points.elbo - 1e-5).all()
            means.append(points.log_px.mean())
        stats[k] = (np.mean(means), np.std(means, ddof=1) / math.sqrt(len(means)))
    (m1, s1), (m10, s10), (m100, s100) = stats[1], stats[10], stats[100]
    assert abs(m1 - vae.exact_elbo(x).item() / len(x)) < 5 * s1  # K = 1 is the ELBO
    assert m10 > m1 + 5 * math.hypot(s1, s10) and m100 > m10 + 5 * math.hypot(s10, s100)
    assert m100 < vae.exact_log_likelihood(x).mean().item() + 5 * s100  # still a lower bound


def test_chunked_and_unchunked_agree_for_the_same_draws():
    """Chunks of a draw reproduce one big draw when each chunk's element count is a multiple of
    16 (the block size of torch's CPU normal sampler): here z has 8 x 2 = 16 numbers per particle."""
    vae = LinearGaussianVAE()
    x = vae.sample_data(8)
    torch.manual_seed(0)
    whole = estimate(vae, x, 60, chunk_size=60)
    torch.manual_seed(0)
    chunked = estimate(vae, x, 60, chunk_size=7)
    np.testing.assert_allclose(chunked.log_px, whole.log_px, rtol=1e-6)
    np.testing.assert_allclose(chunked.elbo, whole.elbo, rtol=1e-6)
    np.testing.assert_allclose(chunked.khat, whole.khat, rtol=1e-6)


def test_out_of_memory_shrinks_the_chunk_and_retries(monkeypatch):
    vae = LinearGaussianVAE()
    x = vae.sample_data(8)
    real = iwae.trace_particles

    def small_memory(*args, num_samples, **kwargs):
        if num_samples > 8:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, num_samples=num_samples, **kwargs)

    torch.manual_seed(0)
    reference = estimate(vae, x, 40, chunk_size=8)
    monkeypatch.setattr(iwae, "trace_particles", small_memory)
    messages = []
    torch.manual_seed(0)
    retried = estimate_log_likelihood(vae.model, vae.guide, x, 40, batch_size=8, chunk_size=32,
                                      log=messages.append)
    assert messages == ["out of memory: retrying with 16 particles per chunk",
                        "out of memory: retrying with 8 particles per chunk"]
    np.testing.assert_allclose(retried.log_px, reference.log_px, rtol=1e-6)


def test_after_out_of_memory_the_cache_is_released_outside_the_except_block(monkeypatch):
    """The failed attempt's tensors are held by the exception's traceback while its ``except``
    block runs: the allocator's cache is emptied after it, when they are free."""
    vae = LinearGaussianVAE()
    real = iwae.trace_particles
    calls = iter([True, False, False, False])

    def fails_once(*args, **kwargs):
        if next(calls):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    handling = []
    monkeypatch.setattr(iwae, "trace_particles", fails_once)
    monkeypatch.setattr(iwae, "release_memory", lambda device: handling.append(sys.exc_info()[0]))
    points = estimate_log_likelihood(vae.model, vae.guide, vae.sample_data(4), 8, chunk_size=8, log=quiet)
    assert handling == [None] and np.isfinite(points.log_px).all()


def test_a_cuda_out_of_memory_error_is_one_to_retry():
    assert memory.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert memory.OutOfMemoryError is torch.cuda.OutOfMemoryError
    assert not memory.is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_the_auto_memory_budget(monkeypatch):
    """CPU: the 1 GiB of old (the same chunks, so the same numbers). CUDA: half of the free memory
    (what the caching allocator holds unused included), rounded down to a power of two, so that
    a little more or less free memory gives the same budget. An explicit size wins."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert memory_budget("auto", cpu) == 2**30 and memory_budget("AUTO", cpu) == 2**30
    assert memory_budget("2GiB", cuda) == 2 * 2**30 and memory_budget(12345, cuda) == 12345
    free = {"bytes": 100 * 10**9}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 141 * 10**9))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 5 * 2**30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2**30)
    messages = []
    assert memory_budget("auto", cuda, messages.append) == 32 * 2**30  # (100e9 + 4 GiB) / 2 -> 32 GiB
    assert messages and "32 GiB" in messages[0] and "max_memory sets it" in messages[0]
    free["bytes"] = 120 * 10**9
    assert memory_budget("auto", cuda) == 32 * 2**30  # the same chunks: the same numbers
    free["bytes"] = 10**6  # the cache's 4 GiB remain
    assert memory_budget("auto", cuda) == 2 * 2**30


def test_the_default_budget_on_the_cpu_gives_the_numbers_of_1_gib():
    vae = build_model(make_config({"hidden": [16], "latent_dim": 3}))
    x = torch.bernoulli(torch.full((6, 784), 0.2))
    _, auto = evaluate_model(vae, x, num_samples=30, batch_size=3, log=quiet)
    summary, one_gib = evaluate_model(vae, x, num_samples=30, batch_size=3, max_memory="1GiB", log=quiet)
    np.testing.assert_array_equal(auto.log_px, one_gib.log_px)
    assert summary["max_memory"] == 2**30


@pytest.mark.parametrize("diagnostics", [True, False])
def test_psis_overlapped_with_the_next_batch_gives_the_serial_numbers(diagnostics):
    """The CUDA way (PSIS on a worker thread, at most two batches waiting for it) forced on the
    CPU: five batches, every result the same as one batch after the other."""
    vae = build_model(make_config({"model": "hvae", "hidden": [16], "upper_hidden": [8],
                                   "latent_dim": [4, 2]}))
    x = torch.bernoulli(torch.full((10, 784), 0.2))
    runs = {}
    for overlap in (False, True):
        with evaluation_context(vae, x.device, seed=0):
            runs[overlap] = estimate_log_likelihood(vae.model, vae.guide, x, 40, batch_size=2, log=quiet,
                                                    seed=0, diagnostics=diagnostics, overlap=overlap)
    serial, overlapped = runs[False], runs[True]
    for name in ("log_px", "elbo", "khat", "ess"):
        np.testing.assert_array_equal(getattr(overlapped, name), getattr(serial, name))
    assert serial.posterior_mean.keys() == overlapped.posterior_mean.keys() == {"z1", "z2"}
    for name in serial.posterior_mean:
        np.testing.assert_array_equal(overlapped.posterior_mean[name], serial.posterior_mean[name])
    assert np.isfinite(serial.khat).all() == diagnostics


def test_an_error_in_psis_on_the_worker_thread_reaches_the_caller(monkeypatch):
    def broken(log_w):
        raise ValueError("PSIS failed")
    monkeypatch.setattr(host_results, "psis", broken)
    vae = LinearGaussianVAE()
    with pytest.raises(ValueError, match="PSIS failed"):
        estimate_log_likelihood(vae.model, vae.guide, vae.sample_data(6), 30, batch_size=2, log=quiet,
                                overlap=True)


class LaplacePrior(nn.Module):
    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def forward(self):
        return dist.Laplace(torch.zeros(self.latent_dim), self.log_scale.exp()).to_event(1)


def test_a_non_normal_prior():
    encoder, decoder = networks("mlp", (1, 28, 28), [32], 4, "relu")
    vae = VAE(encoder, decoder, LaplacePrior(4))
    x = torch.bernoulli(torch.full((6, 784), 0.15))
    summary, points = evaluate_model(vae, x, num_samples=64, batch_size=3, log=quiet)
    assert np.isfinite(points.log_px).all() and (points.log_px >= points.elbo - 1e-5).all()
    assert summary["latent_dim"] == 4 and "psis" in summary


def test_summary_fields_and_trust():
    vae = LinearGaussianVAE()
    x = vae.sample_data(40)
    summary = summarize(estimate(vae, x, 200), 200)
    assert summary["nll"] == -summary["log_likelihood"]
    assert summary["gap"] == pytest.approx(summary["log_likelihood"] - summary["elbo"])
    assert summary["gap"] > 0 and summary["stderr"] > 0
    assert summary["active_units"] <= summary["latent_dim"] == 2
    assert 0 <= summary["psis"]["share_khat_above_0.7"] <= 1
    assert "need K >= 21" in summarize(estimate(vae, x, 10), 10)["trust"]


def test_trust_sentence_names_the_shares_above_the_thresholds_and_points_to_ais():
    khat = np.array([0.3] * 50 + [0.9] * 40 + [1.8] * 10)
    sentence = trust_sentence(khat, 5000)
    assert "50.0% of the data points (10.0% above 1.5)" in sentence and "estimate_ais" in sentence
    with flag_style():  # inside a command, the flag
        assert "run evaluate.py --method ais on a few hundred images" in trust_sentence(khat, 5000)
    assert "K = 5000" in sentence
    assert "slowly" in trust_sentence(np.array([0.6] * 100), 5000)
    assert trust_sentence(np.array([0.3] * 100), 5000) is None


def test_active_units_counts_dimensions_whose_posterior_mean_varies():
    rng = np.random.default_rng(0)
    means = np.stack([rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), np.full(500, 0.3)], axis=1)
    assert active_units(means) == 1  # variances 1, 0.0025 and 0 against the threshold 0.01


def test_memory_budget():
    assert parse_memory("2GiB") == 2 * 2**30 and parse_memory("512MB") == 512 * 10**6
    assert parse_memory("1e6") == 10**6
    vae = build_model(Config.from_flat(hidden=[400, 400], latent_dim=50))
    x = torch.zeros(1, 784)
    # per particle: the decoder's 400 + 400 (relu) + 400 + 400 (relu) + 784 outputs; the encoder
    # of x runs once for both probe particles (half of 400 + 400 + 400 + 400 + 100); three floats
    # per value of z in the guide and the model and of x; x2 for temporaries, 4 bytes each
    assert particle_bytes(vae, x) == 2 * 4 * (2384 + 1700 // 2 + 3 * (50 + 50 + 784))
    # a flow prior's networks and a mixture prior's components cost memory per particle too
    flow = build_model(make_config({"hidden": [400, 400], "latent_dim": 50, "prior": "flow"}))
    mog = build_model(make_config({"hidden": [400, 400], "latent_dim": 50, "prior": "mog"}))
    assert particle_bytes(flow, x) > particle_bytes(vae, x) + 2 * 4 * 4 * 64
    assert particle_bytes(mog, x) == particle_bytes(vae, x) + 2 * 4 * 3 * 9 * 50


def test_a_chunk_of_impossible_samples_does_not_poison_the_rest(monkeypatch):
    """A chunk whose log-weights are all -inf (samples outside the prior's support) must not
    turn the streaming logsumexp into NaN."""
    chunks = iter([torch.full((2, 3), -math.inf), torch.tensor([[-1.0, -2.0, -math.inf], [-3.0, -2.0, -math.inf]])])
    no_latents = SimpleNamespace(guide=SimpleNamespace(nodes={}))
    monkeypatch.setattr(iwae, "trace_particles", lambda *a, num_samples, **k: no_latents)
    monkeypatch.setattr(iwae, "log_weights", lambda traces: next(chunks))
    sampler = iwae.ChunkedLogWeights(None, None, chunk_size=2, log=quiet)
    _, log_px, _, _ = sampler(torch.zeros(3, 4), num_samples=4)
    everything = torch.tensor([[-math.inf] * 3, [-math.inf] * 3, [-1.0, -2.0, -math.inf], [-3.0, -2.0, -math.inf]])
    torch.testing.assert_close(log_px, torch.logsumexp(everything, 0) - math.log(4))
    assert log_px[2] == -math.inf


def test_evaluate_script_refuses_a_malformed_memory_budget(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), str(tmp_path),
                             "--max-memory", "lots"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "'lots' is not a size" in result.stderr


def test_evaluate_script_and_eval_samples(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    train({"data_dir": data_dir, "limit_train": 256, "limit_test": 40, "batch_size": 32,
           "hidden": [32], "latent_dim": 4, "epochs": 1, "eval_samples": 30, "out": str(run_dir)},
          log=quiet, progress=False)
    during = json.loads((run_dir / "eval.json").read_text())
    assert during["num_samples"] == 30 and during["num_points"] == 40 and during["split"] == "test"

    result = subprocess.run([sys.executable, str(REPO / "scripts" / "evaluate.py"), str(run_dir),
                             "--num-samples", "50", "--limit", "20", "--batch-size", "8",
                             "--data-dir", data_dir], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "log p(x) = " in result.stdout and "PSIS k-hat" in result.stdout
    summary = json.loads((run_dir / "eval.json").read_text())
    for key in ("log_likelihood", "stderr", "nll", "elbo", "gap", "active_units", "psis", "trust",
                "num_samples", "split", "num_points", "device", "seconds"):
        assert key in summary
    assert summary["num_points"] == 20 and summary["log_likelihood"] >= summary["elbo"]
    points = np.load(run_dir / "eval_points.npz")
    assert {k: points[k].shape for k in points.files} == {**{k: (20,) for k in ("log_px", "elbo", "khat", "ess")},
                                                          "result_id": ()}
    assert str(points["result_id"]) == summary["result_id"]  # the pair is one evaluation's
    assert points["log_px"].mean() == pytest.approx(summary["log_likelihood"])


def test_the_prior_is_built_once_per_evaluation_with_the_same_result():
    cfg = make_config({"hidden": [16], "latent_dim": 3, "prior": "vamp", "prior_components": 5})
    vae = build_model(cfg, train_data=torch.rand(20, 784))
    x = torch.bernoulli(torch.full((4, 784), 0.2))
    calls = []
    vae.prior.register_forward_hook(lambda *_: calls.append(1))
    model_calls = []
    model = vae.model
    vae.model = lambda *a: (model_calls.append(1), model(*a))[1]
    evaluate_model(vae, x, num_samples=40, batch_size=2, max_memory=2 * 10**5, log=quiet)
    del vae.model
    assert len(model_calls) >= 8  # many chunks of particles...
    assert len(calls) == 2  # ...but the prior is built once by the memory probe, then once
    torch.manual_seed(0)
    uncached = estimate_log_likelihood(vae.model, vae.guide, x, 40, batch_size=2, log=quiet)
    with vae.fixed_prior():
        torch.manual_seed(0)
        fixed = estimate_log_likelihood(vae.model, vae.guide, x, 40, batch_size=2, log=quiet)
    np.testing.assert_allclose(fixed.log_px, uncached.log_px, rtol=1e-5)


def test_progress_lines_without_a_progress_bar():
    vae = LinearGaussianVAE()
    messages = []
    estimate_log_likelihood(vae.model, vae.guide, vae.sample_data(40), 5, batch_size=2, log=messages.append)
    assert messages == [f"log p(x): {n} of 40 images done" for n in range(4, 40, 4)]


def test_psis_reads_the_tail_of_the_weights_with_either_arviz_line():
    """k-hat is the tail index of the importance weights: for log-weights ~ Gumbel(0, 1) the
    weights are Frechet with shape 1, so k = 1; for narrow normal log-weights it is near 0.
    ArviZ 1.x's psislw takes a log-likelihood (the sign flipped): un-negated it gave k-hat -0.03
    for the Gumbel rows. The smoothed weights are normalized in both lines."""
    from pyro_vae.evaluation.psis import _arviz_psislw, psis
    rng = np.random.default_rng(0)
    log_w = np.concatenate([rng.normal(0, 0.5, (3, 5000)), rng.gumbel(0, 1, (3, 5000))]) - 80
    khat, ess = psis(log_w)
    assert (khat[:3] < 0.3).all() and (np.abs(khat[3:] - 1) < 0.3).all(), khat
    assert (ess[:3] > 3000).all() and (ess[3:] < 500).all(), ess
    smoothed, _ = _arviz_psislw(log_w)
    np.testing.assert_allclose(np.exp(smoothed).sum(-1), 1.0, rtol=1e-9)


def _psis_in_a_fresh_process(tmp_path, code: str) -> str:
    """stderr of ``code`` run in a new Python with every warning shown and an empty cache
    directory (ArviZ 0.x warns about its refactor once a day, stamped there)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_psis_does_not_print_arvizs_refactor_notice_but_other_warnings_pass(tmp_path):
    import arviz

    if "ArviZ is undergoing a major refactor" not in _psis_in_a_fresh_process(tmp_path / "a", "import arviz"):
        pytest.skip(f"ArviZ {arviz.__version__} prints no refactor notice (the later 0.x versions do)")
    stderr = _psis_in_a_fresh_process(tmp_path / "b", (
        "import warnings, numpy as np\n"
        "from pyro_vae.evaluation.psis import psis\n"
        "psis(np.random.default_rng(0).standard_normal((2, 200)))\n"
        "warnings.warn('a user warning', FutureWarning)\n"))
    assert "ArviZ is undergoing" not in stderr and "a user warning" in stderr
