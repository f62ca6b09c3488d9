"""log p(x) and AIS on CUDA (issue 24): the same estimates as on the CPU within Monte Carlo
error, the out-of-memory retry with a real CUDA out-of-memory error, PSIS overlapped with the
GPU's work, TF32 really off. Skipped without a GPU; ``pytest -m cuda`` runs only these."""

import copy
import math

import numpy as np
import pytest
import torch
from support import quiet

from pyro_vae.config import make_config
from pyro_vae.core.precision import tf32
from pyro_vae.evaluation import estimate_ais, estimate_log_likelihood, evaluate_model, evaluation_context, iwae
from pyro_vae.evaluation.annealing import AnnealingPath
from pyro_vae.evaluation.memory import power_of_two_below
from pyro_vae.evaluation.traced_ends import TracedEnds
from pyro_vae.models import build_model

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
PIXELS = 784


def models(**options):
    """The same random-weight VAE on the CPU and on CUDA."""
    torch.manual_seed(0)
    cpu = build_model(make_config({"hidden": [64], "latent_dim": 8, **options}))
    return cpu, copy.deepcopy(cpu).to(CUDA)


def images(n: int) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, PIXELS), 0.3), generator=torch.Generator().manual_seed(1))


def agree_within_monte_carlo_error(a: np.ndarray, b: np.ndarray, floor: float = 1e-3) -> None:
    """Per-image estimates from independent draws: their mean difference within 4 standard
    errors of it (``floor``: for estimates with almost no Monte Carlo noise)."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    se = diff.std(ddof=1) / math.sqrt(len(diff))
    assert abs(diff.mean()) < 4 * se + floor, (diff.mean(), se)


def test_log_likelihood_on_cuda_equals_the_cpu_one_within_monte_carlo_error():
    cpu_model, cuda_model = models()
    x = images(64)
    cpu_summary, on_cpu = evaluate_model(cpu_model, x, num_samples=500, batch_size=16, log=quiet)
    messages = []
    summary, on_cuda = evaluate_model(cuda_model, x.to(CUDA), num_samples=500, batch_size=16,
                                      log=messages.append)
    assert summary["device"].startswith("cuda") and np.isfinite(on_cuda.khat).all()
    assert any(m.startswith("memory budget: ") for m in messages)  # auto: a share of the free memory
    assert summary["max_memory"] >= cpu_summary["max_memory"] == 2**30
    agree_within_monte_carlo_error(on_cuda.log_px, on_cpu.log_px)
    agree_within_monte_carlo_error(on_cuda.elbo, on_cpu.elbo)
    assert summary["active_units"] == cpu_summary["active_units"]


def test_psis_overlapped_on_cuda_gives_the_serial_numbers():
    _, model = models()
    x = images(40).to(CUDA)
    runs = {}
    for overlap in (False, True):
        with evaluation_context(model, CUDA, seed=0):
            runs[overlap] = estimate_log_likelihood(model.model, model.guide, x, 300, batch_size=8,
                                                    log=quiet, seed=0, overlap=overlap)
    for name in ("log_px", "elbo", "khat", "ess"):
        np.testing.assert_allclose(getattr(runs[True], name), getattr(runs[False], name), rtol=1e-6)


def test_a_real_cuda_out_of_memory_error_halves_the_chunk_and_completes():
    """A chunk whose decoder output alone (chunk x images x 784 floats) is twice the GPU's memory:
    the allocator really fails, the chunk is halved until it fits, and the estimate completes."""
    _, model = models()
    x = images(4).to(CUDA)
    total = torch.cuda.get_device_properties(CUDA).total_memory
    k = 2 * power_of_two_below(2 * total / (len(x) * PIXELS * 4))
    messages = []
    with evaluation_context(model, CUDA, seed=0):
        points = estimate_log_likelihood(model.model, model.guide, x, k, batch_size=len(x), chunk_size=k,
                                         diagnostics=False, log=messages.append)
    retries = [m for m in messages if m.startswith("out of memory")]
    assert retries and retries[0] == f"out of memory: retrying with {k // 2} particles per chunk"
    assert np.isfinite(points.log_px).all() and (points.log_px >= points.elbo - 1e-3).all()


def test_the_retry_after_an_allocation_failure_gives_the_numbers_of_the_smaller_chunk(monkeypatch):
    """Chunks above 8 particles ask the allocator for 4 PiB first (a real CUDA out-of-memory
    error, raised before any particle is drawn): 32 -> 16 -> 8, then the numbers of a run with
    chunks of 8 from the start."""
    _, model = models()
    x = images(8).to(CUDA)
    real = iwae.trace_particles

    def greedy(*args, num_samples, **kwargs):
        if num_samples > 8:
            torch.empty(2**50, device=CUDA)
        return real(*args, num_samples=num_samples, **kwargs)

    def run(chunk, log):
        with evaluation_context(model, CUDA, seed=0):
            return estimate_log_likelihood(model.model, model.guide, x, 40, batch_size=8, chunk_size=chunk,
                                           log=log, seed=0)
    reference = run(8, quiet)
    monkeypatch.setattr(iwae, "trace_particles", greedy)
    messages = []
    retried = run(32, messages.append)
    assert messages == ["out of memory: retrying with 16 particles per chunk",
                        "out of memory: retrying with 8 particles per chunk"]
    np.testing.assert_allclose(retried.log_px, reference.log_px, rtol=1e-6)


def test_a_small_memory_budget_completes_in_many_chunks_within_monte_carlo_error():
    _, model = models()
    x = images(32).to(CUDA)
    _, small = evaluate_model(model, x, num_samples=400, batch_size=16, max_memory="2MiB", log=quiet)
    _, auto = evaluate_model(model, x, num_samples=400, batch_size=16, log=quiet, seed=1)
    agree_within_monte_carlo_error(small.log_px, auto.log_px)


def test_the_traced_ais_energy_on_cuda_equals_pyro_traces():
    _, model = models()
    x = images(6).to(CUDA)
    with evaluation_context(model, CUDA, seed=0):
        path = AnnealingPath(model.model, model.guide, x, 4, traced=TracedEnds.of(model, quiet))
        z = path.sample_start()
        for mine, pyros in zip(path.ends(z + 0.1), path.pyro_ends(z + 0.1)):
            torch.testing.assert_close(mine, pyros, rtol=1e-5, atol=1e-5)
        assert path.traced.problem is None


def test_ais_runs_on_cuda_and_agrees_with_the_cpu_within_its_error():
    cpu_model, cuda_model = models()
    x = images(32)
    options = dict(num_steps=50, num_chains=8, num_leapfrog=5, log=quiet)
    _, on_cpu = estimate_ais(cpu_model, x, **options)
    summary, on_cuda = estimate_ais(cuda_model, x.to(CUDA), **options)
    assert summary["device"].startswith("cuda") and np.isfinite(on_cuda.log_px).all()
    assert summary["batch_size"] == 5000 and 0.3 < summary["acceptance_rate"] <= 1
    agree_within_monte_carlo_error(on_cuda.log_px, on_cpu.log_px, floor=0.02)


def test_evaluation_on_cuda_really_runs_without_tf32():
    """With TF32 on outside, a float32 product inside an evaluation has float32's error (~1e-6
    relative), not TF32's (~1e-3)."""
    _, model = models()
    a, b = torch.randn(512, 512, device=CUDA), torch.randn(512, 512, device=CUDA)
    exact = a.double() @ b.double()

    def error():
        return float(((a @ b).double() - exact).abs().max() / exact.abs().max())
    with tf32(True):
        with evaluation_context(model, CUDA, seed=0):
            assert error() < 1e-5
