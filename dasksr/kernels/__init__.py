"""Pure per-block kernels and the registry of methods: no Dask, no xarray, no I/O here."""

from dasksr.kernels.registry import Method, get_method, list_methods, register

__all__ = ["Method", "get_method", "list_methods", "register"]
