"""The run configuration: a :class:`Config` made of sections (data, model, prior, objective,
optim, run), filled from defaults < YAML file < command line.

Every setting is a flat key of a YAML file and a command-line flag (``latent_dim`` <->
``--latent-dim``), declared once in its section (:mod:`pyro_vae.config.sections`) with its
default, help and docs row (docs/configuration.md's table is generated from them). Validation
happens here, before any data is loaded, so that a typo costs nothing: an unknown key or a wrong
type is an error that names it.

This is the lowest layer after core: it imports nothing from above. The valid names of its keys
and the rules only their owners know come from :mod:`pyro_vae.core.choices`, where each owner
(data, nets, models, priors, objectives, schedules) publishes them when it is imported.

Modules: ``sections/`` (one per section), ``config`` (:class:`Config`, flat keys), ``values``
(typing values, paths), ``files`` (safe YAML reading), ``validate`` (cross-section rules,
:func:`make_config`), ``saved`` (opening a saved run's config), ``trust`` (the import-path trust
policy), ``flags`` (argparse), ``table`` (the docs' table).
"""

from pyro_vae.config.config import ALIASES, FIELD_TYPES, FIELDS, KEYS, Config, coerce_overrides, unknown_key_error
from pyro_vae.config.files import MAX_YAML_BYTES, REFERENCE_KEY, load_yaml, read_config_file, read_yaml
from pyro_vae.config.flags import add_config_arguments, add_trust_argument, path_argument
from pyro_vae.config.saved import RESUME_OVERRIDABLE, resume_config, saved_config
from pyro_vae.config.sections import (
                                      SECTIONS,
                                      DataSection,
                                      ModelSection,
                                      ObjectiveSection,
                                      OptimSection,
                                      PriorSection,
                                      RunSection,
                                      Section,
                                      default_objective,
)
from pyro_vae.config.trust import IMPORT_PATH_KEYS, check_trusted_imports, import_paths, trust_advice
from pyro_vae.config.validate import (
                                      AVERAGING_BASELINES,
                                      READ_BY,
                                      USED_ONLY_WITH,
                                      ignored_settings,
                                      make_config,
                                      merge_values,
                                      replaced,
                                      used_only_with,
                                      validate,
)
from pyro_vae.config.values import (
                                      PATH_KEYS,
                                      SHOWN_CHARACTERS,
                                      check_path,
                                      coerce,
                                      flag,
                                      option_list,
                                      path_problem,
                                      shown,
)

__all__ = [
    "ALIASES", "AVERAGING_BASELINES", "FIELDS", "FIELD_TYPES", "IMPORT_PATH_KEYS", "KEYS", "MAX_YAML_BYTES", "PATH_KEYS", "READ_BY",
    "REFERENCE_KEY", "RESUME_OVERRIDABLE", "SECTIONS", "SHOWN_CHARACTERS", "USED_ONLY_WITH", "Config",
    "DataSection", "ModelSection", "ObjectiveSection", "OptimSection", "PriorSection", "RunSection", "Section",
    "add_config_arguments", "add_trust_argument", "check_path", "check_trusted_imports", "coerce",
    "coerce_overrides", "default_objective", "flag", "ignored_settings", "import_paths", "load_yaml",
    "make_config", "merge_values", "option_list", "path_argument", "path_problem", "read_config_file",
    "read_yaml", "replaced", "resume_config", "saved_config", "shown", "trust_advice", "unknown_key_error",
    "used_only_with", "validate",
]
