"""Jobs from files to an output file, and what is said of them.

`upscale_file` and `fuse_files` open the input, build the result and write it on the chosen
scheduler, with the Dask dashboard's address and an optional performance report; the summary
line, the description of a raster and the table of methods are made here too. The command line
only parses its options, calls these and prints what they return. Notes for the user go to
stderr (``notify``), so that stdout keeps the results.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict, Unpack

from dasksr.errors import DasksrError, InvalidArgumentError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "Written",
    "RunOptions",
    "upscale_file",
    "fuse_files",
    "write_output",
    "output_kind",
    "check_report",
    "summary",
    "fuse_summary",
    "describe_raster",
    "methods_table",
    "one_line",
    "Interrupted",
    "interrupted_line",
]

Notify = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Written(NamedTuple):
    """What a job wrote: the output's path, shape and dtype, the seconds it took, and the RMS of
    its consistency residual with the model that gave it (`dasksr.consistency`), when measured."""

    path: Path | str
    shape: tuple[int, ...]
    dtype: str
    wall: float
    consistency: float | None = None
    model: str = ""


class Interrupted(KeyboardInterrupt):
    """A job stopped by Ctrl-C while it wrote its output; ``kind`` is `output_kind`'s."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def interrupted_line(exc: BaseException) -> str:
    """The line that says what an interruption left: a Zarr job resumes, a GeoTIFF is not there."""
    line = "dasksr: interrupted: the output was not finished"
    kind = getattr(exc, "kind", None)
    if kind == "zarr":
        return f"{line} (a Zarr job resumes when run again)"
    if kind == "tif":
        return f"{line} (nothing was written: run the job again)"
    return line


def output_kind(path: str) -> str:
    """``'zarr'`` or ``'tif'`` from the output's extension; `InvalidArgumentError` for others."""
    suffix = Path(path).suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in (".tif", ".tiff"):
        return "tif"
    raise InvalidArgumentError(f"output {path!r} has no known extension: end it with .zarr or .tif")


class RunOptions(TypedDict, total=False):
    """Where a job runs and how it reports, as `write_output` takes them."""

    #: A running ``dask scheduler``'s address, or ``"threads"`` (`dasksr.cluster.connect`).
    scheduler: str | None
    #: Worker processes of an embedded LocalCluster.
    workers: int | None
    #: Replace the output if it exists.
    overwrite: bool
    #: Show a progress bar; None: when stderr is a terminal.
    progress: bool | None
    #: Where the notes for the user go (default: stderr).
    notify: Notify


def _write_options(
    kind: str, cog: bool, report: str | None, zarr_options: dict[str, Any] | None, run: RunOptions
) -> dict[str, Any]:
    """Check the writing options against the output's kind; the Zarr options that were given."""
    if report is not None:
        check_report(report, run.get("scheduler"))
    if cog and kind != "tif":
        raise InvalidArgumentError("--cog needs a .tif output: change the output extension")
    zarr_options = {k: v for k, v in (zarr_options or {}).items() if v is not None}
    if zarr_options and kind != "zarr":
        flags = ", ".join("--" + k.replace("_", "-") for k in zarr_options)
        raise InvalidArgumentError(f"{flags} needs a .zarr output: change the output extension")
    return zarr_options


def upscale_file(
    source: str,
    output: str,
    *,
    scale: int | None = None,
    method: str = "bicubic",
    resolution: float | None = None,
    nodata: float | None = None,
    dtype: str | None = None,
    bands: Sequence[int] | None = None,
    variable: str | None = None,
    chunks: int | None = None,
    cog: bool = False,
    zarr_options: dict[str, Any] | None = None,
    report: str | None = None,
    assets: str | None = None,
    consistency: str | None = None,
    **run: Unpack[RunOptions],
) -> Written:
    """Upscale the raster at ``source`` into ``output`` (.zarr or .tif), as ``dasksr upscale``.

    Every option is checked before anything is read or written; ``scale`` (default 2) and
    ``resolution`` exclude each other. A STAC item (``.json``, or any ``source`` with
    ``assets``) gives the bands that ``assets`` names (`dasksr.io.stac.open_item`). ``run``
    says where the job runs (`RunOptions`); ``consistency`` is where the residual raster goes
    (`dasksr.consistency`; .zarr or .tif).
    """
    from dasksr.methods import get_method

    kind = output_kind(output)
    if scale is not None and resolution is not None:
        raise InvalidArgumentError("give --scale or --resolution, not both")
    if scale is not None:
        get_method(method).check_scale(scale)
    zarr_options = _write_options(kind, cog, report, zarr_options, run)

    notify = run.get("notify", _stderr)

    def build() -> tuple[xr.DataArray, Any]:
        from dasksr.api import upscale
        from dasksr.consistency import upscale_check
        from dasksr.frames import select_bands

        with _notes(notify):
            data = _open_input(source, assets, chunks=chunks, variable=variable, nodata=nodata)
        if bands is not None:
            data = select_bands(data, bands, path=source)
        if resolution is None:
            options: dict[str, Any] = {"scale": 2 if scale is None else scale}
        else:
            options = {"resolution": resolution}
        fine = upscale(data, method=method, nodata=nodata, dtype=dtype, **options)
        check = upscale_check(fine, data, method, fine.shape[-1] // data.shape[-1])
        return _as_georeferenced(fine, data), check

    write = {"kind": kind, "cog": cog, "zarr_options": zarr_options, "report": report}
    return _job(output, [source], build, run, write, consistency=consistency)[0]


def fuse_files(
    frames: Sequence[str],
    output: str,
    *,
    scale: int = 2,
    reference: int = 0,
    solver: str = "ibp",
    iterations: int | None = None,
    masks: Sequence[str] = (),
    mask_band: int | None = None,
    mask_rule: str = "auto",
    fallback: str = "auto",
    variable: str | None = None,
    chunks: int | None = None,
    consistency: str | None = None,
    **run: Unpack[RunOptions],
) -> tuple[Written, xr.DataArray]:
    """Fuse the frames (`dasksr.open_stack`) into ``output``, as ``dasksr fuse``.

    The frames that `dasksr.fuse` drops are named through ``notify``, before an error that their
    loss causes. Returns what was written and the lazy result, whose attributes say what was done
    (`fuse_summary`).
    """
    kind = output_kind(output)
    notify = run.get("notify", _stderr)

    def build() -> tuple[xr.DataArray, Any]:
        import warnings

        from dasksr.consistency import fuse_check
        from dasksr.frames import open_stack
        from dasksr.multiframe import FrameDroppedWarning, fuse

        with _notes(notify):
            stack, invalid = open_stack(
                frames,
                masks=masks,
                mask_band=mask_band,
                mask_rule=mask_rule,
                variable=variable,
                chunks=chunks,
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FrameDroppedWarning)
            try:
                fused = fuse(
                    stack,
                    scale,
                    masks=invalid,
                    reference=reference,
                    solver=solver,
                    iterations=iterations,
                    fallback=fallback,
                )
                frame = stack.isel({stack.dims[0]: reference})
                masked = None if invalid is None else invalid[reference]
                return _as_georeferenced(fused, stack), fuse_check(fused, frame, masked, scale)
            finally:  # the dropped frames are named before an error that they cause
                for w in caught:
                    if issubclass(w.category, FrameDroppedWarning):
                        notify(f"dasksr: warning: {one_line(str(w.message))}")

    # The output is checked before worker processes start; they start while the frames are
    # opened and registered.
    write = {"kind": kind}
    return _job(output, [*frames, *masks], build, run, write, True, consistency=consistency)


def _open_input(
    source: str,
    assets: str | None,
    *,
    chunks: int | None,
    variable: str | None,
    nodata: float | None = None,
) -> xr.DataArray:
    """The raster at ``source``, or the ``assets`` of the STAC item there."""
    from dasksr.frames import checked_raster, open_frame
    from dasksr.io.stac import is_stac_item, open_item

    if assets is None and not is_stac_item(source):
        return open_frame(source, chunks=chunks, variable=variable)
    purpose = (
        "upscale the assets of one grid at a time, or bring the coarser ones to the finer grid "
        "with dasksr sharpen ITEM OUTPUT --assets COARSE --guide-assets FINE"
    )
    data = open_item(source, assets, chunks=chunks, purpose=purpose, nodata=nodata)
    return checked_raster(data, source)


@contextmanager
def _notes(notify: Notify) -> Iterator[None]:
    """Says dasksr's notes on the inputs (`NoGeoreferenceWarning`) as one line each through
    ``notify``, rather than as Python warnings; other warnings pass as they are."""
    import warnings

    from dasksr.io.read import NoGeoreferenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoGeoreferenceWarning)
        try:
            yield
        finally:
            notes = [w for w in caught if issubclass(w.category, NoGeoreferenceWarning)]
            others = [w for w in caught if w not in notes]
    if notes:  # one line, also for the frames of a burst of photos
        more = f" (so have {len(notes) - 1} other inputs)" if len(notes) > 1 else ""
        notify(f"dasksr: note: {one_line(str(notes[0].message))}{more}")
    for w in others:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _as_georeferenced(fine: xr.DataArray, data: xr.DataArray) -> xr.DataArray:
    """``fine`` without the pixel-index coordinates that the API gives the result of an input
    without georeference (`NoGeoreferenceWarning`): GDAL would read them as a geotransform."""
    from dasksr.api import raster_transform, spatial_dims

    if data.rio.crs is not None or raster_transform(data) is not None:
        return fine
    return fine.drop_vars([d for d in spatial_dims(fine) if d in fine.coords])


def _band_identity(data: xr.DataArray, path: str) -> list[str | None]:
    """The names of a file's bands: its descriptions, else (one band) a band name in its file
    name (``B05.tif``, ``T18SVG_20160112T160642_B8A.jp2``, ``LC08_..._B8.TIF``), else None."""
    import re

    described = data.attrs.get("long_name")
    if isinstance(described, str):
        described = (described,)
    if isinstance(described, (list, tuple)) and len(described) == data.shape[0] and all(described):
        return [str(d) for d in described]
    found = re.findall(r"(?<![A-Za-z0-9])B(\d{1,2}|8A)(?![A-Za-z0-9])", Path(path).stem, flags=re.I)
    if data.shape[0] == 1 and found:
        return [f"B{found[-1].upper()}"]  # as named: Landsat's B4 is not Sentinel-2's B04
    return [None] * data.shape[0]


def _side(
    paths: Sequence[str], what: str, chunks: int | None, variable: str | None
) -> xr.DataArray:
    """The files of one side of ``sharpen``, stacked ``(band, y, x)`` with their band names."""
    import xarray as xr

    from dasksr.frames import grid_difference, open_frame

    planes, names, radiometry = [], [], []
    for path in paths:
        data = open_frame(path, chunks=chunks, variable=variable)
        if data.ndim == 2:
            data = data.expand_dims("band")
        identity = _band_identity(data, path)
        names += identity
        radiometry += _file_radiometry(data, path, identity)
        planes.append(data)
    for path, other in zip(paths[1:], planes[1:], strict=True):
        difference = grid_difference(planes[0], other)
        if difference:
            raise InvalidArgumentError(
                f"{what} file {path} is not on the grid of {paths[0]}: {difference}; the files "
                f"of one side must share a grid"
            )
    stacked = (
        planes[0]
        if len(planes) == 1
        else xr.concat(planes, dim=planes[0].dims[0], combine_attrs="override")
    )
    lead = stacked.dims[0]
    stacked = stacked.assign_coords(
        {lead: [n if n is not None else f"band{i + 1}" for i, n in enumerate(names)]}
    )
    if all(n is not None for n in names):
        stacked.attrs["long_name"] = tuple(names)
    else:
        stacked.attrs.pop("long_name", None)
        stacked = stacked.assign_coords({lead: list(range(1, len(names) + 1))})
    for attr, index, default in (("scales", 0, 1.0), ("offsets", 1, 0.0)):
        stacked.attrs.pop(attr, None)
        if any(pair[index] != default for pair in radiometry):
            stacked.attrs[attr] = [pair[index] for pair in radiometry]
    return stacked


def _file_radiometry(
    data: xr.DataArray, path: str, names: list[str | None]
) -> list[tuple[float, float]]:
    """Each band's ``(scale, offset)`` in one file: the file's own (GDAL's band scale and offset),
    else a Sentinel-2 product's radiometric offset from its metadata file (`dasksr.io.safe`)."""
    from dasksr.guided import band_radiometry
    from dasksr.io.safe import product_radiometry

    pairs = band_radiometry(data)
    for i, name in enumerate(names):
        if pairs[i] == (1.0, 0.0):
            pairs[i] = product_radiometry(path, name) or pairs[i]
    return pairs


def split_sharpen_paths(
    paths: Sequence[str], assets: str | None = None, guide_assets: str | None = None
) -> tuple[list[str], list[str], str]:
    """``BAND... --guide GUIDE... OUTPUT`` (the command line's words) as its three parts; with
    ``assets`` and ``guide_assets``, ``ITEM OUTPUT``, the item being both sides."""
    if assets is not None or guide_assets is not None:
        if assets is None or guide_assets is None:
            raise InvalidArgumentError(
                "a STAC item needs both --assets (the bands to sharpen) and --guide-assets"
            )
        if len(paths) != 2 or any(p.startswith("-") for p in paths):
            raise InvalidArgumentError(
                "with --assets and --guide-assets, give the STAC item and then OUTPUT"
            )
        return [paths[0]], [paths[0]], paths[1]
    if "--guide" not in paths:
        raise InvalidArgumentError("give the bands, then --guide and the guide bands, then OUTPUT")
    at = list(paths).index("--guide")
    coarse, rest = list(paths[:at]), list(paths[at + 1 :])
    if len(rest) < 2:
        raise InvalidArgumentError("give at least one guide band after --guide, then OUTPUT")
    *guide, output = rest
    flags = [p for p in [*coarse, *guide, output] if p.startswith("-")]
    if flags:
        raise InvalidArgumentError(f"unknown option {flags[0]!r}: see dasksr sharpen --help")
    return coarse, guide, output


def sharpen_files(
    coarse: Sequence[str],
    guide: Sequence[str],
    output: str,
    *,
    method: str = "glp",
    nodata: float | None = None,
    guide_nodata: float | None = None,
    variable: str | None = None,
    chunks: int | None = None,
    cog: bool = False,
    zarr_options: dict[str, Any] | None = None,
    report: str | None = None,
    assets: str | None = None,
    guide_assets: str | None = None,
    consistency: str | None = None,
    **run: Unpack[RunOptions],
) -> Written:
    """Sharpen the bands in ``coarse`` with those in ``guide`` into ``output``, as
    ``dasksr sharpen``: each side one multi-band file or several single-band files, or the
    ``assets`` and ``guide_assets`` of the STAC item that each side then is. Bands of an item
    are named as their sensor names them where the item tells it (`dasksr.io.stac.sensor_name`:
    ``B05``), as the method tells Sentinel-2's bands by those names."""
    from dasksr.guided import SHARPEN_METHODS

    kind = output_kind(output)
    if method not in SHARPEN_METHODS:
        raise InvalidArgumentError(
            f"unknown sharpen method {method!r}: use one of {', '.join(SHARPEN_METHODS)}"
        )
    if not coarse or not guide:
        raise InvalidArgumentError("give the bands to sharpen, then --guide and the guide bands")
    zarr_options = _write_options(kind, cog, report, zarr_options, run)

    def build() -> tuple[xr.DataArray, Any]:
        from dasksr.guided import sharpen, sharpen_check

        if assets is not None:
            from dasksr.frames import checked_raster
            from dasksr.io.stac import open_item

            sides = [
                checked_raster(
                    open_item(
                        item, words, flag=flag, sensor_names=True, purpose=purpose, nodata=fill
                    ),
                    item,
                )
                for item, words, flag, purpose, fill in (
                    (coarse[0], assets, "--assets", "sharpen bands of one grid at a time", nodata),
                    (
                        guide[0],
                        guide_assets,
                        "--guide-assets",
                        "the guide's share one",
                        guide_nodata,
                    ),
                )
            ]
        else:
            sides = [_side(coarse, "coarse", None, variable), _side(guide, "guide", None, variable)]
        out = sharpen(
            *sides,
            method=method,
            nodata=nodata,
            guide_nodata=guide_nodata,
            chunks=chunks,
        )
        return out, sharpen_check(out, sides[0], nodata=nodata)

    write = {"kind": kind, "cog": cog, "zarr_options": zarr_options, "report": report}
    return _job(output, [*coarse, *guide], build, run, write, True, consistency=consistency)[0]


def _job(
    output: str,
    inputs: Sequence[str],
    build: Callable[[], tuple[xr.DataArray, Any]],
    run: RunOptions,
    write: dict[str, Any],
    prepare_first: bool = False,
    *,
    consistency: str | None = None,
) -> tuple[Written, xr.DataArray]:
    """Check and clear the output's place, build the lazy result and write it, with the worker
    processes starting meanwhile (`dasksr.cluster.starting`); ``build`` gives the result and its
    `dasksr.consistency.Check`, whose raster goes to ``consistency``."""
    from dasksr.cluster import starting

    overwrite = run.get("overwrite", False)
    places = (output, inputs, consistency)
    if prepare_first:
        _prepare(*places, overwrite=overwrite)
    # Worker processes start while the readers are imported, the input is opened and the graph
    # is built.
    with starting(run.get("scheduler"), workers=run.get("workers")):
        if not prepare_first:
            _prepare(*places, overwrite=overwrite)
        fine, check = build()
        also = {"check": check, "consistency": consistency}
        return write_output(fine, output, **run, **write, **also), fine


def _prepare(
    output: str, inputs: Sequence[str], consistency: str | None = None, *, overwrite: bool
) -> None:
    """Refuse an output that is one of the inputs, then clear its place (`overwrite`); the same
    for the consistency raster's, which must not be the output."""
    from dasksr.io.paths import is_url
    from dasksr.io.write import check_not_an_input, prepare_output

    # A missing input is reported by the reader, with its own message.
    inputs = [p for p in inputs if is_url(p) or Path(p).exists()]
    check_not_an_input(inputs, output)
    if consistency is not None:
        if not consistency.lower().rstrip("/").endswith((".zarr", ".tif", ".tiff")):
            raise InvalidArgumentError(
                f"--consistency {consistency!r} has no known extension: end it with .zarr or .tif"
            )
        if Path(consistency).absolute() == Path(output).absolute():
            raise InvalidArgumentError(f"--consistency {consistency!r} is the output: use another")
        check_not_an_input(inputs, consistency)
        try:
            prepare_output(consistency, overwrite=overwrite)
        except DasksrError as exc:
            raise type(exc)(f"--consistency: {exc}") from None
    prepare_output(output, overwrite=overwrite)


def write_output(
    fine: xr.DataArray,
    output: str,
    *,
    kind: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    cog: bool = False,
    progress: bool | None = None,
    zarr_options: dict[str, Any] | None = None,
    report: str | None = None,
    notify: Notify = _stderr,
    check: Any = None,
    consistency: str | None = None,
) -> Written:
    """Compute and write the lazy ``fine`` on the chosen scheduler (`dasksr.cluster.connect`).

    The dashboard's address of an embedded cluster, and the performance report's file, are told
    through ``notify``. With a `dasksr.consistency.Check`, its RMS is computed in the same graph
    (``fine``'s blocks computed once), and its raster written to ``consistency``; a Zarr job that
    resumes measures it only when the raster is asked for (the finished blocks are recomputed).
    """
    from dasksr.cluster import connect
    from dasksr.io import to_geotiff
    from dasksr.io.geotiff_write import remove_partials
    from dasksr.io.zarr_write import zarr_job

    kind = output_kind(output) if kind is None else kind
    show = sys.stderr.isatty() if progress is None else progress
    # A report needs a distributed scheduler: the job then never runs on local threads.
    pixels = None if report is not None else math.prod(fine.shape)
    start = time.perf_counter()
    # The store's metadata is written while worker processes may still be starting.
    job = (
        zarr_job(fine, output, overwrite=overwrite, **(zarr_options or {}))
        if kind == "zarr"
        else None
    )
    resumed = job is not None and len(job.tasks) < math.prod(fine.data.numblocks)
    measure = check is not None and (consistency is not None or not resumed)
    figures: list[Any] = []
    try:
        with connect(
            scheduler,
            workers=workers,
            output_pixels=pixels,
            on_start=lambda client: notify(dashboard_line(client)),
        ):
            with _performance_report(report):
                if measure:
                    from dasksr.io.checked import write_checked

                    also = (check, consistency, overwrite)
                    path, figures = write_checked(fine, output, job, *also, progress=show, cog=cog)
                elif job is not None:
                    path = job.run(progress=show)
                else:
                    with warnings.catch_warnings():
                        # A result without georeference (NoGeoreferenceWarning) is written with
                        # the identity transform, in its own pixels, which rasterio warns about.
                        warnings.filterwarnings("ignore", message="The given matrix is equal to")
                        path = to_geotiff(fine, output, overwrite=overwrite, cog=cog, progress=show)
            wall = time.perf_counter() - start
    except BaseException as exc:
        for place in (output, consistency) if job is None else (consistency,):
            # Again now that no task runs: one still running when the job stopped may have made
            # its temporary file anew.
            if place is not None and output_kind(place) == "tif":
                remove_partials(Path(place).absolute())
        if isinstance(exc, KeyboardInterrupt):
            raise Interrupted(kind) from None
        raise
    if report is not None:
        notify(f"dasksr: performance report in {report}")
    rms = float(figures[0]) if figures else None
    model = check.model if measure else ""
    return Written(path, tuple(fine.shape), str(fine.dtype), wall, rms, model)


def check_report(report: str, scheduler: str | None) -> None:
    """Refuse a performance report that cannot be made: on local threads, without bokeh, or in a
    folder that does not exist."""
    import importlib.util

    from dasksr.cluster import THREADS

    if scheduler == THREADS:
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


def _performance_report(report: str | None) -> AbstractContextManager[Any]:
    if report is None:
        from contextlib import nullcontext

        return nullcontext()
    from distributed import performance_report

    return performance_report(filename=report)


def dashboard_line(client: Any) -> str:
    """Where the cluster's dashboard is, or how to get one."""
    import importlib.util

    if importlib.util.find_spec("bokeh") is None:
        return "dasksr: the Dask dashboard needs bokeh: pip install 'dasksr[dashboard]'"
    return f"dasksr: Dask dashboard at {client.dashboard_link}"


def summary(written: Written) -> str:
    """The line that says what was written, how fast (output pixels of every band a second)."""
    path, shape, dtype, wall = written[:4]
    pixels = math.prod(shape)  # every band's pixels, as the benchmarks count them
    rate = pixels / wall / 1e6 if wall > 0 else float("inf")
    dims = " x ".join(map(str, shape))
    line = f"wrote {path} ({dims}, {dtype}) in {wall:.2f} s, {rate:.1f} output MPix/s"
    if written.consistency is None:
        return line
    return f"{line}; consistency RMS {written.consistency:.4g} ({written.model})"


def fuse_summary(written: Written, fine: xr.DataArray) -> str:
    """`summary` followed by the solver, its iterations and the shift of every frame used."""
    attrs = fine.attrs
    shifts = ", ".join(
        f"{label} ({dy:+.3f}, {dx:+.3f})"
        for label, dy, dx in zip(
            attrs["fuse_frames"], attrs["fuse_shift_y"], attrs["fuse_shift_x"], strict=True
        )
    )
    done = attrs["fuse_solver"]
    if done == "ibp":
        done += f", {attrs['fuse_iterations']} iterations"
        if "fuse_psf_sigma" in attrs:
            done += f", PSF sigma {attrs['fuse_psf_sigma']:.2f} px"
    line = f"{summary(written)} by {done}; shifts (dy, dx) in input px: {shifts}"
    dropped = [d.replace(": ", " (", 1) + ")" for d in attrs.get("fuse_dropped", [])]
    return line + (f"; dropped: {', '.join(dropped)}" if dropped else "")


def describe_raster(path: str, *, variable: str | None = None) -> dict[str, str]:
    """Shape, dtype, bands, chunks, CRS, transform, resolution, bounds and nodata of a raster, as
    ``dasksr info`` prints them."""
    from dasksr.api import raster_transform
    from dasksr.frames import open_frame
    from dasksr.grid import format_number
    from dasksr.io.read import NoGeoreferenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGeoreferenceWarning)  # said by "none" below
        data = open_frame(path, variable=variable)
    bands = data.attrs.get("long_name")
    georeferenced = raster_transform(data) is not None
    return {
        "path": path,
        "dims": ", ".join(f"{d}: {n}" for d, n in data.sizes.items()),
        "dtype": str(data.dtype),
        "bands": ", ".join(map(str, bands)) if isinstance(bands, (list, tuple)) else (bands or "-"),
        "chunks": _stored_chunks(data),
        "read as": " x ".join(str(c[0]) for c in data.chunks) if data.chunks else "-",
        "crs": str(data.rio.crs) if data.rio.crs is not None else "none",
        "transform": ", ".join(format_number(v) for v in tuple(data.rio.transform())[:6])
        if georeferenced
        else "none (pixel units)",
        "resolution": ", ".join(format_number(abs(v)) for v in data.rio.resolution())
        if georeferenced
        else "-",
        "bounds": ", ".join(format_number(v) for v in data.rio.bounds()) if georeferenced else "-",
        "nodata": str(data.rio.nodata),
    }


def _stored_chunks(data: xr.DataArray) -> str:
    """The chunking of the file or store itself (GeoTIFF tiles or strips, Zarr chunks)."""
    stored = data.encoding.get("preferred_chunks") or {}
    if not stored:
        return "-"
    return " x ".join(str(stored.get(d, n)) for d, n in data.sizes.items())


def methods_table() -> list[str]:
    """The registered methods, a line each: name, scales, halo (input pixels), description."""
    from dasksr.methods import list_methods

    rows = [("method", "scales", "halo (input px)", "description")]
    for m in list_methods():
        halos = sorted({m.halo(s) for s in m.scales})
        halo = str(halos[0]) if len(halos) == 1 else f"{halos[0]}..{halos[-1]}"
        s = sorted(m.scales)
        contiguous = s == list(range(s[0], s[-1] + 1)) and len(s) > 2
        scales = f"{s[0]}..{s[-1]}" if contiguous else ",".join(map(str, s))
        rows.append((m.name, scales, halo, m.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in rows
    ]


def library_errors() -> tuple[type[Exception], ...]:
    """The error classes of the readers' libraries that name their file, as the command line
    reports them in one line: rasterio's, when it was imported (else none was raised; ``--help``
    does not import it)."""
    errors = sys.modules.get("rasterio.errors")
    return () if errors is None else (errors.RasterioError,)


def one_line(message: str) -> str:
    """``message`` with its white space, line breaks included, folded to single spaces."""
    return " ".join(str(message).split())
