"""M2 (``--model ssvae``): enumeration sums the label exactly, the auxiliary term is the
classifier's log-likelihood, the semi-supervised step compiles, and models that cannot take
labels are refused before training."""

import pyro
import pytest
import torch
from support.compiled import assert_compiled_equals_eager
from torch import nn

from pyro_vae.config import Config
from pyro_vae.core.errors import ConfigError
from pyro_vae.data.labels import one_hot
from pyro_vae.data.vaedata import LabelledSet
from pyro_vae.infer.elbos.enumerated import EnumeratedELBO
from pyro_vae.infer.elbos.semi_supervised import SemiSupervisedELBO, classifier_log_prob
from pyro_vae.infer.labels import check_labels
from pyro_vae.infer.lowering import differentiable_loss, tensor_items
from pyro_vae.models import build_model
from pyro_vae.models.priors import build_prior
from pyro_vae.models.ssvae import SemiSupervisedVAE

CLASSES, X_DIM = 4, 12


def _m2(seed=0) -> SemiSupervisedVAE:
    torch.manual_seed(seed)
    prior = build_prior(Config.from_flat().prior, 3, X_DIM)
    return SemiSupervisedVAE(X_DIM, 3, CLASSES, prior, hidden=[8]).double()


def _images(n=5, seed=1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, X_DIM), 0.4, dtype=torch.float64),
                           generator=torch.Generator().manual_seed(seed))


def _labels(n=5) -> torch.Tensor:
    return one_hot(torch.arange(n) % CLASSES, CLASSES).double()


def test_enumeration_is_the_explicit_sum_over_classes_weighted_by_q_plus_its_entropy():
    """-loss = sum_y q(y|x) [log p(x|y,z_y) + log p(z_y) + log p(y) - log q(z_y|x,y)] + H(q(y|x)),
    with z_y drawn as the guide draws them, one per class: the same noise from the same seed; and
    so is its gradient, the classifier's included (what teaches q(y | x) from unlabelled images)."""
    m2, x = _m2(), _images()
    pyro.clear_param_store()
    torch.manual_seed(7)
    with tensor_items():
        enumerated = differentiable_loss(EnumeratedELBO(), m2.model, m2.guide, x)
    params = [p for net in (m2.classifier, m2.encoder, m2.decoder) for p in net.parameters()]
    enumerated_grads = torch.autograd.grad(enumerated, params)
    every_class = one_hot(torch.arange(CLASSES), CLASSES).double().unsqueeze(1).expand(CLASSES, len(x), CLASSES)
    torch.manual_seed(7)  # the guide given each class draws z as the enumerated guide did: (C, B, L)
    guide = pyro.poutine.trace(m2.guide).get_trace(x, every_class)
    model = pyro.poutine.trace(pyro.poutine.replay(m2.model, trace=guide)).get_trace(x, every_class)
    per_class = sum(site["fn"].log_prob(site["value"]) for site in model.nodes.values()
                    if site["type"] == "sample") - guide.nodes["z"]["fn"].log_prob(guide.nodes["z"]["value"])
    q = torch.softmax(m2.classifier(x), -1)  # (B, C)
    explicit = (q * per_class.T).sum() - (q * q.log()).sum()
    torch.testing.assert_close(-enumerated, explicit, rtol=1e-10, atol=0)
    for enumerated_grad, explicit_grad in zip(enumerated_grads, torch.autograd.grad(-explicit, params)):
        assert explicit_grad.abs().max() > 0.1
        torch.testing.assert_close(enumerated_grad, explicit_grad, rtol=0, atol=1e-12)


def test_the_auxiliary_term_is_minus_a_times_the_classifiers_log_likelihood():
    m2, x, xl, yl = _m2(), _images(), _images(4, seed=2), _labels(4)
    pyro.clear_param_store()
    losses = []
    for aux in (0.0, 3.5):
        torch.manual_seed(0)
        with tensor_items():
            losses.append(SemiSupervisedELBO(EnumeratedELBO(), aux).differentiable_loss(m2.model, m2.guide, x, xl, yl))
    q = torch.log_softmax(m2.classifier(xl), -1)
    by_hand = -(q * yl).sum()
    torch.testing.assert_close(losses[1] - losses[0], 3.5 * by_hand, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(classifier_log_prob(m2.guide, xl, yl), (q * yl).sum(-1), rtol=1e-12, atol=0)


def test_the_labelled_term_observes_y_and_the_unlabelled_term_sums_it():
    m2, x, xl, yl = _m2(), _images(), _images(4, seed=2), _labels(4)
    elbo = SemiSupervisedELBO(EnumeratedELBO(), 0.0)
    torch.manual_seed(0)
    both = elbo.loss(m2.model, m2.guide, x, xl, yl)
    torch.manual_seed(0)
    parts = EnumeratedELBO().loss(m2.model, m2.guide, x) + EnumeratedELBO().loss(m2.model, m2.guide, xl, yl)
    assert both == pytest.approx(parts, rel=1e-12)
    labelled = pyro.poutine.trace(m2.guide).get_trace(xl, yl)
    assert "y" not in labelled.nodes and "z" in labelled.nodes


@pytest.mark.parametrize("objective", [EnumeratedELBO, pyro.infer.Trace_ELBO])
def test_the_semi_supervised_step_compiles_to_the_eager_loss_and_gradients(objective):
    m2 = _m2().float()
    batch = (_images().float(), _images(4, seed=2).float(), _labels(4).float())
    pyro.clear_param_store()
    assert_compiled_equals_eager(SemiSupervisedELBO(objective(), 2.0), m2.model, m2.guide, m2.parameters(), batch)


class NoLabels(nn.Module):
    """A VAE whose model and guide take x only."""

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(X_DIM, 2)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", pyro.distributions.Bernoulli(logits=z.sum(-1, keepdim=True).expand(x.shape)).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", pyro.distributions.Normal(self.net(x), 1.0).to_event(1))


class GuideAlwaysSamplesY(SemiSupervisedVAE):
    def guide(self, x, y=None):
        return super().guide(x, None)


def test_models_that_cannot_take_labels_are_refused_in_one_line():
    labelled = LabelledSet(_images(2).float(), _labels(2).float(), torch.arange(2))
    with pytest.raises(ConfigError, match="does not take labels .*model\\(x, y=None\\)"):
        check_labels(NoLabels(), labelled, "mine")
    bad = GuideAlwaysSamplesY(X_DIM, 3, CLASSES, build_prior(Config.from_flat().prior, 3, X_DIM), hidden=[8])
    with pytest.raises(ConfigError, match="given y, its guide still samples 'y'"):
        check_labels(bad, labelled, "mine")
    wrong_classes = LabelledSet(_images(2).float(), one_hot(torch.tensor([0, 1]), 6).float(), torch.arange(2))
    with pytest.raises(ConfigError, match="fails when given labels|over the 6 classes"):
        check_labels(_m2().float(), wrong_classes, "ssvae")


def test_the_registered_family_has_the_tutorials_networks():
    cfg = Config.from_flat(model="ssvae")
    m2 = build_model(cfg)
    assert cfg.model.latent_dim == [50] and cfg.model.hidden == [500] and cfg.model.activation == "softplus"
    assert [m.out_features for m in m2.classifier if isinstance(m, nn.Linear)] == [500, 10]
    assert isinstance(m2.classifier[1], nn.Softplus)
    # the tutorial's custom MLP: hidden layers N(0, 1e-3), output layers torch's default
    hidden = [m2.classifier[0], m2.encoder.body[0], m2.decoder.net[0]]
    assert all(layer.weight.std() < 2e-3 and layer.bias.abs().max() < 1e-2 for layer in hidden)
    assert m2.classifier[-1].weight.std() > 1e-2 and m2.decoder.net[-1].weight.std() > 1e-2
