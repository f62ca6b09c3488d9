"""The one schema of a checkpoint's contents: every field's type and range, checked on load.

The SHA-256 in a checkpoint catches damage, not an author who recomputes it, and a run directory
is data that people share. A crafted checkpoint could hold a string epoch, a tensor step, a
metrics list of strings, an RNG state that torch refuses, an Adam state with negative second
moments or ``maximize`` switched on, or weights of NaN: each would reach a traceback deep in
training or evaluation, or worse, be used silently. So every field that pyro-vae reads from a
checkpoint is described here, once, as data (:data:`SCHEMA`, :data:`RULES`), and
:func:`check_checkpoint` refuses the first field that fails with one line that names the file
and the field. What can only be checked against the built model (tensor shapes, the number of
parameters) is checked where the weights are loaded (:func:`pyro_vae.runs.opening.load_weights`); the
config's ranges and combinations by :func:`pyro_vae.config.validate`, as for any config
(:func:`pyro_vae.runs.opening.saved_run_values`).
"""

from __future__ import annotations

import math
import typing
from typing import Any, Callable, Optional

import torch

from pyro_vae.config import ALIASES, FIELD_TYPES
from pyro_vae.core.errors import CheckpointError

FORMAT = "pyro-vae-checkpoint"
READABLE_VERSIONS = (1, 2)  # 2: with a checksum; 1 (earlier pyro-vae) is read without one

# What every line of metrics.jsonl and every record of a checkpoint's metrics holds (numbers);
# later commands plot and tabulate these.
METRIC_KEYS = ("epoch", "step", "train_loss", "test_elbo", "wall_seconds")

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTEGRAL = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)


class Invalid(Exception):
    """A field that fails its check: its path (``optimizer.param_groups[0].lr``), what it must
    be, and what was found."""

    def __init__(self, field: str, expected: str, found: str, problem: Optional[str] = None):
        super().__init__(field, expected, found)
        self.field, self.expected, self.found = field, expected, found
        self.problem = problem or f"must be {expected}, found {found}"

    def message(self, source: str) -> str:
        return (f"{source}: field {self.field!r} {self.problem}; the file was not written by "
                "pyro-vae or was altered, and was not used")


def found(value: Any) -> str:
    """What a value is, in a few words: ``str '3'``, ``a float32 tensor of shape (2, 3)``."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{'an' if dtype[0] in 'aeiou' else 'a'} {dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if value is None:
        return "None"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _path(field: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{field}[{key}]"
    return f"{field}.{key}" if field else str(key)


# Checks: callables (value, field) that raise Invalid; each has an ``expected`` description. -----

Check = Callable[[Any, str], None]


def check(expected: str, ok: Callable[[Any], bool]) -> Check:
    """A check of one value: ``ok(value)``, else Invalid saying it must be ``expected``."""
    def run(value: Any, field: str) -> None:
        if not ok(value):
            raise Invalid(field, expected, found(value))
    run.expected = expected
    return run


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: Optional[int] = 0, high: Optional[int] = None) -> Check:
    words = {0: "a non-negative integer", 1: "a positive integer", None: "an integer"}
    expected = words.get(low, f"an integer >= {low}") if high is None else f"an integer in [{low}, {high}]"
    return check(expected, lambda v: is_int(v) and (low is None or v >= low) and (high is None or v <= high))


def number(low: Optional[float] = None, above: Optional[float] = None,
           below: Optional[float] = None) -> Check:
    """A finite int or float (not a bool), >= ``low``, > ``above``, < ``below`` where given."""
    bounds = [f">= {low:g}" if low is not None else "", f"> {above:g}" if above is not None else "",
              f"< {below:g}" if below is not None else ""]
    expected = " ".join(["a finite number", " and ".join(b for b in bounds if b)]).strip()
    return check(expected, lambda v: is_number(v) and (low is None or v >= low)
                 and (above is None or v > above) and (below is None or v < below))


def exactly(*values: Any) -> Check:
    """One of ``values``, of the same type (``False`` is not ``0``)."""
    expected = " or ".join(repr(v) for v in values)
    return check(expected, lambda v: any(type(v) is type(w) and v == w for w in values))


def text() -> Check:
    return check("a string", lambda v: isinstance(v, str))


def boolean() -> Check:
    return check("true or false", lambda v: isinstance(v, bool))


def optional(inner: Check) -> Check:
    def run(value: Any, field: str) -> None:
        if value is not None:
            inner(value, field)
    run.expected = f"None or {inner.expected}"
    return run


def list_of(item: Check, length: Optional[int] = None, nonempty: bool = False) -> Check:
    size = f"of {length} items" if length is not None else ("of at least one item" if nonempty else "")
    expected = " ".join(w for w in ("a list", size, f"each {item.expected}") if w)

    def run(value: Any, field: str) -> None:
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length) \
                or (nonempty and not value):
            raise Invalid(field, expected, found(value))
        for i, v in enumerate(value):
            item(v, f"{field}[{i}]")
    run.expected = expected
    return run


def mapping_of(key: Check, value: Check) -> Check:
    expected = f"a mapping of {key.expected} to {value.expected}"

    def run(mapping: Any, field: str) -> None:
        if not isinstance(mapping, dict):
            raise Invalid(field, expected, found(mapping))
        for k, v in mapping.items():
            key(k, f"{field} key {k!r}" if field else f"key {k!r}")
            value(v, _path(field, k))
    run.expected = expected
    return run


def record(required: dict[str, Check], optional_fields: Optional[dict[str, Check]] = None,
           others: Optional[Check] = None, what: str = "a mapping") -> Check:
    """A dict with the ``required`` keys, maybe the ``optional_fields``, and other keys only if
    ``others`` checks their values (else an unknown key is refused)."""
    optional_fields = optional_fields or {}
    expected = f"{what} with {', '.join(required)}" if required else what

    def run(value: Any, field: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(field, expected, found(value))
        for k, c in required.items():
            if k not in value:
                raise Invalid(_path(field, k), "present", "nothing", problem="is missing")
            c(value[k], _path(field, k))
        for k, v in value.items():
            if k in required:
                continue
            c = optional_fields.get(k, others)
            if c is None:
                raise Invalid(_path(field, k), "absent", found(v),
                              problem=f"is not a field of {what} that pyro-vae knows")
            c(v, _path(field, k))
    run.expected = expected
    return run


def tensor(dtypes: tuple = FLOATING, dim: Optional[int] = None, finite: bool = True,
           nonnegative: bool = False) -> Check:
    """A CPU tensor of one of ``dtypes``; of ``dim`` dimensions; floating values finite (and
    >= 0) where asked."""
    kinds = "floating-point" if dtypes == FLOATING else ("numeric" if dtypes == FLOATING + INTEGRAL
                                                         else "/".join(str(d).removeprefix("torch.") for d in dtypes))
    expected = " ".join(w for w in (
        "a", "scalar" if dim == 0 else (f"{dim}-dimensional" if dim else ""), kinds, "tensor",
        "of finite values" if finite else "", "(>= 0)" if nonnegative else "") if w)

    def run(value: Any, field: str) -> None:
        if not isinstance(value, torch.Tensor) or value.dtype not in dtypes or value.is_sparse \
                or value.device.type != "cpu" or (dim is not None and value.dim() != dim):
            raise Invalid(field, expected, found(value))
        if value.dtype in FLOATING:
            if finite and not torch.isfinite(value).all():
                raise Invalid(field, expected, f"{found(value)} holding NaN or infinite values")
            if nonnegative and (value < 0).any():
                raise Invalid(field, expected, f"{found(value)} holding negative values")
    run.expected = expected
    return run


def anything(value: Any, field: str) -> None:
    """Plain data of any kind (options passed on to user code, checked there)."""


anything.expected = "anything"


def rng_state(value: Any, field: str) -> None:
    """A CPU generator state that torch accepts (its size and its Mersenne-twister words)."""
    expected = "a 1-dimensional uint8 tensor that torch.set_rng_state accepts"
    if not isinstance(value, torch.Tensor) or value.dtype != torch.uint8 or value.dim() != 1 \
            or value.device.type != "cpu":
        raise Invalid(field, expected, found(value))
    try:
        torch.Generator().set_state(value)
    except (RuntimeError, TypeError, ValueError) as e:
        raise Invalid(field, expected, f"{found(value)} that torch refuses ({' '.join(str(e).split())})") from None


rng_state.expected = "a 1-dimensional uint8 tensor that torch.set_rng_state accepts"


def step_count(value: Any, field: str) -> None:
    """Adam's step count: a whole number >= 0, as a scalar tensor (or a number, older torch)."""
    expected = "a whole number >= 0 (a scalar tensor)"
    if isinstance(value, torch.Tensor):
        if value.dim() != 0 or value.dtype not in FLOATING + INTEGRAL or value.dtype == torch.bool:
            raise Invalid(field, expected, found(value))
        value = value.item()
    if not is_number(value) or value < 0 or value != int(value):
        raise Invalid(field, expected, found(value))


step_count.expected = "a whole number >= 0 (a scalar tensor)"

_CUDA_STATE = tensor((torch.uint8,), dim=1)
_CUDA_STATES = list_of(_CUDA_STATE)


def cuda_rng_state(value: Any, field: str) -> None:
    """The run's own GPU's generator state (None: a CPU run), or, as earlier pyro-vae wrote it, a
    list of one per GPU of the machine that wrote it. Its contents are torch's to check, where a
    GPU is (:func:`pyro_vae.training.trainer._set_rng_state`)."""
    if value is None:
        return
    if isinstance(value, (list, tuple)):
        _CUDA_STATES(value, field)
    elif isinstance(value, torch.Tensor):
        _CUDA_STATE(value, field)
    else:
        raise Invalid(field, cuda_rng_state.expected, found(value))


cuda_rng_state.expected = f"None, {_CUDA_STATE.expected} or {_CUDA_STATES.expected}"


def config_value(tp: Any) -> Check:
    """The check of a Config field of type ``tp`` (from its type hints: one source of truth).
    An int is accepted for a float, a tuple for a list."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return optional(config_value(next(a for a in args if a is not type(None))))
    if origin is list:
        return list_of(config_value(args[0]))
    if origin is dict:
        return mapping_of(text(), anything)
    return {bool: boolean(), int: integer(None), float: number(), str: text()}[tp]


CONFIG_FIELDS = {name: config_value(tp) for name, tp in FIELD_TYPES.items()}


def config_mapping(value: Any, field: str) -> None:
    """The run's config: every key a config key (or an alias of one), every value of its type.
    Ranges and combinations are :func:`~pyro_vae.config.validate`'s (after the trust check)."""
    if not isinstance(value, dict):
        raise Invalid(field, "a mapping of config keys to values", found(value))
    for key, v in value.items():
        name = ALIASES.get(key, key) if isinstance(key, str) else key
        if name not in CONFIG_FIELDS:
            raise Invalid(_path(field, key), "absent", found(v), problem="is not a config key "
                          "(see docs/configuration.md)")
        CONFIG_FIELDS[name](v, _path(field, key))


config_mapping.expected = "a mapping of config keys to values"

# The schema. ------------------------------------------------------------------------------------

METRIC_RECORD = record(
    required={"epoch": integer(1), "step": integer(0), "train_loss": number(),
              "test_elbo": number(), "wall_seconds": number(low=0)},
    others=number(), what="a mapping of metric names to numbers")

# torch.optim.Adam's state_dict as pyro_vae.training.graphed.portable_state writes it: per-parameter
# moments, and one group of hyperparameters (pyro-vae's Adam: no weight decay, no AMSGrad, no
# maximisation; a float learning rate, not capturable).
ADAM_GROUP = record(
    required={"params": list_of(integer(0)), "lr": number(above=0), "betas": list_of(number(low=0, below=1), 2),
              "eps": number(above=0), "weight_decay": exactly(0, 0.0), "amsgrad": exactly(False)},
    optional_fields={"maximize": exactly(False), "capturable": exactly(False),
                     "differentiable": exactly(False), "foreach": optional(boolean()),
                     "fused": exactly(None, False), "decoupled_weight_decay": exactly(False)},
    others=check("None, true/false, a number or a string",
                 lambda v: v is None or isinstance(v, (bool, str)) or is_number(v)),
    what="an Adam parameter group")
ADAM_PARAM_STATE = record(
    required={"step": step_count, "exp_avg": tensor(), "exp_avg_sq": tensor(nonnegative=True)},
    optional_fields={"max_exp_avg_sq": tensor(nonnegative=True)},
    what="an Adam parameter state")
OPTIMIZER = record(required={"state": mapping_of(integer(0), ADAM_PARAM_STATE),
                             "param_groups": list_of(ADAM_GROUP, nonempty=True)},
                   what="an optimizer state")

SCHEMA = record(
    required={
        "format": exactly(FORMAT),
        "version": exactly(*READABLE_VERSIONS),
        "epoch": integer(0),
        "step": integer(0),
        "config": config_mapping,
        "model": mapping_of(text(), tensor(FLOATING + INTEGRAL)),
        "optimizer": OPTIMIZER,
        "rng": record({"torch": rng_state, "cuda": cuda_rng_state},
                      what="an RNG state"),
        "metrics": list_of(METRIC_RECORD),
    },
    optional_fields={
        "checksum": text(),
        "wall_seconds": number(low=0),
        "pyro_params": mapping_of(text(), tensor()),
        "best": optional(record({"epoch": integer(1), "valid_elbo": number()}, what="a best epoch")),
    },
    what="a checkpoint")


# Rules between fields. ---------------------------------------------------------------------------

def metrics_match_epoch(state: dict[str, Any]) -> None:
    """One record per finished epoch, 1 to ``epoch`` in order, steps never going back and never
    past the checkpoint's."""
    metrics, epoch = state["metrics"], state["epoch"]
    if len(metrics) != epoch:
        raise Invalid("metrics", f"a list of {epoch} records (one per finished epoch)",
                      f"{len(metrics)} records")
    previous = 0
    for i, r in enumerate(metrics):
        if r["epoch"] != i + 1:
            raise Invalid(f"metrics[{i}].epoch", f"{i + 1} (epochs in order)", found(r["epoch"]))
        if not previous <= r["step"] <= state["step"]:
            raise Invalid(f"metrics[{i}].step", f"in [{previous}, {state['step']}] (steps never go "
                          "back, nor past the checkpoint's)", found(r["step"]))
        previous = r["step"]


def best_is_a_finished_epoch(state: dict[str, Any]) -> None:
    best = state.get("best")
    if best is not None and best["epoch"] > state["epoch"]:
        raise Invalid("best.epoch", f"a finished epoch (<= {state['epoch']})", found(best["epoch"]))


def optimizer_ids_match(state: dict[str, Any]) -> None:
    """Every parameter id in one group only, and per-parameter state only for those ids."""
    seen: set[int] = set()
    for g, group in enumerate(state["optimizer"]["param_groups"]):
        for i, pid in enumerate(group["params"]):
            if pid in seen:
                raise Invalid(f"optimizer.param_groups[{g}].params[{i}]", "an id not listed before",
                              found(pid))
            seen.add(pid)
    for pid in state["optimizer"]["state"]:
        if pid not in seen:
            raise Invalid(f"optimizer.state[{pid}]", "the state of a parameter id of param_groups",
                          f"id {pid}, which no group lists")


RULES = (metrics_match_epoch, best_is_a_finished_epoch, optimizer_ids_match)


def check_checkpoint(state: Any, source: str) -> None:
    """Refuse ``state`` (a loaded checkpoint from ``source``) where any field fails
    :data:`SCHEMA` or :data:`RULES`: a one-line CheckpointError that names the file and field."""
    try:
        SCHEMA(state, "")
        for rule in RULES:
            rule(state)
    except Invalid as e:
        raise CheckpointError(e.message(source)) from None
