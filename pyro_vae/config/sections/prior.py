"""The prior section: p(z) over the top latent layer, and the knobs of the shipped priors.

Each knob is read by the priors that declare it in their ``reads`` capability
(``pyro_vae.models.priors``): ``prior_components`` by ``mog`` and ``vamp``, the ``flow*`` keys by
``flow``, ... A knob set under a prior that does not read it is refused
(:func:`pyro_vae.config.ignored_settings`), so a prior registered later gets the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from pyro_vae.config.sections.base import Section, setting
from pyro_vae.core.choices import choices
from pyro_vae.core.errors import ConfigError


@dataclass
class PriorSection(Section):
    """p(z) over the top latent layer, and the knobs of the shipped priors. A knob set to anything
    but its default under a prior that does not read it is refused."""

    section: ClassVar[str] = "prior"

    name: str = setting(
        "normal", key="prior", choices="prior", import_path=True,
        help="{names} | package.module:Class",
        doc="p(z): `normal`, `learned-normal`, `mog`, `vamp`, `flow`, `student-t`, `laplace`, a "
            "prior registered with `register_prior`, or `package.module:Class` (see "
            "[Priors](models.md#priors))")
    components: Optional[int] = setting(
        None, key="prior_components", minimum=1, shown="10 for `mog`, 500 for `vamp`",
        help="components of mog (default 10) or pseudo-inputs of vamp (default 500)",
        doc="mixture components of `mog`, pseudo-inputs of `vamp`")
    vamp_init: str = setting(
        "data", choices="vamp_init", help="data | random: how vamp's pseudo-inputs start",
        doc="how `vamp`'s pseudo-inputs start: `data` (random training images) or `random`")
    flow: str = setting(
        "spline", choices="flow", help="spline | affine: the flow prior's coupling layers",
        doc="the `flow` prior's coupling layers: `spline` (rational-quadratic) or `affine`")
    flow_depth: int = setting(4, minimum=1, help="coupling layers of the flow prior",
                              doc="coupling layers of the `flow` prior")
    flow_hidden: int = setting(64, minimum=1, help="hidden units of each coupling layer's networks",
                               doc="hidden units of each coupling layer's two-layer network")
    df: float = setting(3.0, key="prior_df", positive=True,
                        help="degrees of freedom of the student-t prior",
                        doc="degrees of freedom of the `student-t` prior")
    options: dict[str, Any] = setting(
        key="prior_options", factory=dict,
        help="keyword options for a user-defined prior, as JSON on the command line",
        doc="keyword options for a user-defined prior: a YAML mapping, or JSON on the command line "
            "(`--prior-options '{\"init_scale\": 0.5}'`)")

    def registered(self) -> Optional[dict[str, Any]]:
        """The registered prior's capabilities (None: an import path, or no registry published)."""
        priors = choices("prior")
        return dict(priors.get(self.name).capabilities) if priors and self.name in priors else None

    def rules(self) -> None:
        registered = self.registered()
        if registered is not None and self.options and not registered["options"]:
            own = ", ".join(registered["reads"]) or "none"
            raise ConfigError(f"prior_options are for user-defined priors; prior {self.name!r} takes "
                              f"its own keys ({own})")
