"""What Pyro lacks for VAEs: the objective registry (:mod:`.objectives`), the multi-sample
bounds (:mod:`.elbos`), per-datapoint importance weights (:mod:`.importance`), KL warm-up
(:mod:`.warmup`), the tracer that turns a Pyro loss into one graph (:mod:`.lowering`), and
exact enumeration of discrete sites: joint supports and the guide's marks (:mod:`.enumeration`),
summed inside importance weights (:mod:`.exact_marginal`).
"""
