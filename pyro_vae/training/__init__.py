"""Training: the :class:`~.trainer.Trainer` (the run's parts wired together), the loop
(:mod:`.loop`) and where it stands (:mod:`.state`), the SVI step (:mod:`.step`; compiled, or as a
CUDA graph: :mod:`.graphed`), callbacks around the loop (:mod:`.callbacks`: checkpoints, early
stopping, console, TensorBoard, final evaluation and figures, failures), checkpoint contents
(:mod:`.checkpointing`), the run's own random generators (:mod:`.rng`), learning-rate schedules
(:mod:`.schedule`), divergence diagnosis (:mod:`.divergence`) and data-parallel ranks
(:mod:`.data_parallel`).
"""
