"""What Pyro lacks for VAEs: the objective registry (:mod:`.objectives`), the multi-sample
bounds (:mod:`.elbos`), per-datapoint importance weights (:mod:`.importance`), KL warm-up
(:mod:`.warmup`) and the tracer that turns a Pyro loss into one graph (:mod:`.lowering`).
"""
