"""The ground floor: what every layer uses and nothing else in pyro-vae.

Errors (:mod:`.errors`), the one :class:`~.registry.Registry`, atomic writes (:mod:`.atomic`),
commands quoted for messages (:mod:`.commands`), processes and devices (:mod:`.distributed`),
the run's lines through logging and errors in one line (:mod:`.console`), TF32 (:mod:`.precision`), the up-front cost limits
(:mod:`.workload`) and importing user code by path (:mod:`.imports`). Imports nothing from the
layers above it.
"""
