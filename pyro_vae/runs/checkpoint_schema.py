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

Why one module rather than several: the schema is one table, and a reader checks
it against what :func:`pyro_vae.runs.checkpoint.save_checkpoint` writes by reading it top to
bottom; split, it would be harder to see that every field is covered. The checks it is written
in are :mod:`.field_checks`'.
"""

from __future__ import annotations

import typing
from typing import Any

import torch

from pyro_vae.config import ALIASES, FIELD_TYPES
from pyro_vae.core.errors import CheckpointError
from pyro_vae.runs.field_checks import (
    FLOATING,
    INTEGRAL,
    Check,
    Invalid,
    anything,
    boolean,
    check,
    exactly,
    field_path,
    found,
    integer,
    is_number,
    list_of,
    mapping_of,
    number,
    optional,
    record,
    tensor,
    text,
)

FORMAT = "pyro-vae-checkpoint"
READABLE_VERSIONS = (1, 2)  # 2: with a checksum; 1 (earlier pyro-vae) is read without one

# What every line of metrics.jsonl and every record of a checkpoint's metrics holds (numbers);
# later commands plot and tabulate these.
METRIC_KEYS = ("epoch", "step", "train_loss", "test_elbo", "wall_seconds")


# Checks of the fields whose rules are torch's or the config's. -------------------------------------

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
            raise Invalid(field_path(field, key), "absent", found(v), problem="is not a config key "
                          "(see docs/configuration.md)")
        CONFIG_FIELDS[name](v, field_path(field, key))


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
        "best": optional(record({"epoch": integer(1), "valid_elbo": number()},
                                {"valid_accuracy": number()}, what="a best epoch")),
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
