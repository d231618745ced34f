"""dasksr: seamless, chunked super-resolution of very large rasters with Dask.

Importing dasksr registers the ``sr`` accessor on xarray objects.
"""

from dasksr import accessor as _accessor  # noqa: F401  (registers the xarray accessor)
from dasksr import cluster, data, demo
from dasksr.api import upscale
from dasksr.degrade import degrade_sensor, imresize, mod_crop
from dasksr.errors import DasksrError
from dasksr.evaluate import evaluate_images
from dasksr.io import open_raster, to_geotiff, to_zarr
from dasksr.kernels import Method, get_method, list_methods, register
from dasksr.metrics import psnr, rgb2y, ssim
from dasksr.multiframe import fuse
from dasksr.simulate import simulate_stack

__all__ = [
    "cluster",
    "data",
    "demo",
    "DasksrError",
    "Method",
    "get_method",
    "list_methods",
    "open_raster",
    "register",
    "to_geotiff",
    "to_zarr",
    "upscale",
    "fuse",
    "simulate_stack",
    "degrade_sensor",
    "evaluate_images",
    "imresize",
    "mod_crop",
    "psnr",
    "rgb2y",
    "ssim",
]

__version__ = "0.1.0"
