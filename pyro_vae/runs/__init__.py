"""The run directory on disk: :class:`~.rundir.RunDir`, its lock (:mod:`.lock`), checkpoints
and their schema (:mod:`.checkpoint`, :mod:`.checkpoint_schema`), evaluation results
(:mod:`.results`) and reopening a run safely (:mod:`.opening`).
"""
