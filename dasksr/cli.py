"""The ``dasksr`` command: parse, call the library, report. User errors print one line, exit 2."""

from __future__ import annotations

import sys
from typing import Any

import click

from dasksr.errors import DasksrError, InvalidArgumentError

__all__ = ["main", "cli", "MIN_CHUNK"]

#: The smallest ``--chunks`` accepted. Each block costs about 25 ms of scheduling, window reads
#: and a write on top of its pixels, as much as the upscaling of a 160 x 160 block: below 128
#: pixels the job mostly waits on that (docs/cli.md has the measurements).
MIN_CHUNK = 128


class _Parsed(click.ParamType):
    """An option's value made by `parse`: the TypeError or ValueError that `parse` raises becomes
    one line, ``{flag} {value!r} {problem}``; dasksr's own errors pass as they are."""

    flag = ""
    problem = ""

    def parse(self, value: Any) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.parse(value)
        except DasksrError:
            raise
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"{self.flag} {value!r} {self.problem}") from None


class ScaleType(_Parsed):
    """An integer scale factor; ``2.0`` is accepted, ``1.5`` is not."""

    name = "scale"

    def parse(self, value: Any) -> int:
        from dasksr.kernels.method import check_scale

        try:
            number: Any = float(value)
        except (TypeError, ValueError):
            number = value
        return check_scale(number, shown=f"--scale {value!r}")


class ChunkType(_Parsed):
    """An input chunk edge in pixels, at least `MIN_CHUNK`."""

    name, flag = "integer", "--chunks"
    problem = "is not an integer: give a chunk edge in pixels such as 1024"

    def parse(self, value: Any) -> int:
        edge = int(value)
        if edge < MIN_CHUNK:
            raise InvalidArgumentError(
                f"--chunks {edge} is below the minimum of {MIN_CHUNK} pixels: such small blocks "
                f"cost more to schedule, read and write than to compute; use {MIN_CHUNK} or more "
                "(default: about 1024)"
            )
        return edge


class BandsType(_Parsed):
    """1-based band numbers: ``1,3``, ``2-4`` or a mix such as ``1,3-5``, in the order given."""

    name, flag = "bands", "--bands"
    problem = "is not a list of band numbers: give 1-based numbers and ranges such as 1,3 or 2-4"

    def parse(self, value: Any) -> list[int]:
        if isinstance(value, list):
            return value
        bands: list[int] = []
        for part in str(value).split(","):
            first, dash, last = part.strip().partition("-")
            low = int(first)
            high = int(last) if dash else low
            if low < 1 or high < low:
                raise InvalidArgumentError(
                    f"--bands {value!r} has {part.strip()!r}: bands are numbered from 1, and a "
                    "range runs from low to high (2-4)"
                )
            bands.extend(range(low, high + 1))
        return bands


class DtypeType(_Parsed):
    """An integer or floating-point NumPy dtype name: ``uint8``, ``int16``, ``float32``..."""

    name, flag = "dtype", "--dtype"
    problem = (
        "is not an integer or floating-point dtype: use one such as uint8, uint16, int16, float32"
    )

    def parse(self, value: Any) -> str:
        import numpy as np

        dtype = np.dtype(value)
        if dtype.kind not in "uif":
            raise ValueError(dtype)
        return dtype.name


class NodataType(_Parsed):
    """A nodata value: a number, or ``nan``."""

    name, flag = "number", "--nodata"
    problem = "is not a number: give the fill value, e.g. 0 or nan"

    def parse(self, value: Any) -> float:
        return float(value)


class ResolutionType(_Parsed):
    """A positive pixel size in the CRS's units."""

    name, flag = "size", "--resolution"
    problem = "is not a positive pixel size: give it in the CRS's units, e.g. 5 for 5 m pixels"

    def parse(self, value: Any) -> float:
        size = float(value)
        if not 0 < size < float("inf"):
            raise ValueError(size)
        return size


class SchedulerType(_Parsed):
    """``threads`` or a scheduler's address (`dasksr.cluster.check_scheduler`); not contacted."""

    name = "address"

    def parse(self, value: Any) -> str:
        from dasksr.cluster import check_scheduler

        return check_scheduler(str(value))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dasksr")
def cli() -> None:
    """Seamless chunked super-resolution of large rasters (GeoTIFF/COG, Zarr) with Dask."""


def _stderr(message: str) -> None:
    click.echo(message, err=True)


_common = [
    click.option(
        "--chunks",
        type=ChunkType(),
        help=f"Input chunk edge in pixels, at least {MIN_CHUNK} (default: ~1024, aligned to the "
        "file's tiles).",
    ),
    click.option(
        "--scheduler",
        type=SchedulerType(),
        metavar="ADDRESS",
        help="Address of a running `dask scheduler`, or `threads` for Dask's threaded scheduler "
        "in this process (default: threads for outputs up to 3 x 16384 x 16384 pixels, else an "
        "embedded LocalCluster).",
    ),
    click.option(
        "--workers",
        type=click.IntRange(min=1),
        help="Worker processes of an embedded LocalCluster, started whatever the job's size "
        "(default: 1 with a thread per core).",
    ),
    click.option(
        "--progress/--no-progress",
        default=None,
        help="Show a progress bar (default: when the terminal is interactive).",
    ),
]


def _parsed(kind: type[_Parsed], help: str) -> Any:
    """The option of a `_Parsed` type, under the flag its messages name."""
    return click.option(kind.flag, type=kind(), help=help)


_method = click.option(
    "--method",
    "-m",
    default="bicubic",
    show_default=True,
    help="Reconstruction method (see `dasksr methods`).",
)
_variable = click.option("--variable", default=None, help="Variable to read from a Zarr input.")
_assets = click.option(
    "--assets", metavar="KEYS", help="Bands of a STAC item INPUT: asset keys or band names."
)
_overwrite = click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
_consistency = click.option(
    "--consistency",
    metavar="PATH",
    help="Also write, per input pixel, the input minus the output degraded again by the "
    "method's own model (.zarr or .tif on the input grid): where detail was invented.",
)


def _with_common(f: Any) -> Any:
    for option in reversed(_common):
        f = option(f)
    return f


@cli.command()
@click.argument("source", metavar="INPUT")
@click.argument("output")
@click.option("--scale", "-s", type=ScaleType(), help="Integer upscaling factor.  [default: 2]")
@_parsed(
    ResolutionType,
    "Output pixel size in the CRS's units, instead of --scale (the input's pixel size "
    "divided by an integer).",
)
@_method
@_parsed(
    NodataType,
    "The input's fill value, replacing its nodata tag (Landsat 8 files have 0-fill and no "
    "tag); also the output's nodata.",
)
@_parsed(
    DtypeType,
    "Output dtype, e.g. float32 (default: the input's). Integers are rounded and clipped.",
)
@_parsed(
    BandsType,
    "Input bands to upscale, numbered from 1: e.g. 1,3 or 2-4 (default: all).",
)
@_variable
@_assets
@_overwrite
@_consistency
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF with overviews.")
@click.option(
    "--zarr-format",
    type=click.Choice(["2", "3"]),
    help="Zarr format of a .zarr output (default: 2, which GDAL, rasterio and QGIS open; "
    "3 needs GDAL 3.11+).",
)
@click.option(
    "--compress-level",
    "compression_level",
    type=int,
    help="Compression level of a .zarr output: 0-9 for Blosc zstd (default: 1).",
)
@click.option("--report", metavar="FILE", help="Write a Dask performance report (HTML) to FILE.")
@_with_common
def upscale(
    source: str, output: str, zarr_format: str | None, compression_level: int | None, **options: Any
) -> None:
    """Super-resolve INPUT (GeoTIFF/COG, Zarr or STAC item, a path or an http(s)://, s3:// or
    /vsi URL) into OUTPUT (.zarr or .tif)."""
    from dasksr.report import summary, upscale_file

    zarr_options = {
        "zarr_format": None if zarr_format is None else int(zarr_format),
        "compression_level": compression_level,
    }
    written = upscale_file(source, output, zarr_options=zarr_options, notify=_stderr, **options)
    click.echo(summary(written))


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
    "--solver",
    type=click.Choice(["ibp", "kernel"]),
    default="ibp",
    show_default=True,
    help="Robust fusion then back-projection (ibp), or the fusion alone (kernel).",
)
@click.option("--method", "-m", "old_solver", type=click.Choice(["ibp", "kernel"]), hidden=True)
@click.option(
    "--iterations",
    type=click.IntRange(min=0, max=64),
    help="Back-projection iterations of ibp [default: chosen per scene, 0-16, by leaving one "
    "frame out].",
)
@click.option(
    "--masks",
    "mask_paths",
    multiple=True,
    metavar="MASK",
    help="One mask or quality raster per frame, in order (read by --mask-rule); repeat it.",
)
@click.option("--mask-band", type=click.IntRange(min=1), help="1-based mask band of every frame.")
@click.option("--mask-rule", default="auto", help="nonzero, scl, qa_pixel, bqa, classes:, bits:")
@click.option("--fallback", default="auto", help="Single-image method (cnn-sensor, else lanczos).")
@_variable
@_overwrite
@_consistency
@_with_common
def fuse(
    paths: tuple[str, ...],
    solver: str,
    old_solver: str | None,
    iterations: int | None,
    mask_paths: tuple[str, ...],
    **options: Any,
) -> None:
    """Fuse frames of the same ground (GeoTIFFs, or one Zarr with a time dim) into OUTPUT."""
    from dasksr.report import fuse_files, fuse_summary

    flag = "--solver"
    if old_solver is not None:  # the option's name until 0.1
        solver, flag = old_solver, "--method"
        _stderr("dasksr: warning: --method of fuse is deprecated: use --solver")
    if len(paths) < 2:
        raise InvalidArgumentError("give the frames and then the output: FRAME... OUTPUT")
    if iterations is not None and solver != "ibp":
        raise InvalidArgumentError(f"--iterations is for {flag} ibp: drop it, or use ibp")
    *frames, output = paths
    written, fine = fuse_files(
        frames,
        output,
        solver=solver,
        iterations=iterations,
        masks=mask_paths,
        notify=_stderr,
        **options,
    )
    click.echo(fuse_summary(written, fine))


_SHARPEN_ARGS = "BAND... --guide GUIDE... OUTPUT"
_SHARPEN_METHOD = "glp (any sensor) or cnn-s2 (Sentinel-2 20 m and 60 m bands, named)."


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("paths", nargs=-1, required=True, type=click.UNPROCESSED, metavar=_SHARPEN_ARGS)
@click.option("--method", "-m", default="glp", show_default=True, help=_SHARPEN_METHOD)
@_parsed(NodataType, "The bands' fill value, replacing their nodata tag; also the output's.")
@click.option("--guide-nodata", type=float, help="The guide's fill value, replacing its tag.")
@_variable
@_assets
@click.option("--guide-assets", metavar="KEYS", help="The guide bands of a STAC item INPUT.")
@_overwrite
@_consistency
@click.option("--cog", is_flag=True, help="Write a Cloud-Optimized GeoTIFF with overviews.")
@click.option("--report", metavar="FILE", help="Write a Dask performance report (HTML) to FILE.")
@_with_common
def sharpen(paths: tuple[str, ...], **options: Any) -> None:
    """Put every BAND on the grid of the sharper GUIDE bands (Sentinel-2 20/60 m to 10 m,
    pan-sharpening) into OUTPUT (.zarr or .tif); each side one or several files, or
    ITEM OUTPUT --assets BANDS --guide-assets GUIDES from a STAC item."""
    from dasksr.report import sharpen_files, split_sharpen_paths, summary

    coarse, guide, output = split_sharpen_paths(paths, options["assets"], options["guide_assets"])
    click.echo(summary(sharpen_files(coarse, guide, output, notify=_stderr, **options)))


@cli.command()
def methods() -> None:
    """List the registered methods with their scales and halos."""
    from dasksr.report import methods_table

    for line in methods_table():
        click.echo(line)


@cli.command()
@click.argument("path")
@click.option("--variable", default=None, help="Variable to read from a Zarr store.")
def info(path: str, variable: str | None) -> None:
    """Print shape, dtype, bands, chunks, CRS, transform and nodata of a raster."""
    from dasksr.report import describe_raster

    for key, value in describe_raster(path, variable=variable).items():
        click.echo(f"{key + ':':<12}{value}")


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
def demo(folder: str, **options: Any) -> None:
    """Make a 3-band uint16 GeoTIFF with CRS and nodata, upscale it, write Zarr and GeoTIFF."""
    from dasksr.demo import run_demo

    run_demo(folder, say=click.echo, **options)


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
@_method
@click.option(
    "--lr",
    metavar="GLOB",
    help="Low-resolution inputs paired with --hr in sorted order "
    "(default: MATLAB-compatible imresize of the mod-cropped --hr images).",
)
@click.option(
    "--json",
    "json_path",
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dasksr`` console script; returns the exit status."""
    from dasksr.report import interrupted_line, library_errors, one_line

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # Not cli.main(): on Ctrl-C it prints an empty line before the caller can say anything.
        with cli.make_context("dasksr", args) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        click.echo(interrupted_line(exc), err=True)
        return 130
    except click.ClickException as exc:
        click.echo(f"dasksr: error: {one_line(exc.format_message())}", err=True)
        return 2
    except DasksrError as exc:
        click.echo(f"dasksr: error: {one_line(str(exc))}", err=True)
        return 2
    except Exception as exc:
        if not isinstance(exc, (OSError, *library_errors())):
            raise
        # Readers and writers name their file; an error that reaches here has no side to name.
        click.echo(f"dasksr: error: {one_line(str(exc))}", err=True)
        return 2
    return 0


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
