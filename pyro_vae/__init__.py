"""pyro-vae: variational autoencoders as Pyro model/guide programs, trained by SVI.

The pipeline runs one way, one module per stage: ``config`` -> ``data`` -> ``nets`` -> ``priors``
-> ``models`` (model and guide programs) -> ``objectives`` -> ``train`` -> ``evaluate`` -> ``plots``. ``scripts/svi_train.py`` is the
command-line front end; everything it does is importable from here.
"""

__version__ = "0.1.0"
