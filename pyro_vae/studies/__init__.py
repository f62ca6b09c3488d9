"""Experiments built from the layers below: gradient variance (:mod:`.grad_variance`) and
the papers' protocols and reproduction table (:mod:`.reproduce`).
"""
