"""The config's sections, one module each: data, model, prior, objective, optim, run. A section
declares its fields once (key, default, help, docs row, simple rules: see
:func:`~pyro_vae.config.sections.base.setting`) and checks what it can check alone."""

from pyro_vae.config.sections.base import Section, key_of, setting
from pyro_vae.config.sections.data import DataSection
from pyro_vae.config.sections.model import ModelSection
from pyro_vae.config.sections.objective import ObjectiveSection, default_objective
from pyro_vae.config.sections.optim import OptimSection
from pyro_vae.config.sections.prior import PriorSection
from pyro_vae.config.sections.run import RunSection

# In the order of Config's attributes, its flat keys and docs/configuration.md.
SECTIONS: tuple[type[Section], ...] = (DataSection, ModelSection, PriorSection, ObjectiveSection,
                                       OptimSection, RunSection)

__all__ = ["SECTIONS", "DataSection", "ModelSection", "ObjectiveSection", "OptimSection", "PriorSection",
           "RunSection", "Section", "default_objective", "key_of", "setting"]
