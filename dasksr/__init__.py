"""dasksr: seamless, chunked super-resolution of very large rasters with Dask.

``import dasksr`` is cheap: the public names are imported when first used (PEP 562), so that
``dasksr --help`` and scripts that use one function do not pay for Dask, xarray, Numba and
rasterio up front. The ``sr`` accessor is registered on xarray objects as soon as xarray is
imported, before or after dasksr.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names as type checkers and editors see them (ruff: re-exports)
    from dasksr import cluster, data, demo  # noqa: F401
    from dasksr.api import upscale  # noqa: F401
    from dasksr.degrade import degrade_sensor, imresize, mod_crop  # noqa: F401
    from dasksr.errors import DasksrError  # noqa: F401
    from dasksr.evaluate import evaluate_images  # noqa: F401
    from dasksr.frames import open_stack  # noqa: F401
    from dasksr.guided import sharpen  # noqa: F401
    from dasksr.io import open_raster, to_geotiff, to_zarr  # noqa: F401
    from dasksr.methods import Method, get_method, list_methods, register  # noqa: F401
    from dasksr.metrics import psnr, rgb2y, ssim  # noqa: F401
    from dasksr.multiframe import fuse  # noqa: F401
    from dasksr.simulate import simulate_stack  # noqa: F401

#: Each public name and the module that defines it; a submodule maps to itself.
_PUBLIC = {
    "cluster": "dasksr.cluster",
    "data": "dasksr.data",
    "demo": "dasksr.demo",
    "DasksrError": "dasksr.errors",
    "Method": "dasksr.methods",
    "get_method": "dasksr.methods",
    "list_methods": "dasksr.methods",
    "open_raster": "dasksr.io",
    "register": "dasksr.methods",
    "to_geotiff": "dasksr.io",
    "to_zarr": "dasksr.io",
    "upscale": "dasksr.api",
    "fuse": "dasksr.multiframe",
    "sharpen": "dasksr.guided",
    "open_stack": "dasksr.frames",
    "simulate_stack": "dasksr.simulate",
    "degrade_sensor": "dasksr.degrade",
    "evaluate_images": "dasksr.evaluate",
    "imresize": "dasksr.degrade",
    "mod_crop": "dasksr.degrade",
    "psnr": "dasksr.metrics",
    "rgb2y": "dasksr.metrics",
    "ssim": "dasksr.metrics",
}

__all__ = list(_PUBLIC)

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module_name = _PUBLIC.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dasksr' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"dasksr.{name}" else getattr(module, name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def _register_accessor() -> None:
    importlib.import_module("dasksr.accessor")


class _AccessorOnXarrayImport:
    """Registers the ``sr`` accessor right after xarray's own module has run, then retires.

    It finds xarray's spec through the other finders and wraps only that loader's
    ``exec_module``; every other import passes by untouched. (A plain class: ``sys.meta_path``
    needs only ``find_spec``, and ``importlib.abc`` would cost ``dasksr --help`` 6 ms.)
    """

    _busy = False  # True while it asks the other finders (they come back here first)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname != "xarray" or self._busy:
            return None
        # A probe (importlib.util.find_spec("xarray")) must not retire the hook: it retires only
        # once xarray's module has really run.
        self._busy = True
        try:
            spec = importlib.util.find_spec("xarray")
        finally:
            self._busy = False
        loader = None if spec is None else spec.loader
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            _retire_hook()
            try:
                _register_accessor()
            except Exception as exc:  # never break the user's `import xarray`
                warnings.warn(
                    f"dasksr could not register the 'sr' accessor on xarray ({exc!r}): "
                    "`import dasksr.accessor` registers it",
                    RuntimeWarning,
                    stacklevel=2,
                )

        # This spec's loader only: the next import of xarray (a reload) gets a new one.
        setattr(loader, "exec_module", exec_module)  # noqa: B010
        return spec


def _retire_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AccessorOnXarrayImport)]


if "xarray" in sys.modules:
    _register_accessor()
elif not any(isinstance(f, _AccessorOnXarrayImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AccessorOnXarrayImport())
