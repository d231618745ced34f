"""Pure per-block kernels: arrays in, arrays out; no Dask, no xarray, no I/O, no registry here.

What a method is lives in :mod:`dasksr.kernels.method`; the registry of methods is
:mod:`dasksr.methods` and the shipped networks are :mod:`dasksr.models`.
"""

__all__: list[str] = []
