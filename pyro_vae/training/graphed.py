"""The whole training step as one CUDA graph, replayed without Python or host synchronisation.

On a GPU a VAE step's arithmetic takes a fraction of a millisecond, and what is left is launch
overhead: dozens of kernels, each launched from Python. The compiled step
(:mod:`pyro_vae.infer.lowering`) already removes Pyro's bookkeeping; this module removes the rest by
capturing everything a step does in a ``torch.cuda.CUDAGraph``:

- the minibatch, sliced from the dataset that lives on the device by a batch counter that
  the graph itself increments (``index_select`` of the epoch's permutation);
- dynamic binarization (``torch.bernoulli``; CUDA graphs advance the generator's offset on
  every replay, so each replay draws fresh numbers);
- the traced model, guide, objective and backward pass;
- Adam with ``capturable=True`` and its learning rate held in a tensor, so the schedule can
  change it between replays;
- the running sum of the loss and the index of the first non-finite loss, kept on the device.

The host reads those two numbers once every :data:`READ_EVERY` steps and at the end of the epoch:
that is the NaN guard, and it stops a diverging run with the trainer's usual message naming the
batch. (Unlike the per-step check, the steps between the bad one and the read have updated the
weights in memory; nothing of that is saved, the last checkpoint stays as it was.)

Capture needs a few uncaptured steps first (CUDA lazily initialises libraries and allocates
Adam's state); those are real training steps, run from the same code on a side stream. Without a
CUDA device, the same :meth:`GraphedSteps.run` executes the step directly: that is how the CPU
test suite checks everything here except the capture itself.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch

from pyro_vae.infer.lowering import LoweredStep

READ_EVERY = 50  # steps between the host's reads of the loss (the NaN guard)
WARMUP_STEPS = 3  # uncaptured steps before capturing


def use_tensor_learning_rate(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Put Adam in the form a captured step needs: the learning rate a device tensor (a float
    would be baked into the graph) and ``capturable`` with its step counts on the device."""
    for group in optimizer.param_groups:
        device = group["params"][0].device
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
        group["capturable"] = capturable
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "step" in state:
                state["step"] = state["step"].to(device if capturable else "cpu")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate, ``lr`` times the group's ``lr_scale`` where it has one (the
    baseline networks': :func:`~pyro_vae.training.step.make_optimizer`), in place where it is a
    tensor (captured graphs read it)."""
    for group in optimizer.param_groups:
        value = lr * group.get("lr_scale", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(value)
        else:
            group["lr"] = value


def portable_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state dict as an uncaptured Adam on any device would hold it (float
    learning rate, not capturable, step counts on the CPU), so a checkpoint written on a GPU
    resumes anywhere."""
    state = optimizer.state_dict()
    groups = [{**g, "lr": float(g["lr"]), "capturable": False} for g in state["param_groups"]]
    per_param = {k: {**v, "step": v["step"].cpu()} if "step" in v else v
                 for k, v in state["state"].items()}
    return {"state": per_param, "param_groups": groups}


class GraphedSteps:
    """An epoch's training steps, run on the data's device with no host synchronisation inside.

    ``capture``: record the step as a CUDA graph after :data:`WARMUP_STEPS` steps and replay it
    (CUDA only); otherwise run the same step directly.
    """

    def __init__(self, lowered: LoweredStep, optimizer: torch.optim.Optimizer, train: torch.Tensor,
                 batch_size: int, binarize: bool, capture: bool):
        if capture and train.device.type != "cuda":
            raise ValueError("CUDA graphs need the data on a CUDA device")
        self.lowered, self.optimizer, self.train = lowered, optimizer, train
        self.batch_size, self.binarize, self.capture = batch_size, binarize, capture
        device = train.device
        self.order = torch.zeros(len(train), dtype=torch.long, device=device)
        self.offsets = torch.arange(batch_size, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)  # batch within the epoch
        self.loss_sum = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.first_bad_loss = torch.zeros((), device=device)
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.side: Optional[torch.cuda.Stream] = None  # the warm-up steps' stream (capture only)
        self.steps_run = 0

    def start_epoch(self, order: torch.Tensor) -> None:
        self.order.copy_(order)
        self.position.zero_()
        self.loss_sum.zero_()
        self.first_bad.fill_(-1)
        self.first_bad_loss.zero_()

    def batch(self) -> torch.Tensor:
        """The current minibatch, as the step sees it (binarized afresh if dynamic)."""
        index = self.order.index_select(0, self.position * self.batch_size + self.offsets)
        x = self.train.index_select(0, index)
        return torch.bernoulli(x) if self.binarize else x

    def _step(self) -> None:
        loss, grads = self.lowered(self.batch())
        for p, g in zip(self.lowered.params, grads):
            p.grad = g
        self.optimizer.step()
        first = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad.copy_(torch.where(first, self.position, self.first_bad))
        self.first_bad_loss.copy_(torch.where(first, loss, self.first_bad_loss))
        self.loss_sum.add_(loss)
        self.position.add_(1)

    def _capture(self) -> None:
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()

    def run(self, steps: int) -> None:
        """Run ``steps`` training steps (no host synchronisation)."""
        for _ in range(steps):
            if self.capture and self.graph is None and self.steps_run >= WARMUP_STEPS:
                self._capture()
            if self.graph is not None:
                self.graph.replay()
            elif self.capture:
                self._warm_up()
            else:
                self._step()
            self.steps_run += 1

    def _warm_up(self) -> None:
        """An uncaptured step on a side stream, as capture requires (PyTorch's recipe: one side
        stream, ordered after the work queued before it and before the work queued after it).
        Adam warns that a capturable optimizer runs uncaptured: here that is the point."""
        if self.side is None:
            self.side = torch.cuda.Stream()
        self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*", category=UserWarning)
            self._step()
        torch.cuda.current_stream().wait_stream(self.side)

    def read(self) -> tuple[float, Optional[tuple[int, float]]]:
        """(sum of this epoch's losses so far, (batch index, loss) of its first non-finite loss or
        None): the one host synchronisation (one copy of the three numbers, not three)."""
        total, bad, bad_loss = torch.stack([self.loss_sum.double(), self.first_bad.double(),
                                            self.first_bad_loss.double()]).tolist()
        return total, ((int(bad), bad_loss) if bad >= 0 else None)


def device_steps(step, optimizer: torch.optim.Optimizer, data, batch_size: int, device: torch.device,
                 distributed: bool, wanted: Optional[bool] = None) -> tuple[Optional[GraphedSteps], Optional[str]]:
    """The run's epochs as :class:`GraphedSteps` where they can run so (a compiled ``step``, one
    process, no input that changes every step: KL warm-up, an annealed temperature), else None;
    and a note saying how the steps run, for the run's log. ``wanted``: None on CUDA only
    (captured), True also uncaptured on the CPU, False never."""
    if step.lowered is None or not (wanted or (wanted is None and device.type == "cuda")):
        return None, None
    if distributed:
        return None, ("data-parallel: each step is launched from the host, its gradients summed over the "
                      "ranks between the backward pass and Adam (no whole-step CUDA graph)")
    if data.dequantized:
        return None, ("dequantized data: each step's batch is dequantized afresh from the host (no "
                      "whole-step CUDA graph)")
    if data.labelled is not None:
        return None, ("semi-supervised: each step takes labelled images beside the unlabelled ones, "
                      "launched from the host (no whole-step CUDA graph)")
    if step.changing:  # e.g. "KL warm-up changes beta"
        return None, f"{' and '.join(step.changing)} every step, so each step is launched from the host (no whole-step CUDA graph)"
    capture = device.type == "cuda"
    if capture:
        use_tensor_learning_rate(optimizer, capturable=True)
    steps = GraphedSteps(step.lowered, optimizer, data.train, batch_size, data.dynamic_binarization, capture)
    return steps, (f"the whole step runs on the device{' as one CUDA graph' if capture else ''}; the loss is "
                   f"read every {READ_EVERY} steps")
