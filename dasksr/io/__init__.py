"""Reading and writing rasters: GeoTIFF/COG and Zarr in, Zarr and GeoTIFF out.

`read` opens rasters (`paths` says what an input is, `readers` reads its windows); `zarr_write`
and `geotiff_write` write them, sharing the output handling of `write`.
"""

from dasksr.io.geotiff_write import to_geotiff
from dasksr.io.read import NoGeoreferenceWarning, open_raster
from dasksr.io.readers import clear_cache
from dasksr.io.zarr_write import to_zarr

__all__ = ["NoGeoreferenceWarning", "clear_cache", "open_raster", "to_geotiff", "to_zarr"]
