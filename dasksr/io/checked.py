"""An output written together with its consistency (`dasksr.consistency.Check`), in one graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import xarray as xr

from dasksr.cluster import check_workers_write
from dasksr.consistency import Check
from dasksr.io.geotiff_write import to_geotiff
from dasksr.io.paths import is_url
from dasksr.io.zarr_write import WriteJob, to_zarr
from dasksr.stream import compute as compute_in_strips

__all__ = ["write_checked"]


def write_checked(
    fine: xr.DataArray,
    output: str,
    job: WriteJob | None,
    check: Check,
    consistency: str | None,
    overwrite: bool,
    *,
    progress: bool = False,
    cog: bool = False,
    strip_bytes: int | None = None,
) -> tuple[Path | str, list[Any]]:
    """Write ``fine`` (through the Zarr ``job``, else as a GeoTIFF at ``output``), compute the RMS
    of ``check`` and write its residual raster to ``consistency`` (.zarr or .tif), all in one
    computation, so that every block of ``fine`` is computed once; the output's path and
    ``[rms]``. The places were checked (`dasksr.io.write.prepare_output`) before.

    The computation runs in strips of ``fine``'s rows of blocks, about ``strip_bytes`` of ``fine``
    each (`dasksr.stream.compute`), so that only a strip and its edges are in memory at once.
    """
    # All Delayed (dask.compute returns a mix of Delayed and arrays out of the order given), made
    # with to_delayed: dask.delayed(f)(array) would import distributed, which small jobs never need.
    # Unoptimised, like the writers' (`optimize_graph=False`): fused graphs get new keys, and
    # the output's blocks would be computed once for the file and once more for the RMS.
    also: list[Any] = [check.rms().to_delayed(optimize_graph=False).ravel()[0]]
    if consistency is not None:
        zarr = consistency.lower().rstrip("/").endswith(".zarr")
        writer = to_zarr if zarr else to_geotiff
        also.append(writer(check.residual, consistency, overwrite=overwrite, compute=False))
    if job is not None:
        job.check_workers()
    folders = []
    for place in (output, consistency) if job is None else (consistency,):
        if place is not None and not is_url(place):
            folders.append(Path(place).absolute().parent)
    for folder in folders:
        check_workers_write(folder, shown=output)
    if job is not None:
        done = compute_in_strips(
            [*job.tasks, *also], [fine.data], strip_bytes=strip_bytes, progress=progress
        )
        return job.finish(), [float(done[len(job.tasks)])]
    tif = to_geotiff(fine, output, overwrite=overwrite, cog=cog, compute=False)
    done = compute_in_strips([tif, *also], [fine.data], strip_bytes=strip_bytes, progress=progress)
    return done[0], [float(done[1])]
