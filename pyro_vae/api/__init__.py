"""The public API's implementation: the top layer, which may import any layer below it.

``pyro_vae/__init__.py`` re-exports what is public; each module here does one job:

- :mod:`.arguments`: the keyword arguments of the functions below, checked and turned into config
  values (a part given as an object is recorded by its class), every refusal naming the
  parameter as the caller typed it;
- :mod:`.data`: data given as a dataset name, a :class:`~pyro_vae.data.VAEData` or tensors;
- :mod:`.training`: :func:`~.training.train` and :func:`~.training.resume`;
- :mod:`.runs`: :class:`~.runs.Run` and :func:`~.runs.open_run`;
- :mod:`.evaluation`: :func:`~.evaluation.log_likelihood` and :func:`~.evaluation.ais`;
- :mod:`.generation`: :func:`~.generation.sample` and :func:`~.generation.reconstruct`;
- :mod:`.figures`: :func:`~.figures.plot_run` (matplotlib is imported when it draws).
"""
