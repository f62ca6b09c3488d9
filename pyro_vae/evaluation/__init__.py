"""How good a trained model is: importance-sampled log p(x) with PSIS and active-unit
diagnostics and the memory budget (:mod:`.evaluate`), AIS and BDMC (:mod:`.ais`,
:mod:`.evaluate_ais`, :mod:`.hmc`).
"""
