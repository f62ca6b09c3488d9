"""Plain torch modules, no Pyro sample sites: encoders and decoders (:mod:`.nets`: mlp and conv;
:mod:`.resnet`: resnet) and the mixture density used by mixture priors (:mod:`.mixture`).
"""

from pyro_vae.nn import resnet  # noqa: F401  (registers --arch resnet)
