"""Plain torch modules, no Pyro sample sites: encoders and decoders (:mod:`.nets`) and the
mixture density used by mixture priors (:mod:`.mixture`).
"""
