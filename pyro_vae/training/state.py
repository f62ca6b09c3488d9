"""Where a run stands: what a checkpoint saves besides the weights, and what callbacks read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class TrainingState:
    """The run's progress. ``history``: one record per finished epoch (the lines of
    metrics.jsonl). ``best``: ``{"epoch", "valid_elbo"}`` of the epoch with the highest
    validation ELBO so far (runs with a validation split; best.pt holds its weights).
    ``saved_epoch``: the epoch of the checkpoint on disk (0: none, or a run in memory).
    ``stop_reason``: why the loop stopped before its last epoch in this fit (early stopping).
    ``model_epoch``: the epoch whose weights the model holds, where it is not the last one (a run
    in memory that put its best epoch's weights back)."""

    epoch: int = 0
    step: int = 0
    wall_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: Optional[dict[str, Any]] = None
    saved_epoch: int = 0
    stop_reason: Optional[str] = None
    model_epoch: Optional[int] = None

    def record(self, record: dict[str, Any]) -> bool:
        """Append a finished epoch's record; returns whether it is the new best epoch (updating
        ``best``)."""
        improved = "valid_elbo" in record and (self.best is None or _better(record, self.best))
        if improved:
            self.best = {key: record[key] for key in ("epoch", "valid_elbo", "valid_accuracy") if key in record}
        self.epoch, self.wall_seconds = record["epoch"], record["wall_seconds"]
        self.history.append(record)
        return improved

    def is_best(self, epoch: int) -> bool:
        """Whether ``epoch`` is the best epoch so far."""
        return self.best is not None and self.best["epoch"] == epoch

    def best_text(self) -> str:
        """"validation ELBO -90.123" or "validation accuracy 0.9512": what made the best epoch."""
        if self.best is None:
            return ""
        if "valid_accuracy" in self.best:
            return f"validation accuracy {self.best['valid_accuracy']:.4f}"
        return f"validation ELBO {self.best['valid_elbo']:.3f}"

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "TrainingState":
        return cls(epoch=state["epoch"], step=state["step"], wall_seconds=state.get("wall_seconds", 0.0),
                   history=list(state["metrics"]), best=state.get("best"), saved_epoch=state["epoch"])


def _better(record: dict[str, Any], best: dict[str, Any]) -> bool:
    """Whether an epoch's record beats the best one: by validation accuracy where both have one,
    then by validation ELBO."""
    if "valid_accuracy" in record and "valid_accuracy" in best:
        return (record["valid_accuracy"], record["valid_elbo"]) > (best["valid_accuracy"], best["valid_elbo"])
    return record["valid_elbo"] > best["valid_elbo"]
