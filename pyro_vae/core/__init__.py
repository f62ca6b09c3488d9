"""The ground floor: what every layer uses. Imports nothing from the layers above it.

Errors (:mod:`.errors`), the one :class:`~.registry.Registry` and the choices the owners publish
for the config to check against (:mod:`.choices`), how messages name a setting (:mod:`.options`:
``--latent-dim`` in a command, ``latent_dim=`` in Python), atomic writes (:mod:`.atomic`),
commands quoted for messages (:mod:`.commands`), the run's lines through logging and errors in
one line (:mod:`.console`), torchrun's ranks, collectives and devices (:mod:`.distributed`),
TF32 (:mod:`.precision`), the up-front cost limits (:mod:`.workload`) and importing user code
by path (:mod:`.imports`).
"""
