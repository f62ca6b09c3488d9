"""The compiled step: an objective's loss *and gradients* lowered to one plain tensor function.

Pyro runs a model through effect handlers that build a trace in Python on every call; on an
MLP-sized VAE that bookkeeping costs more than the arithmetic (about 1.6 ms of a 2.9 ms step at
batch 20 on a 2-core CPU). None of it depends on the data: for a fixed input shape the model and
guide perform the same tensor operations every step. So the step is traced once per shape with
``torch.fx``'s ``make_fx``: the objective's differentiable loss, followed by
``torch.autograd.grad`` with respect to the model's parameters, recorded as a flat graph of ATen
operations. The handlers, the trace bookkeeping, the backward pass's hooks (DReG's w~ weights)
and the autograd engine all run once, at tracing time; what is replayed is the arithmetic, the
random draws included (``aten.normal`` and friends run anew on every call, from the global
generator, in the same order as the eager step, so a compiled and an eager run with the same seed
draw the same numbers).

The model stays a Pyro program: it is traced, not rewritten. What tracing cannot see is Python
state that changes between calls (a counter inside the model, a decaying average kept in the
param store): the graph replays the first call's choices. :func:`lowering_problem` refuses the
cases pyro-vae ships (``--baseline avg`` and ``nn``), tracing refuses a model that replaces
param-store entries or whose result shapes depend on the data, and a model whose Python control
flow reads tensor values fails to trace; all of them run eagerly (see
:class:`~pyro_vae.training.trainer.SVIStep`).
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack, contextmanager
from typing import Callable, Optional, Sequence
from unittest import mock

import pyro
import pyro.infer.trace_elbo
import pyro.infer.trace_mean_field_elbo
import pyro.infer.traceenum_elbo
import pyro.infer.tracegraph_elbo
import torch
from pyro.infer import ELBO, TraceGraph_ELBO
from torch.fx.experimental.proxy_tensor import make_fx

from pyro_vae.config import AVERAGING_BASELINES
from pyro_vae.infer.step_input import StepInput
from pyro_vae.models.sites import isolated

# Pyro modules whose loss code reads tensors into Python numbers (``torch_item``) or checks them
# for NaN (``warn_if_nan``): both need a value, which does not exist while tracing.
_PYRO_LOSS_MODULES = (pyro.infer.trace_elbo, pyro.infer.trace_mean_field_elbo,
                      pyro.infer.tracegraph_elbo, pyro.infer.traceenum_elbo)


def _detached(x):
    return x.detach() if isinstance(x, torch.Tensor) else x


def _unchanged(x, *args, **kwargs):
    return x


@contextmanager
def tensor_items():
    """Pyro's ELBOs with ``torch_item`` returning a detached tensor and ``warn_if_nan`` off.

    ``Trace_ELBO.differentiable_loss`` returns ``loss + (surrogate - torch_item(surrogate))``:
    with a detached tensor in place of the float the value and the gradient are the same, and the
    traced function can return the loss as a tensor. NaN warnings are replaced by the trainer's
    own check of every loss.
    """
    with ExitStack() as stack:
        for module in _PYRO_LOSS_MODULES:
            for name, replacement in (("torch_item", _detached), ("warn_if_nan", _unchanged)):
                if hasattr(module, name):
                    stack.enter_context(mock.patch.object(module, name, replacement))
        yield


def differentiable_loss(elbo: ELBO, model: Callable, guide: Callable, *args) -> torch.Tensor:
    """A tensor whose value is the objective's loss (-ELBO or -bound) and whose gradient is the
    objective's gradient estimate (its surrogate loss)."""
    if isinstance(elbo, TraceGraph_ELBO):  # no differentiable_loss; the surrogate differs in value
        elbo_value, surrogate = elbo._loss_and_surrogate_loss(model, guide, args, {})
        return -elbo_value.detach() + (surrogate - surrogate.detach())
    return elbo.differentiable_loss(model, guide, *args)


def lowering_problem(cfg) -> Optional[str]:
    """Why the step of ``cfg`` cannot be compiled, or None."""
    if cfg.model.baseline in AVERAGING_BASELINES:  # nn-only's network is a module: it compiles
        return (f"--baseline {cfg.model.baseline} keeps a decaying average of the cost in Pyro's param "
                "store, replaced on every step; a traced step would replay the first one's "
                "(--baseline nn-only compiles)")
    return None


def _param_store_state() -> dict[str, torch.Tensor]:
    return dict(pyro.get_param_store().named_parameters())


def _data_dependent_shape(node: torch.fx.Node) -> bool:
    """Whether the operation's result has a shape that depends on tensor values (``nonzero``,
    ``masked_select``, indexing with a boolean mask; integer indexing is fine)."""
    target = node.target
    if node.op != "call_function" or torch.Tag.dynamic_output_shape not in getattr(target, "tags", ()):
        return False
    if target is torch.ops.aten.index.Tensor:
        indices = node.args[1]
        return any(isinstance(i, torch.fx.Node) and i.meta["val"].dtype == torch.bool
                   for i in indices)
    return True


_IDENTITY_VIEWS = (torch.ops.aten.expand.default, torch.ops.aten.view.default,
                   torch.ops.aten.reshape.default)


def simplify(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Drop what a recorded trace carries that a hand-written step would not execute: aliases and
    views to the shape a tensor already has (Pyro's broadcasting over plates), a weight's
    transpose recomputed for the backward pass, and results nobody reads. Each removed
    operation is about as costly as a small kernel on a small step."""
    graph = graph_module.graph
    transposes: dict[torch.fx.Node, torch.fx.Node] = {}
    for node in list(graph.nodes):
        if node.op != "call_function" or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        source = node.args[0]
        if node.target is torch.ops.aten.alias.default or (
                node.target in _IDENTITY_VIEWS
                and tuple(source.meta["val"].shape) == tuple(node.meta["val"].shape)):
            node.replace_all_uses_with(source)
            graph.erase_node(node)
        elif node.target is torch.ops.aten.t.default and source.op == "placeholder":
            if source in transposes:  # the same parameter's transpose, computed again
                node.replace_all_uses_with(transposes[source])
                graph.erase_node(node)
            else:
                transposes[source] = node
    graph.eliminate_dead_code()  # keeps in-place and random operations (they are impure)
    graph_module.recompile()
    return graph_module


READS_A_VALUE = ("it reads a tensor's value in Python (.item(), an if on a tensor, or F.one_hot of a "
                 "sampled index, as torch's OneHotCategorical.sample does), which a traced graph "
                 "cannot replay; pyro_vae.models.discrete.OneHotCategorical samples one-hot codes "
                 "without reading them")


class LoweringFailed(Exception):
    """The model and guide could not be traced into a graph (e.g. Python control flow that reads
    a tensor's value); the step runs eagerly instead."""


def trace_graph(fn: Callable, *args) -> torch.fx.GraphModule:
    """``fn(*args)`` recorded as a flat, :func:`simplify`-ed graph of ATen operations (backward
    passes that ``fn`` runs with ``torch.autograd.grad`` included), replayed by calling its
    ``forward`` with arguments of the same shapes. Raises :class:`LoweringFailed` where ``fn``
    cannot be traced or where the shape of a result depends on tensor values."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        try:
            graph = simplify(make_fx(fn)(*args))
        except Exception as e:  # whatever the user's model did that tracing cannot follow
            reason = (str(e).strip().splitlines() or [""])[0]
            if "_local_scalar_dense" in reason:  # a tensor's value read into Python
                raise LoweringFailed(READS_A_VALUE) from e
            raise LoweringFailed(f"{type(e).__name__}: {reason}") from e
    dynamic = sorted({str(node.target) for node in graph.graph.nodes if _data_dependent_shape(node)})
    if dynamic:
        raise LoweringFailed(f"the shape of some results depends on the data ({', '.join(dynamic)}, "
                             "e.g. indexing with a boolean mask), which a traced graph would "
                             "fix at the first call's")
    return graph


def operation_count(graph: torch.fx.GraphModule) -> int:
    """How many tensor operations a call of ``graph`` replays."""
    return sum(1 for node in graph.graph.nodes if node.op == "call_function")


class LoweredStep:
    """``(loss, grads) = lowered(x)``: the objective's loss and its gradient with respect to
    ``params``, from one traced graph per input shape (see the module docstring). A
    semi-supervised step passes ``lowered(x, x_labelled, y_labelled)``.

    Tracing runs the model and guide twice (once with Pyro's validation on, which checks the
    distributions' arguments and the sites' shapes, then once recording), isolated
    (:func:`~pyro_vae.models.sites.isolated`: a throwaway param store and a forked random number
    generator), so compiling leaves the run's state where it was: a resumed run draws what an
    uninterrupted one would.

    ``inputs``: the :class:`~pyro_vae.infer.step_input.StepInput` handlers that ``model`` and
    ``guide`` run under (KL warm-up's :class:`~pyro_vae.infer.warmup.LatentScale`, a relaxation's
    temperature); each one's tensor becomes an input of the graph, read anew on every call.
    """

    def __init__(self, elbo: ELBO, model: Callable, guide: Callable,
                 params: Sequence[torch.nn.Parameter], inputs: Sequence[StepInput] = ()):
        self.elbo, self.model, self.guide = elbo, model, guide
        self.params = list(params)
        self.inputs = list(inputs)
        self.graphs: dict[tuple, torch.fx.GraphModule] = {}

    def _inputs(self) -> list[torch.Tensor]:
        """The graph's inputs besides the parameters and the data."""
        return [handler.value for handler in self.inputs]

    def _joint(self, params, batch, inputs=()):
        with ExitStack() as stack:  # while tracing, each handler reads the graph's input (a proxy)
            for handler, value in zip(self.inputs, inputs):
                stack.enter_context(handler.holding(value))
            loss = differentiable_loss(self.elbo, self.model, self.guide, *batch)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return loss.detach(), grads

    def compile(self, *batch: torch.Tensor) -> torch.fx.GraphModule:
        """The graph for the shapes of ``batch`` (``x``, or a semi-supervised step's ``x``,
        ``x_labelled``, ``y_labelled``), traced now if they are new.

        Errors of the model that Pyro's validation finds propagate as they would from an eager
        step; a failure to trace raises :class:`LoweringFailed`.
        """
        key = _shapes(batch)
        if key not in self.graphs:
            # A throwaway param store: what the model writes there while it is traced (e.g. a
            # decaying average) is discarded; the graph reads the parameters passed to it.
            with isolated(batch[0], validate=True), tensor_items():
                self._joint(self.params, batch, self._inputs())  # validation: modelling errors show here
                with pyro.validation_enabled(False):
                    self.graphs[key] = self._trace(batch)
        return self.graphs[key]

    def _trace(self, batch: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
        before = _param_store_state()
        graph = trace_graph(lambda p, data, inputs: self._joint(p, data, inputs),
                            self.params, list(batch), self._inputs())
        after = _param_store_state()
        replaced = sorted(name for name, value in before.items() if after.get(name) is not value)
        if replaced:
            raise LoweringFailed(f"the step replaces Pyro params {', '.join(replaced)} in Python on "
                                 "every call, which a traced graph cannot repeat")
        return graph

    def operations(self, *batch: torch.Tensor) -> int:
        """How many tensor operations one step replays (for the run's description)."""
        return operation_count(self.compile(*batch))

    def __call__(self, *batch: torch.Tensor) -> tuple[torch.Tensor, tuple[Optional[torch.Tensor], ...]]:
        graph = self.graphs.get(_shapes(batch)) or self.compile(*batch)
        with torch.no_grad():
            return graph.forward(self.params, list(batch), self._inputs())  # forward: no module hooks to run


def _shapes(batch: Sequence[torch.Tensor]) -> tuple:
    """What a graph is traced for: the shape, dtype and device of every input tensor."""
    return tuple((t.shape, t.dtype, t.device) for t in batch)
