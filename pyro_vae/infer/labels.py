"""The label site ``"y"``: the site rules of models that take labels, and q(y | x) read off the guide.

A model that takes labels has ``model(x, y=None)`` and ``guide(x, y=None)`` (Pyro's ss-vae
convention): given one-hot labels ``y`` of shape ``(B, C)``, the model observes the site ``"y"``
and the guide has no site ``"y"``; without them ``"y"`` is a latent site of both, its guide
distribution q(y | x) a one-hot categorical over the C classes: the classifier. Nothing else is
assumed: accuracy, the auxiliary loss and the exact sum over classes in log p(x) read the site.
"""

from __future__ import annotations

from typing import Callable

import torch
from pyro import poutine

from pyro_vae.core.errors import ConfigError
from pyro_vae.data.vaedata import LabelledSet
from pyro_vae.models.sites import LABEL_SITE, OBSERVED_SITE, base_distribution, isolated, sample_sites


def class_probabilities(guide: Callable, x: torch.Tensor) -> torch.Tensor:
    """``(B, C)``: q(y | x) of the guide's label site, for images ``x`` (the guide's other sites
    are sampled and discarded: run it under a forked random generator to leave the stream alone)."""
    site = poutine.trace(guide).get_trace(x).nodes.get(LABEL_SITE)
    if site is None:
        raise ConfigError(f"the guide has no label site {LABEL_SITE!r}: it cannot classify images")
    return base_distribution(site["fn"]).probs


def check_labels(model, labelled: LabelledSet, name: str) -> None:
    """Refuse, in one line before any training, a model that cannot take labels: ``model(x, y)``
    and ``guide(x, y)`` must run on two labelled images, the model observing ``"y"`` and ``"x"``
    and the guide without ``"y"``, and ``guide(x)`` must have a one-hot categorical site ``"y"``
    over the labels' classes. Runs :func:`~pyro_vae.models.sites.isolated`: no state changes."""
    x, y = labelled.x[:2], labelled.y[:2]
    takes = f"model {name!r} does not take labels"
    how = (f"labelled training needs model(x, y=None) and guide(x, y=None) with a label site "
           f"{LABEL_SITE!r}, observed in the model when y is given (see docs/models.md, \"Labels\"), as "
           "model ssvae has")
    with isolated(x):
        try:
            guide_trace = poutine.trace(model.guide).get_trace(x, y)
            model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x, y)
            unlabelled = poutine.trace(model.guide).get_trace(x)
        except TypeError as e:
            raise ConfigError(f"{takes} ({e}); {how}") from None
        except Exception as e:  # the user's code: any failure is a modelling error to report
            message = (str(e).strip().splitlines() or [""])[0][:200]
            raise ConfigError(f"model {name!r} fails when given labels ({type(e).__name__}: {message}); "
                              f"{how}") from None
    observed = {site["name"] for site in sample_sites(model_trace) if site["is_observed"]}
    if observed != {LABEL_SITE, OBSERVED_SITE}:
        raise ConfigError(f"{takes}: given y, its model observes {sorted(observed)}, not {LABEL_SITE!r} "
                          f"and {OBSERVED_SITE!r}; {how}")
    if LABEL_SITE in guide_trace.nodes:
        raise ConfigError(f"model {name!r}: given y, its guide still samples {LABEL_SITE!r}; sample it "
                          "only when y is None")
    site = unlabelled.nodes.get(LABEL_SITE)
    fn = None if site is None else base_distribution(site["fn"])
    classes = labelled.classes
    if not isinstance(fn, torch.distributions.OneHotCategorical) or fn.event_shape[-1] != classes:
        found = "no site 'y'" if fn is None else f"{type(fn).__name__} with event shape {tuple(fn.event_shape)}"
        raise ConfigError(f"model {name!r}: guide(x) must sample {LABEL_SITE!r} from a OneHotCategorical "
                          f"over the {classes} classes (q(y | x), the classifier); it has {found}")
