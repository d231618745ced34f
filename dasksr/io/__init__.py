"""Reading and writing rasters: GeoTIFF/COG and Zarr in, Zarr and GeoTIFF out."""

from dasksr.io.read import clear_cache, open_raster
from dasksr.io.write import to_geotiff, to_zarr

__all__ = ["clear_cache", "open_raster", "to_geotiff", "to_zarr"]
