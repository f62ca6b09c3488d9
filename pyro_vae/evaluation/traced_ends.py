"""The two ends of the annealing path and their gradients, traced once into a graph of tensor
operations and replayed at every leapfrog step.

Running Pyro's traces of the model and the guide at every leapfrog step costs the host about as
much as the arithmetic on a CPU, and far more than it on a GPU (15-20 ms per annealing step
whatever the batch), so :meth:`~pyro_vae.evaluation.annealing.AnnealingPath.pyro_ends` is
recorded once per shape and replayed (:class:`TracedEnds`, as the compiled training step is:
:mod:`pyro_vae.infer.lowering`); a model that cannot be traced runs the Pyro traces at every
step, as before. Apart from the path itself because it is an optimization with its own failure
modes: the path's numbers do not depend on it (to float rounding).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from pyro_vae.core.console import log_line
from pyro_vae.evaluation.annealing import AnnealingPath
from pyro_vae.evaluation.memory import is_out_of_memory
from pyro_vae.infer.lowering import LoweringFailed, operation_count, trace_graph
from pyro_vae.models.sites import isolated


class TracedEnds:
    """:meth:`AnnealingPath.pyro_ends` recorded once per shape as a graph of tensor operations
    (:func:`~pyro_vae.infer.lowering.trace_graph`: the forward pass and the backward pass that gives the
    gradients in z) and replayed at every leapfrog step, without Pyro's handlers and traces.

    The graph reads the model's parameters and buffers, the images and z as inputs; what else
    the model reads (a prior built once by ``fixed_prior()``) is fixed in the graph, so one
    instance serves one evaluation, during which nothing changes. Tracing runs
    :func:`~pyro_vae.models.sites.isolated` (the random stream untouched). Where tracing fails (Python
    control flow on tensor values, results whose shape depends on the data: the flow prior's
    spline bins), the first failure is logged and Pyro's traces serve every later call.
    """

    def __init__(self, params: list[torch.Tensor], log: Callable[[str], None] = log_line):
        self.params, self.log = params, log
        self.graphs: dict[tuple, torch.fx.GraphModule] = {}
        self.problem: Optional[str] = None  # why tracing failed

    @classmethod
    def of(cls, model, log: Callable[[str], None] = log_line) -> "TracedEnds":
        """For a model (an ``nn.Module``: its parameters and buffers are the graph's inputs)."""
        tensors = [*model.parameters(), *model.buffers()] if isinstance(model, torch.nn.Module) else []
        return cls(tensors, log)

    def graph(self, path: AnnealingPath, z: torch.Tensor) -> Optional[torch.fx.GraphModule]:
        """The graph for the shapes of ``path.x`` and ``z``, traced now if it is new; None where
        the model cannot be traced."""
        key = (tuple(path.x.shape), tuple(z.shape), z.dtype, z.device, path.start, path.num_chains)
        if self.problem is None and key not in self.graphs:
            try:
                with isolated(path.x, validate=False):
                    x = path.x.contiguous()
                    twin = AnnealingPath(path.model, path.guide, x, path.num_chains, path.start,
                                           path.layout)
                    self.graphs[key] = trace_graph(lambda params, x_, z_: tuple(twin.pyro_ends(z_)),
                                                   self.params, x, z)
            except LoweringFailed as e:
                if e.__cause__ is not None and is_out_of_memory(e.__cause__):
                    raise e.__cause__  # not the model's fault: the batch is halved (ais_batches)
                self.problem = str(e)
                self.log(f"AIS: the model could not be traced into a graph ({e}); Pyro traces it "
                         "at every leapfrog step instead")
        return self.graphs.get(key)

    def operations(self) -> int:
        """Tensor operations per evaluation (of the first graph; 0 if none)."""
        return operation_count(next(iter(self.graphs.values()))) if self.graphs else 0

    def __call__(self, path: AnnealingPath, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Contiguous inputs: a graph records a reshape as a view or a copy by the strides it
        # was traced with (reverse AIS starts from an expanded z, then moves to fresh ones).
        z = z.detach().contiguous()
        graph = self.graph(path, z)
        if graph is None:
            return path.pyro_ends(z)
        with torch.no_grad():  # the graph holds the backward pass's operations itself
            return tuple(graph.forward(self.params, path.x.contiguous(), z))
