"""Every objective against the closed form of a two-layer linear-Gaussian VAE with a hierarchical
guide q(z1 | x) q(z2 | z1): the case where a gradient reaches the guide's parameters through two
chained samples, and where the path-derivative estimators (STL, DReG) must stop the guide's
parameters in log q without cutting q(z2 | z1)'s dependence on the sampled z1.

As in test_estimators.py, a mean is declared equal to its target when every element lies within
Z_MAX = 5 standard errors of R independent draws (the seeds are fixed, so the outcome is
reproducible). The closed forms themselves are checked first, against Monte Carlo and against a
second derivation.

The rows of a minibatch are independent given the parameters (their own particles, their own
terms of the loss), so a call on x repeated ``copies`` times returns the sum of ``copies``
independent draws of the estimator on x: dividing by ``copies`` gives one draw of their mean. The
tests take R >= 80 such grouped draws: P(|t_79| > 5) = 3e-6, so a true statement about 33
gradient elements fails with probability ~1e-4; the same z-test at a fraction of the calls.
"""

import math

import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceGraph_ELBO
from pyro.poutine.messenger import Messenger
from support.two_layer_gaussian import TwoLayerGaussianVAE
from test_estimators import Z_MAX, draw_gradients, dreg_reference_gradients, exact_gradient, z_scores
from torch.distributions import MultivariateNormal, kl_divergence

from pyro_vae.evaluation import estimate_log_likelihood
from pyro_vae.infer.elbos import IWAE_ELBO, STL_ELBO, DReG_ELBO, RenyiBound
from pyro_vae.infer.importance import trace_particles

LATENTS = ("z1", "z2")


def trace_log_weights(traces):
    """``(K, B)`` log p(x, z) - log q(z | x) read off Pyro's traces (the model's and guide's own
    log_prob, independent of the closed forms)."""
    def log_density(trace):
        return sum(site["fn"].log_prob(site["value"]) for name, site in trace.nodes.items()
                   if site["type"] == "sample" and name in LATENTS + ("x",))
    return log_density(traces.model) - log_density(traces.guide)


def chi_square(vae, x):
    """Per row, E_q[(w / p(x))^2] - 1 = E_q[(p(z | x) / q(z | x))^2] - 1 in closed form: the
    relative variance of the importance weights, which sets the error of a K-sample log p(x)
    estimate (delta method: bias ~ -v / 2K, standard deviation ~ sqrt(v / K))."""
    with torch.no_grad():
        mq, Sq = vae.guide_joint(x)
        mp, Sp = vae.posterior(x)
        Pq, Pp = torch.linalg.inv(Sq), torch.linalg.inv(Sp)
        Lam = 2 * Pp - Pq  # the precision of p^2 / q; it must be positive definite
        assert torch.linalg.eigvalsh(Lam).min() > 0, "the weights' variance is infinite"
        eta = 2 * mp @ Pp - mq @ Pq
        log_integral = (-torch.logdet(2 * math.pi * Sp) + 0.5 * torch.logdet(2 * math.pi * Sq)
                        - (mp @ Pp * mp).sum(-1) + 0.5 * (mq @ Pq * mq).sum(-1)
                        + 0.5 * (eta @ torch.linalg.inv(Lam) * eta).sum(-1)
                        + 0.5 * torch.logdet(2 * math.pi * torch.linalg.inv(Lam)))
        return log_integral.exp() - 1


def test_exact_elbo_matches_monte_carlo_and_the_posterior_kl():
    """exact_elbo against (1) a 20000-draw average of Pyro's own log-weights, within 5 SE, and
    (2) log p(x) - KL(q || p(z | x)) with the posterior from the joint Gaussian, to rounding."""
    vae = TwoLayerGaussianVAE()
    x = vae.sample_data(4)
    exact = vae.exact_elbo(x).item()
    with torch.no_grad():
        traces = trace_particles(vae.model, vae.guide, x, num_samples=20000)
        log_w = trace_log_weights(traces)  # (K, B)
        z1, z2 = (traces.guide.nodes[n]["value"] for n in LATENTS)
        # the closed-form densities the DReG/STL references use are Pyro's own
        torch.testing.assert_close(vae.log_joint(x, z1, z2) - vae.log_guide(x, z1, z2), log_w)
    per_draw = log_w.sum(1)
    se = per_draw.std().item() / math.sqrt(len(per_draw))
    assert abs(per_draw.mean().item() - exact) < Z_MAX * se, (per_draw.mean().item(), exact, se)
    mq, Sq = vae.guide_joint(x)
    mp, Sp = vae.posterior(x)
    kl = kl_divergence(MultivariateNormal(mq, Sq), MultivariateNormal(mp, Sp))
    assert kl.min() > 0.1  # the guide is away from the posterior: the ELBO has a real gap
    assert exact == pytest.approx((vae.exact_log_likelihood(x) - kl).sum().item(), abs=1e-3)


def test_exact_log_likelihood_matches_importance_sampling():
    """exact_log_likelihood against (1) log p(x, z) - log p(z | x) at a z where both are known
    (the posterior from the joint Gaussian of (z1, z2, x)), to rounding, and (2) a 200000-sample
    importance estimate from the guide, within 5 of its standard deviations sqrt(v / K) plus its
    bias v / 2K, v the weights' relative variance in closed form."""
    vae = TwoLayerGaussianVAE()
    x = vae.sample_data(4)
    exact = vae.exact_log_likelihood(x).detach()
    with torch.no_grad():
        mp, Sp = vae.posterior(x)
        z1, z2 = mp[:, :vae.d1], mp[:, vae.d1:]
        log_post = MultivariateNormal(mp, Sp).log_prob(mp)
        torch.testing.assert_close(vae.log_joint(x, z1, z2) - log_post, exact)
        K = 200_000
        log_w = trace_log_weights(trace_particles(vae.model, vae.guide, x, num_samples=K))
        estimate = torch.logsumexp(log_w, 0) - math.log(K)
    v = chi_square(vae, x)
    tolerance = Z_MAX * (v / K).sqrt() + v / (2 * K)
    assert ((estimate - exact).abs() < tolerance).all(), (estimate - exact, tolerance)


def grouped_gradients(vae, elbo, x, repeats, copies):
    """``(repeats, P)`` gradients, each the mean of ``copies`` independent draws (see above)."""
    return draw_gradients(vae, elbo, x.repeat(copies, 1), repeats) / copies


def grouped_bounds(elbo, vae, x, repeats, copies):
    """``(repeats,)`` values of the bound summed over the rows of x, each the mean of ``copies``
    independent draws."""
    x = x.repeat(copies, 1)
    return torch.tensor([-elbo.loss(vae.model, vae.guide, x) / copies for _ in range(repeats)])


def mean_and_se(values):
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


ESTIMATORS = {  # name: (VAE options, objective, repeats, copies)
    "reparam/trace": ({}, lambda: Trace_ELBO(num_particles=10, vectorize_particles=True), 80, 3),
    "reparam/stl": ({}, lambda: STL_ELBO(num_particles=10), 80, 3),
    "reparam/renyi-alpha1": ({}, lambda: RenyiBound(alpha=1.0, num_particles=10), 80, 3),
    "score/trace": ({"estimator": "score"},
                    lambda: Trace_ELBO(num_particles=20, vectorize_particles=True), 80, 5),
    "score/tracegraph": ({"estimator": "score"},
                         lambda: TraceGraph_ELBO(num_particles=20, vectorize_particles=True), 80, 5),
    "score/tracegraph+avg": ({"estimator": "score", "baseline": "avg"},
                             lambda: TraceGraph_ELBO(num_particles=20, vectorize_particles=True), 80, 5),
    "score/tracegraph+nn": ({"estimator": "score", "baseline": "nn"}, lambda: TraceGraph_ELBO(), 80, 10),
}


@pytest.mark.parametrize("name", ESTIMATORS)
def test_gradient_is_unbiased(name):
    """The mean of R gradient draws equals the exact ELBO gradient (encoder and decoder), within
    5 SE elementwise; Renyi's bound at alpha = 1 is the ELBO, so its gradient too."""
    options, make_elbo, repeats, copies = ESTIMATORS[name]
    vae = TwoLayerGaussianVAE(**options)
    x = vae.sample_data(4)
    exact = exact_gradient(vae, x)
    assert exact.abs().min() > 1e-2  # every element carries signal
    grads = grouped_gradients(vae, make_elbo(), x, repeats, copies)
    z = z_scores(grads, exact)
    assert z.abs().max() < Z_MAX, (name, z)


def test_iwae_and_dreg_gradients_agree_in_expectation():
    """DReG estimates the IWAE gradient: the two means agree within 5 SE of their difference, and
    DReG's guide gradient has the lower total variance."""
    vae = TwoLayerGaussianVAE()
    x = vae.sample_data(4)
    iwae = grouped_gradients(vae, IWAE_ELBO(num_particles=5), x, 80, 8)
    dreg = grouped_gradients(vae, DReG_ELBO(num_particles=5), x, 80, 8)
    se = torch.sqrt(iwae.var(0) / len(iwae) + dreg.var(0) / len(dreg))
    assert ((iwae.mean(0) - dreg.mean(0)) / se).abs().max() < Z_MAX
    n_enc = sum(p.numel() for p in vae.encoder.values())
    assert dreg[:, :n_enc].var(0).sum() < iwae[:, :n_enc].var(0).sum()


def test_renyi_bound_at_alpha_one_is_the_elbo():
    """Renyi's bound averages to the exact ELBO at alpha = 1 (within 5 SE), and at alpha = 0.5 lies
    strictly between alpha = 1 and alpha = 0 (IWAE): the means ordered by more than 3 SE."""
    vae = TwoLayerGaussianVAE()
    x = vae.sample_data(4)
    elbo = vae.exact_elbo(x).item()
    stats = {alpha: mean_and_se(grouped_bounds(RenyiBound(alpha=alpha, num_particles=5), vae, x, 80, 5))
             for alpha in (0.0, 0.5, 1.0)}
    mean1, se1 = stats[1.0]
    assert abs(mean1 - elbo) < Z_MAX * se1, (mean1, elbo, se1)
    for lo, hi in ((1.0, 0.5), (0.5, 0.0)):
        (m_lo, s_lo), (m_hi, s_hi) = stats[lo], stats[hi]
        assert m_hi > m_lo + 3 * math.hypot(s_lo, s_hi), stats


def test_iwae_bound_lies_between_elbo_and_log_likelihood_and_grows_with_k():
    """E[IWAE_k]: equal to the ELBO at k = 1, non-decreasing in k, strictly tighter by k = 50, and
    still below log p(x) (all within 5 SE)."""
    vae = TwoLayerGaussianVAE()
    x = vae.sample_data(4)
    elbo = vae.exact_elbo(x).item()
    log_px = vae.exact_log_likelihood(x).sum().item()
    means, ses = zip(*(mean_and_se(grouped_bounds(IWAE_ELBO(num_particles=k), vae, x, 80, 5))
                       for k in (1, 5, 50)))
    assert abs(means[0] - elbo) < Z_MAX * ses[0], (means[0], elbo, ses[0])  # K = 1 is the ELBO
    for (m0, s0), (m1, s1) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert m1 > m0 - Z_MAX * math.hypot(s0, s1), (means, ses)  # non-decreasing in K
    assert means[-1] > elbo + 10 * ses[-1]  # strictly tighter by K = 50
    for m, s in zip(means, ses):
        assert elbo - Z_MAX * s < m < log_px + Z_MAX * s, (means, ses, elbo, log_px)


def test_log_likelihood_estimate_converges_to_the_exact_value():
    """estimate_log_likelihood's per-row log p^(x) at K = 5000 is within 5 standard deviations
    sqrt(v / K) plus the bias v / 2K of log p(x) (v: the weights' relative variance in closed form,
    2.5 to 14 here: 0.11 to 0.27 nats), and its total error is smaller than at K = 5."""
    vae = TwoLayerGaussianVAE()
    x = vae.sample_data(4)
    exact = vae.exact_log_likelihood(x).detach().numpy()
    v = chi_square(vae, x).numpy()
    errors = {}
    for K in (5, 5000):
        torch.manual_seed(K)
        result = estimate_log_likelihood(vae.model, vae.guide, x, num_samples=K, batch_size=len(x),
                                         diagnostics=False)
        errors[K] = result.log_px - exact
    tolerance = Z_MAX * (v / 5000) ** 0.5 + v / (2 * 5000)
    assert (abs(errors[5000]) < tolerance).all(), (errors[5000], tolerance)
    assert abs(errors[5000]).sum() < abs(errors[5]).sum(), errors


def exact_posterior_vae():
    vae = TwoLayerGaussianVAE()
    vae.set_exact_posterior()
    x = vae.sample_data(4)
    mq, Sq = vae.guide_joint(x)
    mp, Sp = vae.posterior(x)
    torch.testing.assert_close(mq, mp)
    torch.testing.assert_close(Sq, Sp)  # q(z1 | x) q(z2 | z1) is p(z1, z2 | x)
    return vae, x


def test_stl_gradient_vanishes_at_the_exact_posterior():
    """With q the exact posterior (the decoder restructured by set_exact_posterior), log w is
    constant in (z1, z2), so STL's guide gradient is zero on every draw; Trace_ELBO's is zero only
    on average (its score term d log q / d phi is not)."""
    vae, x = exact_posterior_vae()
    n_enc = sum(p.numel() for p in vae.encoder.values())
    trace = draw_gradients(vae, Trace_ELBO(), x, 20)[:, :n_enc]
    assert trace.abs().max() > 0.1
    stl = draw_gradients(vae, STL_ELBO(), x, 20)[:, :n_enc]
    assert stl.abs().max() < 1e-5


def test_iwae_bound_is_exact_at_the_exact_posterior():
    """With q the exact posterior every log-weight equals log p(x), so the IWAE bound is log p(x)
    for every k, not only in expectation."""
    vae, x = exact_posterior_vae()
    log_px = vae.exact_log_likelihood(x).detach()
    with torch.no_grad():
        log_w = trace_log_weights(trace_particles(vae.model, vae.guide, x, num_samples=50))
    torch.testing.assert_close(log_w, log_px.expand_as(log_w), atol=1e-4, rtol=0)
    for k in (1, 5, 50):
        bound = -IWAE_ELBO(num_particles=k).loss(vae.model, vae.guide, x)
        assert bound == pytest.approx(log_px.sum().item(), abs=1e-3), k


class FirstSamples(Messenger):
    """Records the first value drawn at each latent site (the guide's: it runs before the model is
    replayed), to check that two calls with one seed drew the same particles."""

    def __init__(self):
        super().__init__()
        self.values = {}

    def _pyro_post_sample(self, msg):
        if msg["name"] in LATENTS and msg["name"] not in self.values:
            self.values[msg["name"]] = msg["value"].detach().clone()


def path_log_weights(vae, x, num_samples, seed):
    """``(K, B)`` log w = log p(x, z1, z2) - log q(z1, z2 | x), the samples drawn with ``seed`` by
    the guide (differentiable in the encoder through the reparameterization, z2 also through z1),
    log q evaluated by the closed form at DETACHED encoder parameters but at the sampled z1, so
    that q(z2 | z1) keeps its dependence on z1: the path derivative, written out by hand."""
    torch.manual_seed(seed)
    traces = trace_particles(vae.model, vae.guide, x, num_samples=num_samples)
    z1, z2 = (traces.guide.nodes[n]["value"] for n in LATENTS)
    assert z1.shape == (num_samples, len(x), vae.d1) and z1.requires_grad
    stopped = {k: v.detach() for k, v in vae.encoder.items()}
    log_w = vae.log_joint(x, z1, z2) - vae.log_guide(x, z1, z2, encoder=stopped)
    return log_w, {"z1": z1, "z2": z2}


def run_recording(elbo, vae, x, seed):
    """The objective's loss and gradients (encoder, decoder) with ``seed``, and its draws."""
    for p in vae.parameters():
        p.grad = None
    torch.manual_seed(seed)
    with FirstSamples() as recorder:
        loss = elbo.loss_and_grads(vae.model, vae.guide, x)
    return loss, [p.grad.clone() for p in vae.gradient_params()], recorder.values


def same_draws(objective, vae, x):
    """The objective's loss and gradients, and the reference path log-weights and the latent
    values they were computed at (same seed), after checking that both drew the same z1 and z2."""
    loss, grads, drawn = run_recording(objective, vae, x, seed=0)
    log_w, live = path_log_weights(vae, x, objective.num_particles, seed=0)
    for name in LATENTS:
        # (Pyro's ELBO adds a plate level for vectorized particles: the objective's particle dim
        # may sit one further left, past a singleton)
        assert torch.equal(drawn[name].reshape(live[name].shape), live[name].detach()), name
    return loss, grads, log_w, live


def test_dreg_gradients_are_exactly_the_doubly_reparameterized_ones():
    """Same draws (same seed): DReG's encoder gradient is that of -sum stop(w~^2) log w and its
    decoder gradient that of -sum stop(w~) log w, log q at stopped parameters but a function of
    the sampled z1 in q(z2 | z1); its loss is the IWAE bound of those log-weights."""
    vae = TwoLayerGaussianVAE()
    loss, dreg, log_w, _ = same_draws(DReG_ELBO(num_particles=6), vae, vae.sample_data(4))
    assert loss == pytest.approx(-(torch.logsumexp(log_w, 0) - math.log(6)).sum().item(), rel=1e-5)
    w, expected = dreg_reference_gradients(vae, log_w)
    assert w.max(0).values.min() < 0.9  # not one-hot: w~ and w~^2 differ here
    for got, want in zip(dreg, expected):
        torch.testing.assert_close(got, want)


def test_stl_gradients_are_exactly_the_path_derivative():
    """Same draws (same seed): STL's gradient is that of -mean_k log w, log q at stopped
    parameters but a function of the sampled z1 in q(z2 | z1) (the decoder's is the plain ELBO's)."""
    vae = TwoLayerGaussianVAE()
    x = vae.sample_data(4)
    loss, stl, log_w, live = same_draws(STL_ELBO(num_particles=6), vae, x)
    assert loss == pytest.approx(-log_w.mean(0).sum().item(), rel=1e-5)
    expected = torch.autograd.grad(-log_w.mean(0).sum(), vae.gradient_params(), retain_graph=True)
    for got, want in zip(stl, expected):
        torch.testing.assert_close(got, want)
    # the reference is discriminating: detaching q(z2 | z1)'s whole location, z1 included (what
    # rebuilding each guide site's distribution from detached parameters does), changes it
    z1, z2 = live["z1"], live["z2"]
    p = {k: v.detach() for k, v in vae.encoder.items()}
    cut_log_q = (dist.Normal(x @ p["A"].T + p["a"], p["log_s1"].exp()).log_prob(z1).sum(-1)
                 + dist.Normal(z1.detach() @ p["C"].T + p["e"], p["log_s2"].exp()).log_prob(z2).sum(-1))
    cut_log_w = vae.log_joint(x, z1, z2) - cut_log_q
    cut = torch.autograd.grad(-cut_log_w.mean(0).sum(), list(vae.encoder.values()))
    assert max((c - e).abs().max() for c, e in zip(cut, expected)) > 1e-2
