"""The ``sr`` accessor on xarray objects: it binds the API's free functions and nothing more."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import xarray as xr

__all__ = ["SRAccessor"]

T = TypeVar("T", xr.DataArray, xr.Dataset)


def _load(function: Callable[..., Any] | str) -> Callable[..., Any]:
    if isinstance(function, str):
        module, name = function.split(":")
        found: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return found
    return function


class _bind:  # a binder used like the function it replaced, hence the lower case
    """Binds ``function`` (or ``"module:name"``, imported when first used) to the accessor's object.

    The string form keeps this module cheap: xarray's import registers the accessor (see
    ``dasksr/__init__.py``), and it must not pull in Dask or the kernels at that moment. The
    object is passed through `_GEOREFERENCED` first: rasters loaded from STAC by stackstac keep
    their georeference where the API does not look (`dasksr.io.stac.georeferenced`).
    """

    def __init__(self, function: Callable[..., Any] | str) -> None:
        self._function = function

    def _resolve(self) -> Callable[..., Any]:
        self._function = _load(self._function)
        return self._function

    def __get__(self, accessor: SRAccessor[Any] | None, owner: type) -> Callable[..., Any]:
        function = self._resolve()
        if accessor is None:
            return function

        @functools.wraps(function)
        def method(*args: Any, **kwargs: Any) -> Any:
            return function(_load(_GEOREFERENCED)(accessor._obj), *args, **kwargs)

        return method


_GEOREFERENCED = "dasksr.io.stac:georeferenced"


class SRAccessor(Generic[T]):
    """``da.sr.upscale(scale=2, method='lanczos')``, ``stack.sr.fuse(scale=2)``, ``coarse.sr.sharpen(guide)``,
    ``da.sr.to_zarr(path)``, ``da.sr.to_geotiff(path)``, on DataArrays and Datasets."""

    def __init__(self, obj: T) -> None:
        self._obj: T = obj

    upscale = _bind("dasksr.api:upscale")
    fuse = _bind("dasksr.multiframe:fuse")
    sharpen = _bind("dasksr.guided:sharpen")
    to_zarr = _bind("dasksr.io:to_zarr")
    to_geotiff = _bind("dasksr.io:to_geotiff")


xr.register_dataarray_accessor("sr")(SRAccessor)
xr.register_dataset_accessor("sr")(SRAccessor)
