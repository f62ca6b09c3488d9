"""The run configuration: one dataclass, filled from defaults < YAML file < command line.

Every field is both a YAML key and a command-line flag (``latent_dim`` <-> ``--latent-dim``); the
README's configuration table documents each one. Validation happens here, before any data is
loaded, so that a typo costs nothing: an unknown key or a wrong type is an error that names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import yaml

from pyro_vae.core.commands import quote
from pyro_vae.core.errors import ConfigError, UntrustedImportError
from pyro_vae.core.options import option
from pyro_vae.core.workload import check_model_size


@dataclass
class Config:
    # data
    dataset: str = "mnist"
    data_dir: Optional[str] = None
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    valid_size: Optional[int] = None
    # model and networks (None: the model family's default, see pyro_vae.models)
    model: str = "vae"
    model_options: dict[str, Any] = field(default_factory=dict)
    arch: str = "mlp"
    hidden: Optional[list[int]] = None
    upper_hidden: Optional[list[int]] = None
    activation: Optional[str] = None
    latent_dim: Optional[list[int]] = None
    logvar_range: Optional[list[float]] = None
    # prior
    prior: str = "normal"
    prior_components: Optional[int] = None  # mog: 10, vamp: 500
    vamp_init: str = "data"
    flow: str = "spline"
    flow_depth: int = 4
    flow_hidden: int = 64
    prior_df: float = 3.0
    prior_options: dict[str, Any] = field(default_factory=dict)
    # objective and gradient estimator
    elbo: Optional[str] = None  # None: trace, or tracegraph with estimator "score"
    estimator: str = "reparam"
    baseline: str = "none"
    baseline_beta: float = 0.9
    num_particles: int = 1
    alpha: Optional[float] = None
    compile: bool = True
    tf32: bool = False
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    adam_eps: float = 1e-8
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    lr_schedule: str = "constant"
    lr_schedule_scale: float = 1.0
    kl_warmup: float = 0.0
    early_stopping: Optional[int] = None
    seed: int = 0
    # evaluation and figures at the end of training
    eval_samples: Optional[int] = None
    plots: bool = True
    tensorboard: Optional[str] = None  # log directory; "RUN/tensorboard": inside the run directory
    # where and how
    device: str = "auto"
    out: Optional[str] = None
    resume: Optional[str] = None

    def __post_init__(self):
        """Fill what the model family decides (``hidden``, ``latent_dim``, ``activation``, ...)
        where it was not given; a single latent size may be given as a number."""
        from pyro_vae.models import model_defaults

        if isinstance(self.latent_dim, int) and not isinstance(self.latent_dim, bool):
            self.latent_dim = [self.latent_dim]
        for key, value in model_defaults(self.model).items():
            if getattr(self, key) is None:
                setattr(self, key, list(value) if isinstance(value, list) else value)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# One-line help for ``--help``; the README table carries the full description. ``{names}`` is
# filled in from the key's registry (see registries).
HELP = {
    "dataset": "{names}",
    "data_dir": "dataset directory (else $PYRO_VAE_DATA, else ./data)",
    "limit_train": "use only the first N training examples",
    "limit_test": "use only the first N test (and validation) examples",
    "valid_size": "hold out the last N training images as a validation split (mnist, fashion-mnist; "
                  "binarized-mnist has its own)",
    "model": "{names} | package.module:Class (a model of your own)",
    "model_options": "keyword options for a user-defined model, as JSON on the command line",
    "arch": "{names} (the networks next to x)",
    "hidden": "hidden layer sizes between x and the first latent layer, e.g. --hidden 200 200 "
              "(default: vae 400 400, hvae 200 200)",
    "upper_hidden": "hvae: hidden layer sizes between consecutive latent layers (default 100 100)",
    "activation": "relu | tanh | softplus | elu | leaky_relu | gated (GatedDense layers; default: "
                  "vae relu, hvae tanh)",
    "latent_dim": "latent sizes, bottom layer first: one for vae (default 50), one per layer for "
                  "hvae (default 100 50); --latent-dims is the same flag",
    "logvar_range": "clamp the guide's log-variance to [LOW, HIGH] (hardtanh), e.g. -6 2 as in the "
                    "VampPrior code (default: softplus scale, no clamp)",
    "prior": "{names} | package.module:Class",
    "prior_components": "components of mog (default 10) or pseudo-inputs of vamp (default 500)",
    "vamp_init": "data | random: how vamp's pseudo-inputs start",
    "flow": "spline | affine: the flow prior's coupling layers",
    "flow_depth": "coupling layers of the flow prior",
    "flow_hidden": "hidden units of each coupling layer's networks",
    "prior_df": "degrees of freedom of the student-t prior",
    "prior_options": "keyword options for a user-defined prior, as JSON on the command line",
    "elbo": "{names} (default: trace, or "
            "tracegraph with --estimator score)",
    "estimator": "reparam | score (gradient estimator of the guide's z)",
    "baseline": "none | avg | nn (score-function baselines, with --elbo tracegraph)",
    "baseline_beta": "decay of the avg baseline's moving average",
    "num_particles": "K: samples of z per data point and step",
    "alpha": "Renyi alpha (--elbo renyi)",
    "compile": "run each step as one traced graph of tensor operations (--no-compile: Pyro's "
               "eager step); --jit is the same flag",
    "tf32": "CUDA: let training's float32 matmuls and convolutions use TF32 (default off: full "
            "float32); log p(x) evaluations always run without it",
    "epochs": "total number of epochs (a resumed run stops at this epoch)",
    "batch_size": "minibatch size",
    "lr": "Adam learning rate",
    "adam_eps": "Adam epsilon",
    "adam_betas": "Adam's beta1 beta2, e.g. --adam-betas 0.9 0.999",
    "lr_schedule": "{names} (iwae: Burda et al.'s staged decay)",
    "lr_schedule_scale": "iwae schedule: stage i lasts 3^i x this many epochs (0.1: 328 epochs in all)",
    "kl_warmup": "epochs E of KL warm-up: latent terms weighted by min(1, epochs done / E) (trace, "
                 "tracegraph, meanfield; 0: none)",
    "early_stopping": "stop after P epochs without a better validation ELBO (needs a validation "
                      "split); the best epoch is kept as best.pt",
    "seed": "random seed (data order, binarization, samples)",
    "eval_samples": "after training, estimate log p(x) on the test split with K samples",
    "plots": "draw the run's figures at the end of training (--no-plots to skip)",
    "tensorboard": "log scalars and image grids for TensorBoard into DIR (the flag alone: "
                   "RUN/tensorboard, inside the run directory); needs pyro-vae[tensorboard]",
    "device": "cpu | cuda | auto",
    "out": "run directory (default runs/<timestamp>)",
    "resume": "continue the run in this run directory",
}

# Keys whose value may be the import path "package.module:Name" of user code. Opening a saved
# run imports such a path only if the user names it (see check_trusted_imports).
IMPORT_PATH_KEYS = ("prior", "model")

# Other spellings accepted for a key (YAML and command line).
ALIASES = {"latent_dims": "latent_dim", "jit": "compile"}

# Keys that may differ from the saved config when resuming: they do not change what the run is.
RESUME_OVERRIDABLE = ("epochs", "lr", "device", "data_dir", "eval_samples", "plots", "compile",
                      "tf32", "tensorboard")

FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Config)

# Keys that name a file-system path. An empty one means the working directory to the operating
# system ("--out ''" would write a run into it, "--resume ''" would start a new run): refused.
PATH_KEYS = {"out": "runs/<timestamp>", "resume": "a new run",
             "data_dir": "$PYRO_VAE_DATA, else ./data"}

# The most characters of a value that a message quotes: a value read from a file can be as large
# as the file, and an error message is one line.
SHOWN_CHARACTERS = 80


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)``, cut to ``limit`` characters: how every message of pyro-vae's configuration
    quotes a value (see SHOWN_CHARACTERS)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def flag(key: str) -> str:
    """A config key as the reader types it: ``--latent-dim`` on the command line, ``latent_dim``
    in Python (:func:`~pyro_vae.core.options.option`)."""
    return option(key)


def path_problem(value: str) -> Optional[str]:
    """Why ``value`` cannot name a path, or None: empty (the working directory to the operating
    system) or holding a NUL byte (no path can)."""
    if not value.strip():
        return f"is empty ({shown(value)})"
    if "\0" in value:
        return f"{shown(value)} holds a NUL byte, which no path can"
    return None


def check_path(key: str, value: str) -> str:
    """``value`` if config key ``key`` (a path) can hold it, else a one-line ConfigError."""
    problem = path_problem(value)
    if problem:
        default = PATH_KEYS.get(key)
        rest = f", or leave {flag(key)} out for {default}" if default else ""
        raise ConfigError(f"{flag(key)} {problem}; name a directory{rest}")
    return value


def path_argument(key: Optional[str] = None, default: Optional[str] = None) -> Callable[[str], str]:
    """An argparse ``type`` for a path: refuses what :func:`path_problem` refuses, as one line
    (argparse names the flag or argument). ``default`` says what leaving it out does (else
    config key ``key``'s PATH_KEYS entry; None for a required argument)."""
    default = default or PATH_KEYS.get(key or "")

    def parse(text: str) -> str:
        problem = path_problem(text)
        if problem:
            rest = f", or leave it out for {default}" if default else ""
            raise argparse.ArgumentTypeError(f"{problem}; name a directory{rest}")
        return text
    parse.__name__ = "path"
    return parse


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " or null"
    if origin is list:
        return f"a list of {_type_name(args[0]).split(' ', 1)[1]}s"
    if origin is dict:
        return "a mapping of names to values"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}[tp]


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or a ConfigError that names ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(key, value, next(a for a in args if a is not type(None)))
    if origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(key, v, args[0]) for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # one size: [size]
            return [_coerce(key, value, args[0])]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key!r} must be {_type_name(tp)}, got {shown(value)}")


def _unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key[:SHOWN_CHARACTERS], FIELD_TYPES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {shown(key)} in {where}.{hint} "
                       f"Valid keys: {', '.join(FIELD_TYPES)}.")


# The largest YAML file pyro-vae reads. Its files (configs, sweeps, a run's config.yaml) are a
# few KiB; the bound keeps a shared file from filling the memory or a message.
MAX_YAML_BYTES = 2**20


class _AnchorRefused(Exception):
    """A YAML anchor or alias, at ``mark``: see :class:`_PlainLoader`."""

    def __init__(self, mark):
        super().__init__()
        self.mark = mark


class _PlainLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data, no Python objects), for plain data only:

    - an anchor or alias (``&a``, ``*a``, ``<<: *a``) is refused before it is expanded: nested
      aliases make a file of a few hundred bytes expand to gigabytes (the "billion laughs"), and
      pyro-vae's files never need them;
    - a key given twice in one mapping is an error instead of the last value silently winning.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _AnchorRefused(event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {shown(key)} appears twice (lines {first + 1} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The data in a YAML file, or a one-line ConfigError: missing, unreadable, larger than
    MAX_YAML_BYTES, not UTF-8, not valid YAML, nested too deeply, an anchor or alias, or a key
    given twice."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist" + (" (see configs/ for examples)"
                                                             if what == "config file" else ""))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_YAML_BYTES // 2**20} MiB; pyro-vae's "
                          "YAML files hold a few settings (is it the right file?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_PlainLoader)
    except _AnchorRefused as e:
        raise ConfigError(f"{what} {path} uses a YAML anchor or alias (&name, *name) at line "
                          f"{e.mark.line + 1}, column {e.mark.column + 1}; pyro-vae reads plain "
                          "YAML only: write the values out") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply to be a pyro-vae YAML file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {problem[:200]}") from None


# A config file may carry this mapping: the published result it reproduces (see
# scripts/reproduce.py). It describes the run; it is not a setting, so training ignores it.
REFERENCE_KEY = "reference"


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, reference): a YAML config file's checked, typed keys and its ``reference``
    mapping (empty if absent)."""
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    reference = raw.pop(REFERENCE_KEY, None) or {}
    if not isinstance(reference, dict):
        raise ConfigError(f"{REFERENCE_KEY!r} in config file {path} must be a mapping, e.g. "
                          "{paper: ..., nll: 86.76}")
    return coerce_overrides(raw, where=str(path)), reference


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The settings in a YAML config file, with keys checked and values typed."""
    return read_config_file(path)[0]


def coerce_overrides(raw: dict[str, Any], where: str = "overrides") -> dict[str, Any]:
    """``raw`` with every key checked against Config and every value coerced to its type.

    YAML files use snake_case keys; dashes are accepted too, as on the command line.
    """
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in FIELD_TYPES:
            raise _unknown_key_error(str(key), where)
        out[name] = _coerce(name, value, FIELD_TYPES[name])
        if name in PATH_KEYS and out[name] is not None:
            check_path(name, out[name])
    return out


def registries() -> dict[str, Any]:
    """Config key -> the :class:`~pyro_vae.core.registry.Registry` its valid values come from.

    Imported here, when a config is validated or a parser built, not when this module is: the
    registries live with what they build (data, nets, models, ...), which sit above the config.
    """
    from pyro_vae.data import DATASETS
    from pyro_vae.infer.objectives import OBJECTIVES
    from pyro_vae.models import MODELS
    from pyro_vae.models.priors import PRIORS
    from pyro_vae.nn.nets import ARCHITECTURES
    from pyro_vae.training.schedule import LR_SCHEDULES

    return {"dataset": DATASETS, "arch": ARCHITECTURES, "model": MODELS, "prior": PRIORS,
            "elbo": OBJECTIVES, "lr_schedule": LR_SCHEDULES}


def validate(cfg: Config) -> Config:
    """Check choices, ranges and combinations; return ``cfg`` with ``elbo`` resolved."""
    from pyro_vae.infer.objectives import check_compatibility, default_objective
    from pyro_vae.models.estimators import BASELINES, ESTIMATORS
    from pyro_vae.models.priors import import_prior
    from pyro_vae.nn.nets import GATED, LAYER_KINDS

    registry = registries()
    priors = registry["prior"]
    choices = {
        **{key: registry[key] for key in ("dataset", "arch", "lr_schedule")},  # a Registry: its names
        "activation": LAYER_KINDS,
        "estimator": ESTIMATORS,
        "baseline": BASELINES,
        "device": ("cpu", "cuda", "auto"),
        "vamp_init": ("data", "random"),
        "flow": ("spline", "affine"),
    }
    for key, valid in choices.items():
        value = getattr(cfg, key)
        if value not in valid:
            raise ConfigError(f"unknown {key} {shown(value)}; choose one of: {', '.join(valid)}")
    for key in ("epochs", "batch_size", "limit_train", "limit_test", "valid_size", "num_particles",
                "eval_samples", "prior_components", "flow_depth", "flow_hidden"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise ConfigError(f"{key} must be at least 1, got {value}")
    for key in ("hidden", "upper_hidden", "latent_dim"):
        if any(size < 1 for size in getattr(cfg, key)):
            raise ConfigError(f"{key} sizes must be positive, got {shown(getattr(cfg, key))}")
    _validate_model(cfg)
    check_model_size(cfg)  # sizes typed with a few zeros too many fail here, not in an allocation
    own_validation = registry["dataset"].get(cfg.dataset).capabilities["validation"]
    if cfg.valid_size is not None and own_validation:
        raise ConfigError(f"{cfg.dataset} has its own validation split ({own_validation:,} images); "
                          "drop valid_size")
    if cfg.valid_size is not None and cfg.valid_size >= 60000:
        raise ConfigError(f"valid_size {cfg.valid_size} leaves no training images (60,000 in all)")
    if cfg.arch == "conv" and cfg.activation == GATED:
        raise ConfigError("activation 'gated' makes the MLP layers gated; the conv layers need a "
                          "plain activation (e.g. --activation relu), or use --arch mlp")
    if cfg.logvar_range is not None and (len(cfg.logvar_range) != 2 or
                                         not cfg.logvar_range[0] < cfg.logvar_range[1]):
        raise ConfigError(f"logvar_range must be two numbers LOW HIGH with LOW < HIGH, e.g. -6 2; "
                          f"got {shown(cfg.logvar_range)}")
    if cfg.arch == "conv" and not cfg.hidden:
        raise ConfigError("arch 'conv' needs at least one hidden layer size (--hidden)")
    for key, tp in FIELD_TYPES.items():  # inf and nan parse as floats but are never meant
        value = getattr(cfg, key)
        if tp in (float, Optional[float]) and value is not None and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
    for key in ("lr", "adam_eps"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(f"{key} must be positive, got {getattr(cfg, key)}")
    if len(cfg.adam_betas) != 2 or not all(0 <= b < 1 for b in cfg.adam_betas):
        raise ConfigError(f"adam_betas must be two numbers in [0, 1), e.g. 0.9 0.999; got {shown(cfg.adam_betas)}")
    if cfg.kl_warmup < 0:
        raise ConfigError(f"kl_warmup must be 0 (none) or a positive number of epochs, got {cfg.kl_warmup}")
    if cfg.early_stopping is not None:
        if cfg.early_stopping < 1:
            raise ConfigError(f"early_stopping must be at least 1 epoch, got {cfg.early_stopping}")
        if cfg.valid_size is None and not own_validation:
            raise ConfigError(f"early_stopping watches the validation ELBO, and {cfg.dataset} has "
                              "no validation split: add --valid-size N (e.g. 10000)")
    if not cfg.lr_schedule_scale > 0:
        raise ConfigError(f"lr_schedule_scale must be positive, got {cfg.lr_schedule_scale}")
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed must be in [0, 2^32 - 1] (NumPy's and PyTorch's seed range), got {cfg.seed}")
    if cfg.prior not in priors and ":" not in cfg.prior:
        raise ConfigError(f"unknown prior {shown(cfg.prior)}; choose one of: {', '.join(priors.names())}, or give "
                          "an import path package.module:ClassName")
    if cfg.prior not in priors:
        import_prior(cfg.prior)  # a bad path fails now, not after the data have loaded
    if cfg.prior_options and cfg.prior in priors and not priors.get(cfg.prior).capabilities["options"]:
        raise ConfigError(f"prior_options are for user-defined priors; prior {cfg.prior!r} takes its "
                          "own keys (prior_components, vamp_init, flow, flow_depth, flow_hidden, prior_df)")
    if cfg.prior == "flow" and cfg.latent_dim[-1] < 2:
        raise ConfigError("the flow prior needs a top latent layer of size >= 2 (latent_dim)")
    if not cfg.prior_df > 0:
        raise ConfigError(f"prior_df must be positive, got {cfg.prior_df}")
    if not 0 <= cfg.baseline_beta < 1:
        raise ConfigError(f"baseline_beta must be in [0, 1), got {cfg.baseline_beta}")
    ignored = ignored_settings(cfg)
    if ignored:
        raise ConfigError(next(iter(ignored.values())))
    if cfg.elbo is None:
        cfg = dataclasses.replace(cfg, elbo=default_objective(cfg.estimator))
    check_compatibility(cfg)
    return cfg


def replaced(cfg: Config, **changes: Any) -> Config:
    """``cfg`` with ``changes``, validated. Keys the changes leave unread (a mixture prior's
    ``prior_components`` once the prior becomes ``normal``, ``baseline_beta`` once the baseline is
    ``none``) go back to their defaults instead of being refused: the caller changed the setting
    that reads them, not them (see :func:`ignored_settings`)."""
    new = dataclasses.replace(cfg, **changes)
    defaults = Config(model=new.model)
    stale = {key: getattr(defaults, key) for key in ignored_settings(new) if key not in changes}
    return validate(dataclasses.replace(new, **stale))


# Keys that only some settings read: key -> (the key that decides, the values under which it is
# read). See ignored_settings.
USED_ONLY_WITH = {
    "prior_components": ("prior", ("mog", "vamp")),
    "vamp_init": ("prior", ("vamp",)),
    "flow": ("prior", ("flow",)),
    "flow_depth": ("prior", ("flow",)),
    "flow_hidden": ("prior", ("flow",)),
    "prior_df": ("prior", ("student-t",)),
    "baseline_beta": ("baseline", ("avg", "nn")),
    "lr_schedule_scale": ("lr_schedule", ("iwae",)),
}


def ignored_settings(cfg: Config) -> dict[str, str]:
    """key -> a one-line message, for every key that is set (differs from its default) although
    nothing in ``cfg`` reads it: a prior's option under another prior (USED_ONLY_WITH), a
    model-shaping key the model does not take (:func:`~pyro_vae.models.ignored_model_settings`).

    Such a key would be silently ignored while config.yaml records it, so the saved config would
    lie about the run: :func:`validate` refuses it. A key left at its default was not given and
    is never refused; :func:`saved_config` drops such keys from runs saved before this check
    (they never had an effect).
    """
    from pyro_vae.models import ignored_model_settings

    defaults = Config(model=cfg.model)
    out = {}
    for key, (decider, values) in USED_ONLY_WITH.items():
        value, decided = getattr(cfg, key), getattr(cfg, decider)
        if value != getattr(defaults, key) and decided not in values:
            out[key] = (f"{flag(key)} applies only with {flag(decider)} {' or '.join(values)}, and "
                        f"{decider} is {shown(decided)}: {flag(key)} {shown(value)} would be "
                        "ignored while config.yaml records it; drop it")
    out.update(ignored_model_settings(cfg, defaults))
    return out


def _validate_model(cfg: Config) -> None:
    """The model family exists (or its import path imports), its latent layers fit it, and
    model_options go only to a model of the user's own."""
    from pyro_vae.models import MODELS, check_user_model

    if cfg.model not in MODELS and ":" not in cfg.model:
        raise ConfigError(f"unknown model {shown(cfg.model)}; choose one of: {', '.join(MODELS.names())}, or give "
                          "an import path package.module:ClassName")
    if cfg.model not in MODELS:
        check_user_model(cfg)  # a bad path fails now, not after the data have loaded
        return
    if cfg.model_options:
        raise ConfigError(f"model_options are for user-defined models; model {cfg.model!r} takes "
                          "its own keys (hidden, upper_hidden, latent_dim, activation, arch)")
    low, high = MODELS.get(cfg.model).capabilities["layers"]
    layers = len(cfg.latent_dim)
    if layers < low or (high is not None and layers > high):
        wanted = f"{low}" if low == high else f"at least {low}"
        raise ConfigError(f"model {cfg.model!r} has {wanted} latent layer(s) but latent_dim gives "
                          f"{layers} sizes ({cfg.latent_dim}); e.g. --latent-dim "
                          f"{' '.join(map(str, [100, 50][-low:] if low > 1 else [50]))}")


def merge_values(overrides: dict[str, Any] | None = None, config_file: str | Path | None = None
                 ) -> dict[str, Any]:
    """The YAML file's values updated by ``overrides``, keys checked and values typed."""
    values = load_yaml(config_file) if config_file else {}
    values.update(coerce_overrides(overrides or {}))
    return values


def make_config(overrides: dict[str, Any] | None = None, config_file: str | Path | None = None
                ) -> Config:
    """Defaults, then the YAML file, then ``overrides`` (e.g. from the command line), validated."""
    return validate(Config(**merge_values(overrides, config_file)))


def add_config_arguments(parser: argparse.ArgumentParser,
                         path_defaults: Optional[dict[str, str]] = None) -> None:
    """One ``--flag`` per Config field. Defaults are suppressed so that only given flags count.
    ``path_defaults``: what leaving out a path flag does in this script, where it differs from
    training's (PATH_KEYS), for its message."""
    registry = registries()
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        tp = FIELD_TYPES[f.name]
        base = tp
        if typing.get_origin(tp) is typing.Union:  # Optional[X] -> X
            base = next(a for a in typing.get_args(tp) if a is not type(None))
        names = " | ".join(registry[f.name].names()) if f.name in registry else ""
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name,
                                  "help": HELP[f.name].replace("{names}", names)}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is dict:
            kwargs.update(type=_json_mapping, metavar="JSON")
        elif typing.get_origin(base) is list:
            kwargs.update(nargs="+", type=typing.get_args(base)[0], metavar="N")
        elif f.name in PATH_KEYS:
            kwargs.update(type=path_argument(f.name, (path_defaults or {}).get(f.name)), metavar="DIR")
        elif f.name == "tensorboard":  # a value of its own when the flag comes alone
            kwargs.update(nargs="?", const="RUN/tensorboard", type=path_argument(), metavar="DIR")
        else:
            kwargs.update(type=base, metavar=f.name.upper())
        aliases = ["--" + a.replace("_", "-") for a, name in ALIASES.items() if name == f.name]
        parser.add_argument(flag, *aliases, **kwargs)


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-import PATH`` (repeatable): an import path that a run's saved config may name
    and that may therefore be imported when the run is opened (see check_trusted_imports)."""
    parser.add_argument("--trust-import", action="append", default=[], metavar="PATH",
                        dest="trust_import",
                        help="allow the run's saved config to import this package.module:Name "
                             "(a user prior or model); repeat for several")


def _json_mapping(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"scale\": 2.0}'")
    return value


def import_paths(values: dict[str, Any]) -> dict[str, str]:
    """The values of :data:`IMPORT_PATH_KEYS` that are import paths ("package.module:Name")."""
    return {key: values[key] for key in IMPORT_PATH_KEYS
            if isinstance(values.get(key), str) and ":" in values[key]}


def check_trusted_imports(values: dict[str, Any], trusted: Iterable[str], source: str) -> None:
    """Refuse the import paths in ``values`` (a saved run's config) that the user did not name.

    A run directory is data that people share, and a checkpoint is read with
    ``weights_only=True`` so that loading it runs no code. An import path stored in it would
    undo that: building the run imports the module and calls the name with options from the
    same file (``logging:basicConfig`` truncates a file of the attacker's choosing). So a saved
    path is imported only if the person opening the run names it: ``--trust-import PATH``, or
    the same ``--prior PATH`` or ``--model PATH`` when resuming.
    """
    trusted = set(trusted)
    for key, path in import_paths(values).items():
        if path not in trusted:
            raise UntrustedImportError(
                f"{source} names the {key} {shown(path)}, code that opening the run would import "
                f"and run; pyro-vae imports only code you name. If you trust it, pass "
                f"--trust-import {quote(path)}")


def saved_config(saved: Any, trusted: Iterable[str], source: str) -> dict[str, Any]:
    """A checkpoint's config as checked, typed values; nothing imported (see
    :func:`check_trusted_imports`). A saved ``data_dir`` is a path on the machine that trained
    the run: it is kept only where that directory exists here, so that a shared run cannot make
    pyro-vae create directories (or download a dataset) where its author chose."""
    if not isinstance(saved, dict):
        raise ConfigError(f"{source} holds no config mapping")
    check_trusted_imports(saved, trusted, source)
    # An empty path was saved by a run started before empty paths were refused (--out '' wrote
    # it into the working directory): the run is opened by its directory, so the value is dropped
    # rather than the run refused.
    values = coerce_overrides({k: v for k, v in saved.items()
                               if not (k in PATH_KEYS and isinstance(v, str) and path_problem(v))},
                              where=source)
    if values.get("data_dir") and not Path(values["data_dir"]).expanduser().is_dir():
        del values["data_dir"]  # --data-dir, else $PYRO_VAE_DATA, else ./data
    try:
        ignored = ignored_settings(Config(**values))
    except (ConfigError, TypeError):  # reported as such when the config is validated
        return values
    # Saved before such keys were refused: they never had an effect, so the run is its config
    # without them (and a resumed run writes it so).
    return {k: v for k, v in values.items() if k not in ignored}


def resume_config(saved: dict[str, Any], overrides: dict[str, Any], run_dir: str,
                  trusted_imports: Iterable[str] = ()) -> Config:
    """The saved run's config with the few keys that may change on resume replaced.

    Changing anything else (the architecture, the objective, the data) would silently make the
    resumed run a different experiment, so it is refused with the list of offending keys. An
    import path in the saved config counts as named by the user if ``overrides`` repeat it.
    """
    source = f"the checkpoint in {run_dir}"
    named = [overrides[key] for key in IMPORT_PATH_KEYS if key in overrides]
    values = saved_config(saved, [*trusted_imports, *named], source)
    out = overrides.get("out")
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"--out {out} differs from the run being resumed ({run_dir}); a resumed "
                          "run continues in its own directory, so drop --out")
    cfg = make_config(values)
    changed = sorted(k for k, v in overrides.items()
                     if k not in (*RESUME_OVERRIDABLE, "resume", "out") and getattr(cfg, k) != v)
    if changed:
        detail = ", ".join(f"{k}: {shown(getattr(cfg, k))} -> {shown(overrides[k])}" for k in changed)
        raise ConfigError(
            f"cannot change {detail} when resuming; only {', '.join(RESUME_OVERRIDABLE)} may "
            "differ. Start a new run (--out) to train with other settings.")
    allowed = {k: v for k, v in overrides.items() if k in RESUME_OVERRIDABLE}
    return validate(dataclasses.replace(cfg, **allowed, resume=str(run_dir), out=str(run_dir)))
