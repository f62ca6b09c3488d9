"""Priors over the latent code: modules whose ``forward()`` returns a Pyro distribution over z.

The interface, for the shipped priors and for users' own (``--prior my_pkg.my_mod:MyPrior``):

- The class is an ``nn.Module`` constructed as ``Class(latent_dim=D, **options)``, where the
  options are the config's ``prior_options`` mapping (plus, for shipped priors, their own keys).
- ``forward()`` takes no arguments and returns a distribution with ``event_shape == (D,)`` and
  ``batch_shape == ()``. The model's data plate broadcasts it over the minibatch and over
  vectorized particles, so ``log_prob`` must accept any leading batch dimensions.
- Learnable parameters are ordinary ``nn.Parameter``s or submodules: the model registers the prior
  with ``pyro.module("prior", ...)``, and the optimizer and checkpoints see them like any other.
- A prior that needs the model itself (VampPrior uses its ``encode_top``) or training data (to
  initialise) may define ``bind(model, train_data)``; it is called once, after the model is built.
- The prior is over the top latent layer: ``latent_dim`` is the last of the config's latent sizes.

A prior can also be registered under a name, as the shipped ones are (:func:`register_prior`):
then ``--prior NAME`` builds it through ``builder(prior, latent_dim, x_dim)``, where ``prior`` is
the config's prior section (:class:`~pyro_vae.config.PriorSection`), with no import path to
trust. A builder declares the section's knobs it reads (``reads=("prior_components",)``; a knob
set under a prior that does not read it is refused) and ``options=True`` if it reads
``prior.options`` (the ``prior_options`` key).

The shipped priors, one module per family, each with its registration: :mod:`.gaussian`
(normal, learned-normal), :mod:`.mixtures` (mog, vamp), :mod:`.flow`, :mod:`.heavy_tailed`
(student-t, laplace). A new prior is a new module here (or anywhere it is imported) plus
``@register_prior``; :mod:`.registry` builds and checks them.
"""

# The families are imported in the order their names are listed (--help, error messages, the
# docs): registration order. Sorting these imports would reorder the choices.
# ruff: noqa: I001
from pyro_vae.models.priors.registry import PRIORS, build_prior, check_prior, import_prior, kl_description, register_prior
from pyro_vae.models.priors.gaussian import LearnedNormalPrior, StandardNormalPrior
from pyro_vae.models.priors.mixtures import MixtureOfGaussiansPrior, VampPrior
from pyro_vae.models.priors.flow import FlowPrior
from pyro_vae.models.priors.heavy_tailed import LaplacePrior, StudentTPrior

__all__ = ["PRIORS", "FlowPrior", "LaplacePrior", "LearnedNormalPrior", "MixtureOfGaussiansPrior",
           "StandardNormalPrior", "StudentTPrior", "VampPrior", "build_prior", "check_prior",
           "import_prior", "kl_description", "register_prior"]
