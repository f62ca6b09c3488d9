"""Checks of plain data, as values: each check is a callable ``(value, field)`` that raises
:class:`Invalid` naming the field, what it must be and what was found, and carries its own
description (``expected``) so that composed checks describe themselves.

They are the vocabulary in which :mod:`.checkpoint_schema` writes a checkpoint's schema as one
table; apart from it so that the table reads as data, and the combinators can be tested (and
reused for other files a run directory holds) on their own.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

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


def field_path(field: str, key: Any) -> str:
    """The path of ``key`` inside ``field``: ``metrics[0]``, ``optimizer.state``."""
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
            value(v, field_path(field, k))
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
                raise Invalid(field_path(field, k), "present", "nothing", problem="is missing")
            c(value[k], field_path(field, k))
        for k, v in value.items():
            if k in required:
                continue
            c = optional_fields.get(k, others)
            if c is None:
                raise Invalid(field_path(field, k), "absent", found(v),
                              problem=f"is not a field of {what} that pyro-vae knows")
            c(v, field_path(field, k))
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
