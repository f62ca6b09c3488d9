"""Training: the :class:`~.trainer.Trainer`, the SVI step (eager, compiled, CUDA graph:
:mod:`.graphed`), learning-rate schedules (:mod:`.schedule`), divergence diagnosis
(:mod:`.divergence`) and data-parallel ranks (:mod:`.data_parallel`).
"""
