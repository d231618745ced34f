"""The ``sr`` accessor on xarray objects: it binds the API's free functions and nothing more."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import xarray as xr

from dasksr import api
from dasksr import multiframe as _multiframe
from dasksr.io import write

__all__ = ["SRAccessor"]

T = TypeVar("T", xr.DataArray, xr.Dataset)


def _bind(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def method(self: SRAccessor[Any], *args: Any, **kwargs: Any) -> Any:
        return function(self._obj, *args, **kwargs)

    return method


class SRAccessor(Generic[T]):
    """``da.sr.upscale(scale=2, method='lanczos')``, ``stack.sr.fuse(scale=2)``,
    ``da.sr.to_zarr(path)``, ``da.sr.to_geotiff(path)``, on DataArrays and Datasets."""

    def __init__(self, obj: T) -> None:
        self._obj: T = obj

    upscale = _bind(api.upscale)
    fuse = _bind(_multiframe.fuse)
    to_zarr = _bind(write.to_zarr)
    to_geotiff = _bind(write.to_geotiff)


xr.register_dataarray_accessor("sr")(SRAccessor)
xr.register_dataset_accessor("sr")(SRAccessor)
