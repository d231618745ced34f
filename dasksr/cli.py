"""The ``dasksr`` command: parse, call the library, report. User errors print one line, exit 2."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import click

from dasksr.errors import DasksrError, InputError, InvalidArgumentError

__all__ = ["main", "cli", "MIN_CHUNK"]

#: The smallest ``--chunks`` accepted. Each block costs about 25 ms of scheduling, window reads
#: and a write on top of its pixels, as much as the upscaling of a 160 x 160 block: below 128
#: pixels the job mostly waits on that (docs/cli.md has the measurements).
MIN_CHUNK = 128


class ScaleType(click.ParamType):
    """An integer scale factor; ``2.0`` is accepted, ``1.5`` is not."""

    name = "scale"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        from dasksr.kernels.registry import check_scale

        try:
            number: Any = float(value)
        except (TypeError, ValueError):
            number = value
        return check_scale(number, shown=f"--scale {value!r}")


class ChunkType(click.ParamType):
    """An input chunk edge in pixels, at least `MIN_CHUNK`."""

    name = "integer"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            edge = int(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"--chunks {value!r} is not an integer: give a chunk edge in pixels such as 1024"
            ) from None
        if edge < MIN_CHUNK:
            raise InvalidArgumentError(
                f"--chunks {edge} is below the minimum of {MIN_CHUNK} pixels: such small blocks "
                f"cost more to schedule, read and write than to compute; use {MIN_CHUNK} or more "
                "(default: about 1024)"
            )
        return edge


class BandsType(click.ParamType):
    """1-based band numbers: ``1,3``, ``2-4`` or a mix such as ``1,3-5``, in the order given."""

    name = "bands"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[int]:
        if isinstance(value, list):
            return value
        bands: list[int] = []
        for part in str(value).split(","):
            first, dash, last = part.strip().partition("-")
            try:
                low = int(first)
                high = int(last) if dash else low
            except ValueError:
                raise InvalidArgumentError(
                    f"--bands {value!r} is not a list of band numbers: give 1-based numbers and "
                    "ranges such as 1,3 or 2-4"
                ) from None
            if low < 1 or high < low:
                raise InvalidArgumentError(
                    f"--bands {value!r} has {part.strip()!r}: bands are numbered from 1, and a "
                    "range runs from low to high (2-4)"
                )
            bands.extend(range(low, high + 1))
        return bands


class DtypeType(click.ParamType):
    """An integer or floating-point NumPy dtype name: ``uint8``, ``int16``, ``float32``..."""

    name = "dtype"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        import numpy as np

        try:
            dtype = np.dtype(value)
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind not in "uif":
            raise InvalidArgumentError(
                f"--dtype {value!r} is not an integer or floating-point dtype: use one such as "
                "uint8, uint16, int16, float32"
            )
        return dtype.name


class NodataType(click.ParamType):
    """A nodata value: a number, or ``nan``."""

    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidArgumentError(
                f"--nodata {value!r} is not a number: give the fill value, e.g. 0 or nan"
            ) from None


class ResolutionType(click.ParamType):
    """A positive pixel size in the CRS's units."""

    name = "size"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            size = float(value)
        except (TypeError, ValueError):
            size = float("nan")
        if not size > 0 or size == float("inf"):
            raise InvalidArgumentError(
                f"--resolution {value!r} is not a positive pixel size: give it in the CRS's "
                "units, e.g. 5 for 5 m pixels"
            )
        return size


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dasksr")
def cli() -> None:
    """Seamless chunked super-resolution of large rasters (GeoTIFF/COG, Zarr) with Dask."""


def _output_kind(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in (".tif", ".tiff"):
        return "tif"
    raise InvalidArgumentError(f"output {path!r} has no known extension: end it with .zarr or .tif")


def _run_upscale(
    source: str,
    output: str,
    *,
    scale: int | None,
    method: str,
    chunks: int | None,
    scheduler: str | None,
    workers: int | None,
    overwrite: bool,
    cog: bool,
    progress: bool,
    variable: str | None = None,
    zarr_options: dict[str, Any] | None = None,
    resolution: float | None = None,
    nodata: float | None = None,
    dtype: str | None = None,
    bands: list[int] | None = None,
    report: str | None = None,
) -> tuple[Path, tuple[int, ...], str, float]:
    from dasksr.cluster import THREADS, starting
    from dasksr.kernels import get_method

    kind = _output_kind(output)
    if scale is not None and resolution is not None:
        raise InvalidArgumentError("give --scale or --resolution, not both")
    if scale is not None:
        get_method(method).check_scale(scale)
    if report is not None:
        _check_report(report, scheduler, THREADS)
    if cog and kind != "tif":
        raise InvalidArgumentError("--cog needs a .tif output: change the output extension")
    zarr_options = {k: v for k, v in (zarr_options or {}).items() if v is not None}
    if zarr_options and kind != "zarr":
        flags = ", ".join("--" + k.replace("_", "-") for k in zarr_options)
        raise InvalidArgumentError(f"{flags} needs a .zarr output: change the output extension")
    # Worker processes start while the readers are imported, the input is opened and the graph
    # is built.
    with starting(scheduler, workers=workers):
        from dasksr.api import upscale
        from dasksr.io import open_raster
        from dasksr.io.write import check_not_an_input, prepare_output

        if Path(source).exists():  # a missing input is reported by open_raster
            check_not_an_input([source], output)
        prepare_output(output, overwrite=overwrite)
        data = _checked_raster(open_raster(source, chunks=chunks, variable=variable), source)
        if bands is not None:
            data = _select_bands(data, bands, source)
        if resolution is None:
            options: dict[str, Any] = {"scale": 2 if scale is None else scale}
        else:
            options = {"resolution": resolution}
        fine = upscale(data, method=method, nodata=nodata, dtype=dtype, **options)
        return _write(
            fine,
            output,
            kind=kind,
            scheduler=scheduler,
            workers=workers,
            overwrite=overwrite,
            cog=cog,
            progress=progress,
            zarr_options=zarr_options,
            report=report,
        )


def _write(
    fine: Any,
    output: str,
    *,
    kind: str,
    scheduler: str | None,
    workers: int | None,
    overwrite: bool,
    cog: bool,
    progress: bool,
    zarr_options: dict[str, Any] | None = None,
    report: str | None = None,
) -> tuple[Path, tuple[int, ...], str, float]:
    """Compute and write the lazy ``fine`` on the chosen scheduler; the summary's figures."""
    from dasksr.cluster import connect
    from dasksr.io import to_geotiff
    from dasksr.io.write import zarr_job

    # A report needs a distributed scheduler: the job then never runs on local threads.
    pixels = None if report is not None else math.prod(fine.shape)
    start = time.perf_counter()
    # The store's metadata is written while worker processes may still be starting.
    job = (
        zarr_job(fine, output, overwrite=overwrite, **(zarr_options or {}))
        if kind == "zarr"
        else None
    )
    with connect(scheduler, workers=workers, output_pixels=pixels, on_start=_show_dashboard):
        with _performance_report(report):
            if job is not None:
                path = job.run(progress=progress)
            else:
                path = to_geotiff(fine, output, overwrite=overwrite, cog=cog, progress=progress)
        wall = time.perf_counter() - start
    if report is not None:
        click.echo(f"dasksr: performance report in {report}", err=True)
    return path, tuple(fine.shape), str(fine.dtype), wall


def _select_bands(data: Any, bands: list[int], path: str) -> Any:
    """``data``'s 1-based ``bands`` in that order, with their per-band attributes."""
    if "band" not in data.dims:
        raise InvalidArgumentError(
            f"--bands: input {path!r} has no band dimension ({', '.join(map(str, data.dims))}): "
            "drop --bands"
        )
    count = data.sizes["band"]
    missing = [b for b in bands if b > count]
    if missing:
        raise InvalidArgumentError(
            f"--bands {','.join(map(str, missing))}: input {path!r} has {count} band(s), "
            f"numbered 1..{count}"
        )
    picked = data.isel(band=[b - 1 for b in bands])
    attrs = dict(picked.attrs)
    for key, value in data.attrs.items():  # band names, scales, offsets: one entry per band
        if isinstance(value, (list, tuple)) and len(value) == count:
            attrs[key] = type(value)(value[b - 1] for b in bands)
    picked.attrs = attrs
    return picked


def _check_report(report: str, scheduler: str | None, threads: str) -> None:
    import importlib.util

    if scheduler == threads:
        raise InvalidArgumentError("--report needs a cluster: drop --scheduler threads")
    if importlib.util.find_spec("bokeh") is None:
        raise InvalidArgumentError(
            "--report needs bokeh, which draws the report: pip install 'dasksr[dashboard]'"
        )
    folder = Path(report).absolute().parent
    if not folder.is_dir():
        raise InvalidArgumentError(
            f"--report {report!r}: folder {str(folder)!r} does not exist: create it first"
        )


def _performance_report(report: str | None) -> Any:
    if report is None:
        from contextlib import nullcontext

        return nullcontext()
    from distributed import performance_report

    return performance_report(filename=report)


def _show_dashboard(client: Any) -> None:
    """Print the cluster's dashboard address on stderr (stdout keeps the job's summary)."""
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        click.echo(
            "dasksr: the Dask dashboard needs bokeh: pip install 'dasksr[dashboard]'", err=True
        )
    else:
        click.echo(f"dasksr: Dask dashboard at {client.dashboard_link}", err=True)


def _checked_raster(data: Any, path: str) -> Any:
    """``data`` with its spatial dims set for rioxarray; `InputError` when it has no pixels, and
    `InvalidArgumentError` when its spatial dims cannot be told (`dasksr.api.spatial_dims`)."""
    import rioxarray  # noqa: F401  (the rio accessor)

    from dasksr.api import spatial_dims

    empty = [f"{dim}: 0" for dim, n in data.sizes.items() if n == 0]
    if empty:
        raise InputError(
            f"input {path!r} holds no pixels ({', '.join(empty)}): check the file or the variable"
        )
    ydim, xdim = spatial_dims(data)
    return data.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)


def _summary(path: Path, shape: tuple[int, ...], dtype: str, wall: float) -> str:
    pixels = math.prod(shape)  # every band's pixels, as the benchmarks count them
    rate = pixels / wall / 1e6 if wall > 0 else float("inf")
    dims = " x ".join(map(str, shape))
    return f"wrote {path} ({dims}, {dtype}) in {wall:.2f} s, {rate:.1f} output MPix/s"


_common = [
    click.option(
        "--chunks",
        type=ChunkType(),
        default=None,
        help=f"Input chunk edge in pixels, at least {MIN_CHUNK} (default: ~1024, aligned to the "
        "file's tiles).",
    ),
    click.option(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="Address of a running `dask scheduler`, or `threads` for Dask's threaded scheduler "
        "in this process (default: threads for outputs up to 3 x 4096 x 4096 pixels, else an "
        "embedded LocalCluster).",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Worker processes of an embedded LocalCluster, started whatever the job's size "
        "(default: 1 with a thread per core).",
    ),
    click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: when the terminal is interactive).",
    ),
]


def _with_common(f: Any) -> Any:
    for option in reversed(_common):
        f = option(f)
    return f


@cli.command()
@click.argument("source", metavar="INPUT")
@click.argument("output")
@click.option(
    "--scale",
    "-s",
    type=ScaleType(),
    default=None,
    help="Integer upscaling factor.  [default: 2]",
)
@click.option(
    "--resolution",
    type=ResolutionType(),
    default=None,
    help="Output pixel size in the CRS's units, instead of --scale (the input's pixel size "
    "divided by an integer).",
)
@click.option(
    "--method",
    "-m",
    default="bicubic",
    show_default=True,
    help="Reconstruction method (see `dasksr methods`).",
)
@click.option(
    "--nodata",
    type=NodataType(),
    default=None,
    help="The input's fill value, replacing its nodata tag (Landsat 8 files have 0-fill and no "
    "tag); also the output's nodata.",
)
@click.option(
    "--dtype",
    type=DtypeType(),
    default=None,
    help="Output dtype, e.g. float32 (default: the input's). Integers are rounded and clipped.",
)
@click.option(
    "--bands",
    type=BandsType(),
    default=None,
    help="Input bands to upscale, numbered from 1: e.g. 1,3 or 2-4 (default: all).",
)
@click.option("--variable", default=None, help="Variable to read from a Zarr input.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF with overviews.")
@click.option(
    "--zarr-format",
    type=click.Choice(["2", "3"]),
    default=None,
    help="Zarr format of a .zarr output (default: 2, which GDAL, rasterio and QGIS open; "
    "3 needs GDAL 3.11+).",
)
@click.option(
    "--compress-level",
    "compression_level",
    type=int,
    default=None,
    help="Compression level of a .zarr output: 0-9 for Blosc zstd (default: 1).",
)
@click.option(
    "--report",
    metavar="FILE",
    default=None,
    help="Write a Dask performance report (HTML) to FILE; runs the job on a cluster.",
)
@_with_common
def upscale(
    source: str,
    output: str,
    scale: int | None,
    resolution: float | None,
    method: str,
    nodata: float | None,
    dtype: str | None,
    bands: list[int] | None,
    variable: str | None,
    overwrite: bool,
    cog: bool,
    zarr_format: str | None,
    compression_level: int | None,
    report: str | None,
    chunks: int | None,
    scheduler: str | None,
    workers: int | None,
    progress: bool | None,
) -> None:
    """Super-resolve INPUT (GeoTIFF/COG or Zarr, a path or an http(s)://, s3:// or /vsi URL)
    into OUTPUT (.zarr or .tif)."""
    show = sys.stderr.isatty() if progress is None else progress
    result = _run_upscale(
        source,
        output,
        scale=scale,
        method=method,
        chunks=chunks,
        scheduler=scheduler,
        workers=workers,
        overwrite=overwrite,
        cog=cog,
        progress=show,
        variable=variable,
        zarr_options={
            "zarr_format": None if zarr_format is None else int(zarr_format),
            "compression_level": compression_level,
        },
        resolution=resolution,
        nodata=nodata,
        dtype=dtype,
        bands=bands,
        report=report,
    )
    click.echo(_summary(*result))


@cli.command()
@click.argument("paths", nargs=-1, required=True, metavar="FRAME... OUTPUT")
@click.option(
    "--scale", "-s", type=ScaleType(), default=2, show_default=True, help="Integer factor."
)
@click.option(
    "--reference",
    type=int,
    default=0,
    show_default=True,
    help="Index of the frame whose grid and radiometry the output takes.",
)
@click.option(
    "--method",
    "-m",
    type=click.Choice(["ibp", "kernel"]),
    default="ibp",
    show_default=True,
    help="Robust fusion then back-projection (ibp), or the fusion alone (kernel).",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=0, max=64),
    default=None,
    help="Back-projection iterations of ibp [default: chosen per scene, 0-16, by leaving one "
    "frame out].",
)
@click.option(
    "--masks",
    "mask_paths",
    multiple=True,
    metavar="MASK",
    help="One mask raster per frame, in order (non-zero = invalid); repeat the option.",
)
@click.option(
    "--mask-band",
    type=click.IntRange(min=1),
    default=None,
    help="1-based band of every frame that is its mask (non-zero = invalid), not fused.",
)
@click.option("--variable", default=None, help="Variable to read from a Zarr input.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@_with_common
def fuse(
    paths: tuple[str, ...],
    scale: int,
    reference: int,
    method: str,
    iterations: int | None,
    mask_paths: tuple[str, ...],
    mask_band: int | None,
    variable: str | None,
    overwrite: bool,
    chunks: int | None,
    scheduler: str | None,
    workers: int | None,
    progress: bool | None,
) -> None:
    """Fuse frames of the same ground (GeoTIFFs, or one Zarr with a time dim) into OUTPUT."""
    import warnings

    from dasksr.cluster import starting
    from dasksr.io.write import check_not_an_input, prepare_output
    from dasksr.multiframe import FrameDroppedWarning
    from dasksr.multiframe import fuse as fuse_stack

    if len(paths) < 2:
        raise InvalidArgumentError("give the frames and then the output: FRAME... OUTPUT")
    if iterations is not None and method != "ibp":
        raise InvalidArgumentError("--iterations is for --method ibp: drop it, or use ibp")
    *frames, output = paths
    kind = _output_kind(output)
    check_not_an_input([p for p in (*frames, *mask_paths) if Path(p).exists()], output)
    prepare_output(output, overwrite=overwrite)
    # Worker processes start while the frames are opened and registered.
    with starting(scheduler, workers=workers):
        stack, masks = _open_stack(frames, mask_paths, mask_band, chunks=chunks, variable=variable)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FrameDroppedWarning)
            try:
                fine = fuse_stack(
                    stack,
                    scale,
                    masks=masks,
                    reference=reference,
                    method=method,
                    iterations=iterations,
                )
            finally:  # the dropped frames are named before an error that they cause
                for w in caught:
                    if issubclass(w.category, FrameDroppedWarning):
                        click.echo(f"dasksr: warning: {_one_line(str(w.message))}", err=True)
        show = sys.stderr.isatty() if progress is None else progress
        result = _write(
            fine,
            output,
            kind=kind,
            scheduler=scheduler,
            workers=workers,
            overwrite=overwrite,
            cog=False,
            progress=show,
        )
    shifts = ", ".join(
        f"{label} ({dy:+.3f}, {dx:+.3f})"
        for label, dy, dx in zip(
            fine.attrs["fuse_frames"],
            fine.attrs["fuse_shift_y"],
            fine.attrs["fuse_shift_x"],
            strict=True,
        )
    )
    done = fine.attrs["fuse_method"]
    if done == "ibp":
        done += f", {fine.attrs['fuse_iterations']} iterations"
    click.echo(f"{_summary(*result)} by {done}; shifts (dy, dx) in input px: {shifts}")


def _open_stack(
    frames: list[str],
    mask_paths: tuple[str, ...],
    mask_band: int | None,
    *,
    chunks: int | None,
    variable: str | None,
) -> tuple[Any, Any]:
    """The frames as one ``(time, band, y, x)`` DataArray and the masks (or None)."""
    import xarray as xr

    from dasksr.io import open_raster

    if len(frames) == 1:
        stack = _checked_raster(open_raster(frames[0], chunks=chunks, variable=variable), frames[0])
        if "time" not in stack.dims:
            raise InvalidArgumentError(
                f"{frames[0]} is one frame: fuse needs at least 2 (for a single image use upscale)"
            )
    else:
        opened = [
            _checked_raster(open_raster(f, chunks=chunks, variable=variable), f) for f in frames
        ]
        first = opened[0]
        for path, data in zip(frames[1:], opened[1:], strict=True):
            difference = _grid_difference(first, data)
            if difference:
                raise InvalidArgumentError(
                    f"frame {path} is not on the grid of {frames[0]}: {difference}; "
                    "resample the frames to one grid first"
                )
        labels = [Path(f).stem for f in frames]
        stack = xr.concat(opened, dim="time", combine_attrs="override", join="override")
        stack = stack.assign_coords(time=labels)
    masks = None
    if mask_band is not None:
        bands = stack.sizes.get("band", 1)
        if "band" not in stack.dims or mask_band > bands:
            raise InvalidArgumentError(
                f"--mask-band {mask_band} is not a band of the frames ({bands} band(s))"
            )
        if bands < 2:
            raise InvalidArgumentError(
                f"--mask-band {mask_band}: the frames need a band besides the mask band"
            )
        masks = stack.isel(band=mask_band - 1, drop=True) != 0
        stack = stack.drop_isel(band=mask_band - 1)
    if mask_paths:
        if len(mask_paths) != stack.sizes["time"]:
            raise InvalidArgumentError(
                f"{len(mask_paths)} mask(s) for {stack.sizes['time']} frames: give one --masks "
                "per frame"
            )
        opened = [open_raster(m, chunks=chunks) for m in mask_paths]
        squeezed = []
        for path, m in zip(mask_paths, opened, strict=True):
            if m.shape[-2:] != stack.shape[-2:]:
                raise InvalidArgumentError(
                    f"mask {path} is {m.shape[-1]} x {m.shape[-2]} pixels but the frames are "
                    f"{stack.shape[-1]} x {stack.shape[-2]}: give masks on the frames' grid"
                )
            if "band" in m.dims:
                if m.sizes["band"] != 1:
                    raise InvalidArgumentError(
                        f"mask {path} has {m.sizes['band']} bands: give single-band masks"
                    )
                m = m.squeeze("band", drop=True)
            squeezed.append(m)
        from_files = xr.concat([m != 0 for m in squeezed], dim="time")
        from_files = from_files.assign_coords(time=stack["time"].values)
        masks = from_files if masks is None else masks | from_files
    return stack, masks


def _grid_difference(first: Any, other: Any) -> str:
    """What differs between the grids of two rasters (empty when they share one)."""
    if first.shape[-2:] != other.shape[-2:]:
        return (
            f"size {other.shape[-1]} x {other.shape[-2]} instead of "
            f"{first.shape[-1]} x {first.shape[-2]}"
        )
    if first.rio.crs != other.rio.crs:
        return f"CRS {other.rio.crs} instead of {first.rio.crs}"
    a, b = first.rio.transform(), other.rio.transform()
    if not a.almost_equals(b):
        return f"transform ({_affine(b)}) instead of ({_affine(a)})"
    if first.shape != other.shape:
        return f"{other.shape[0]} band(s) instead of {first.shape[0]}"
    return ""


def _affine(transform: Any) -> str:
    return ", ".join(_number(v) for v in tuple(transform)[:6])


@cli.command()
def methods() -> None:
    """List the registered methods with their scales and halos."""
    from dasksr.kernels import list_methods

    rows = [("method", "scales", "halo (input px)", "description")]
    for m in list_methods():
        halos = sorted({m.halo(s) for s in m.scales})
        halo = str(halos[0]) if len(halos) == 1 else f"{halos[0]}..{halos[-1]}"
        s = sorted(m.scales)
        contiguous = s == list(range(s[0], s[-1] + 1)) and len(s) > 2
        scales = f"{s[0]}..{s[-1]}" if contiguous else ",".join(map(str, s))
        rows.append((m.name, scales, halo, m.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])


def _number(value: float) -> str:
    """A coordinate as Python writes it back exactly (``%g`` shows 5000047.5 as 5.00005e+06)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@cli.command()
@click.argument("path")
@click.option("--variable", default=None, help="Variable to read from a Zarr store.")
def info(path: str, variable: str | None) -> None:
    """Print shape, dtype, bands, chunks, CRS, transform and nodata of a raster."""
    from dasksr.io import open_raster

    data = _checked_raster(open_raster(path, variable=variable), path)
    transform = data.rio.transform()
    bands = data.attrs.get("long_name")
    lines = {
        "path": path,
        "dims": ", ".join(f"{d}: {n}" for d, n in data.sizes.items()),
        "dtype": str(data.dtype),
        "bands": ", ".join(map(str, bands)) if isinstance(bands, (list, tuple)) else (bands or "-"),
        "chunks": _stored_chunks(data),
        "read as": " x ".join(str(c[0]) for c in data.chunks) if data.chunks else "-",
        "crs": str(data.rio.crs) if data.rio.crs is not None else "none",
        "transform": ", ".join(_number(v) for v in tuple(transform)[:6]),
        "resolution": ", ".join(_number(abs(v)) for v in data.rio.resolution()),
        "bounds": ", ".join(_number(v) for v in data.rio.bounds()),
        "nodata": str(data.rio.nodata),
    }
    for key, value in lines.items():
        click.echo(f"{key + ':':<12}{value}")


def _stored_chunks(data: Any) -> str:
    """The chunking of the file or store itself (GeoTIFF tiles or strips, Zarr chunks)."""
    stored = data.encoding.get("preferred_chunks") or {}
    if not stored:
        return "-"
    return " x ".join(str(stored.get(d, n)) for d, n in data.sizes.items())


@cli.command()
@click.argument("folder", default="dasksr-demo", required=False)
@click.option("--scale", "-s", type=ScaleType(), default=2, show_default=True)
@click.option("--method", "-m", default="bicubic", show_default=True)
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=1024,
    show_default=True,
    help="Edge of the demo scene in pixels.",
)
@click.option(
    "--overwrite/--no-overwrite",
    default=True,
    show_default=True,
    help="Replace earlier demo outputs in FOLDER.",
)
@_with_common
def demo(
    folder: str,
    scale: int,
    method: str,
    size: int,
    overwrite: bool,
    chunks: int | None,
    scheduler: str | None,
    workers: int | None,
    progress: bool | None,
) -> None:
    """Make a 3-band uint16 GeoTIFF with CRS and nodata, upscale it, write Zarr and GeoTIFF."""
    from dasksr.demo import write_demo_scene

    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot create demo folder {folder!r} ({exc.strerror}): choose another"
        ) from None
    source = write_demo_scene(out / "scene.tif", size=size)
    click.echo(f"input:  {source} ({size} x {size}, 3 bands, uint16, EPSG:32633, nodata 0)")
    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    for name in (f"scene_x{scale}.zarr", f"scene_x{scale}.tif"):
        result = _run_upscale(
            str(source),
            str(out / name),
            scale=scale,
            method=method,
            chunks=chunks or 256,
            scheduler=scheduler,
            workers=workers,
            overwrite=overwrite,
            cog=False,
            progress=show,
        )
        click.echo(_summary(*result))
    click.echo(f"demo done in {time.perf_counter() - start:.1f} s: outputs in {out.resolve()}")


@cli.command()
@click.option(
    "--hr",
    required=True,
    metavar="GLOB",
    help="Ground-truth images, e.g. 'Set5/*_HR.png' (quote it).",
)
@click.option(
    "--scale", "-s", type=ScaleType(), default=2, show_default=True, help="Super-resolution factor."
)
@click.option(
    "--method",
    "-m",
    default="bicubic",
    show_default=True,
    help="Reconstruction method (see `dasksr methods`).",
)
@click.option(
    "--lr",
    default=None,
    metavar="GLOB",
    help="Low-resolution inputs paired with --hr in sorted order "
    "(default: MATLAB-compatible imresize of the mod-cropped --hr images).",
)
@click.option(
    "--json",
    "json_path",
    default=None,
    metavar="PATH",
    help="Also write the results as JSON to PATH.",
)
def evaluate(hr: str, scale: int, method: str, lr: str | None, json_path: str | None) -> None:
    """PSNR/SSIM (Y channel, border = scale) of a method on an image set, as published tables."""
    from dasksr.evaluate import evaluate_images, format_table, write_json

    result = evaluate_images(hr, scale=scale, method=method, lr=lr)
    click.echo(f"{result['method']} x{result['scale']}, {len(result['images'])} image(s)")
    click.echo(format_table(result))
    if json_path is not None:
        click.echo(f"wrote {write_json(result, json_path)}")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dasksr`` console script; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # Not cli.main(): on Ctrl-C it prints an empty line before the caller can say anything.
        with cli.make_context("dasksr", args) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(
            "dasksr: interrupted: the output was not finished (a Zarr job resumes when run again)",
            err=True,
        )
        return 130
    except click.ClickException as exc:
        click.echo(f"dasksr: error: {_one_line(exc.format_message())}", err=True)
        return 2
    except DasksrError as exc:
        click.echo(f"dasksr: error: {_one_line(str(exc))}", err=True)
        return 2
    except Exception as exc:
        if not isinstance(exc, (OSError, *_rasterio_errors())):
            raise
        # Readers and writers name their file; an error that reaches here has no side to name.
        click.echo(f"dasksr: error: {_one_line(str(exc))}", err=True)
        return 2
    return 0


def _rasterio_errors() -> tuple[type[Exception], ...]:
    """rasterio's error class when rasterio was imported (else none was raised): ``--help`` does
    not import it."""
    errors = sys.modules.get("rasterio.errors")
    return () if errors is None else (errors.RasterioError,)


def run() -> None:
    """The console script: `main`, then an exit that skips the interpreter's teardown.

    Freeing the modules of NumPy, Dask, xarray, GDAL and Numba one by one takes 0.1 to 0.7 s
    after the job is done, as long as a small job itself. The exit handlers still run (logging,
    distributed) and the standard streams are flushed; every file the job wrote is closed by
    then.
    """
    import atexit
    import os

    status = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    run()
