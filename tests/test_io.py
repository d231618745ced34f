"""Reading and writing rasters, checked against files reopened by rasterio, xarray and rioxarray.

Every output is compared with ``dasksr.upscale`` on the whole in-memory NumPy array (the reference
result) and its georeferencing with the input's transform scaled by ``Affine.scale(1 / scale)``.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine
from rasterio.enums import Compression

import dasksr
from dasksr.cli import main
from dasksr.data import data_path
from dasksr.errors import InputError, InvalidArgumentError, OutputError

SCALE = 2
METHOD = "bicubic"


def expected(raster: Any, scale: int, method: str) -> np.ndarray:
    """The reference: the whole-image result on the pixels that were written into the input."""
    return dasksr.upscale(raster.data, scale=scale, method=method, nodata=raster.nodata)


def fine_centres(transform: Affine, ny: int, nx: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """x_j = left + (j + 0.5) * res / s, and the same for y from the top edge."""
    x = transform.c + (np.arange(nx * scale) + 0.5) * transform.a / scale
    y = transform.f + (np.arange(ny * scale) + 0.5) * transform.e / scale
    return y, x


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def cli_ok(*args: Any) -> None:
    assert main([str(a) for a in args]) == 0


# ----------------------------------------------------------------------------------------------
# One CLI job, two outputs: GeoTIFF and Zarr
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, make_geotiff: Callable[..., Any]) -> Any:
    """``dasksr upscale scene.tif`` to ``.tif`` and ``.zarr``, chunks that do not divide the size."""
    folder = tmp_path_factory.mktemp("job")
    raster = make_geotiff(folder / "scene.tif", height=300, width=330)
    for name in ("out.tif", "out.zarr"):
        cli_ok(
            "upscale",
            raster.path,
            folder / name,
            "--scale",
            SCALE,
            "--method",
            METHOD,
            "--chunks",
            128,
        )
    return raster, folder / "out.tif", folder / "out.zarr"


def test_geotiff_output_keeps_the_georeferencing(job: Any) -> None:
    raster, tif, _ = job
    with rasterio.open(raster.path) as src, rasterio.open(tif) as out:
        assert out.transform == src.transform @ Affine.scale(1 / SCALE)
        assert out.bounds == src.bounds
        assert (out.width, out.height) == (src.width * SCALE, src.height * SCALE)
        assert out.crs == src.crs
        assert out.crs.to_epsg() == 32633
        assert out.nodata == 0
        assert out.descriptions == raster.descriptions
        assert out.dtypes == src.dtypes


def test_geotiff_output_is_tiled_and_deflate_compressed(job: Any) -> None:
    _, tif, _ = job
    with rasterio.open(tif) as out:
        assert out.compression == Compression.deflate
        assert out.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert out.profile["tiled"]
        for by, bx in out.block_shapes:  # tiles, not strips
            assert by % 16 == 0 and bx % 16 == 0


def test_zarr_output_opens_in_its_own_dtype_and_gdal_sees_its_nodata(job: Any) -> None:
    raster, _, store = job
    # Nodata is the arrays' Zarr fill_value: GDAL reports it, and plain xarray.open_zarr masks
    # with it (format 2: float32 with NaN), as docs/conventions.md says.
    with rasterio.open(f'ZARR:"{store}":/data:0') as src:
        assert src.nodata == 0
    masked = xr.open_zarr(store)["data"]
    assert masked.dtype == np.float32 and bool(masked.isnull().any())
    assert dasksr.open_raster(store).dtype == np.uint16
    data = xr.open_zarr(store, mask_and_scale=False)["data"]
    assert data.dtype == np.uint16  # no scale/offset turning it into floats
    for key in ("scale_factor", "add_offset", "missing_value"):
        assert key not in data.attrs
        assert key not in data.encoding
    assert data.rio.crs.to_epsg() == 32633
    assert data.rio.nodata == 0
    assert data.attrs["long_name"] == list(raster.descriptions)
    assert data.rio.transform() == raster.transform @ Affine.scale(1 / SCALE)
    ny, nx = raster.data.shape[1:]
    left, top = raster.transform.c, raster.transform.f
    np.testing.assert_allclose(
        data.rio.bounds(),
        (left, top + ny * raster.transform.e, left + nx * raster.transform.a, top),
    )
    y, x = fine_centres(raster.transform, ny, nx, SCALE)
    np.testing.assert_allclose(data.x.values, x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(data.y.values, y, rtol=0, atol=1e-6)


def test_geotiff_zarr_and_whole_image_result_are_identical(job: Any) -> None:
    raster, tif, store = job
    reference = expected(raster, SCALE, METHOD)
    with rasterio.open(tif) as out:
        from_tif = out.read()
    from_zarr = xr.open_zarr(store, mask_and_scale=False)["data"].values
    np.testing.assert_array_equal(from_tif, reference)
    np.testing.assert_array_equal(from_zarr, reference)
    assert (reference == 0).any()  # the nodata corner went through the job


def test_finished_zarr_store_has_no_job_state(job: Any) -> None:
    _, _, store = job
    assert not (store / ".dasksr-progress").exists()
    assert not store.with_name(store.name + ".partial").exists()


def test_cog_output_has_overviews_and_the_cog_layout(tmp_path: Path, make_geotiff: Any) -> None:
    # 640 x 600 output pixels: more than one 512 tile, so GDAL adds one overview level.
    raster = make_geotiff(tmp_path / "scene.tif", bands=2, height=300, width=320, tile=64)
    out = tmp_path / "out.tif"
    cli_ok("upscale", raster.path, out, "--scale", 2, "--method", "bilinear", "--cog")
    with rasterio.open(out) as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert cog.overviews(1) == [2]
        assert cog.block_shapes[0] == (512, 512)
        assert cog.compression == Compression.deflate
        assert cog.transform == raster.transform @ Affine.scale(1 / 2)
        assert cog.crs.to_epsg() == 32633
        assert cog.nodata == 0
        assert cog.descriptions == raster.descriptions
        np.testing.assert_array_equal(cog.read(), expected(raster, 2, "bilinear"))
    assert listing(tmp_path) == {"scene.tif", "out.tif"}  # no temporary file left


def test_scales_offsets_and_units_are_kept_and_the_dtype_too(
    tmp_path: Path, uint16_tif: Any
) -> None:
    # Surface reflectance as distributed: uint16 counts with a scale and an offset per band.
    with rasterio.open(uint16_tif.path, "r+") as dst:
        dst.scales = (1e-4, 1e-4, 2e-4)
        dst.offsets = (-0.1, -0.1, 0.0)
        dst.units = ("reflectance", "reflectance", "W m-2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("out.tif", "out.zarr"):
            cli_ok("upscale", uint16_tif.path, tmp_path / name, "--chunks", 128)
    # Nothing about the scales on stderr: dasksr reads them per band.
    assert not [w for w in caught if "differ across bands" in str(w.message)]
    with rasterio.open(tmp_path / "out.tif") as tif:
        assert tif.dtypes[0] == "uint16"
        assert tif.scales == (1e-4, 1e-4, 2e-4)
        assert tif.offsets == (-0.1, -0.1, 0.0)
        assert tif.units == ("reflectance", "reflectance", "W m-2")
        from_tif = tif.read()
    data = xr.open_zarr(tmp_path / "out.zarr", mask_and_scale=False)[
        "data"
    ]  # plain xarray would apply CF scale_factor
    assert data.dtype == np.uint16
    assert "scale_factor" not in data.attrs and "add_offset" not in data.attrs
    assert data.attrs["scales"] == [1e-4, 1e-4, 2e-4]
    assert data.attrs["offsets"] == [-0.1, -0.1, 0.0]
    np.testing.assert_array_equal(data.values, from_tif)
    np.testing.assert_array_equal(from_tif, expected(uint16_tif, SCALE, METHOD))


# ----------------------------------------------------------------------------------------------
# Dtypes, single band, Zarr input
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "nodata", "bands"),
    [("int16", -9999, 2), ("float32", math.nan, 1), ("float32", -1.5, 3), ("uint16", 0, 1)],
)
def test_dtypes_and_nodata_survive_both_formats(
    tmp_path: Path, make_geotiff: Any, dtype: str, nodata: float, bands: int
) -> None:
    raster = make_geotiff(tmp_path / "in.tif", dtype=dtype, nodata=nodata, bands=bands)
    fine = dasksr.open_raster(raster.path, chunks=32).sr.upscale(scale=3, method="lanczos")
    with dask.config.set(scheduler="threads"):
        tif = dasksr.to_geotiff(fine, tmp_path / "out.tif")
        store = dasksr.to_zarr(fine, tmp_path / "out.zarr")
    with rasterio.open(tif) as out:
        from_tif = out.read()
        assert out.dtypes == (dtype,) * bands
        assert out.count == bands
        assert out.nodata == pytest.approx(nodata, nan_ok=True)
        assert out.transform == raster.transform @ Affine.scale(1 / 3)
    data = xr.open_zarr(store, mask_and_scale=False)["data"]
    assert data.dtype == np.dtype(dtype)
    assert data.shape == (bands, 70 * 3, 90 * 3)
    assert data.rio.nodata == pytest.approx(nodata, nan_ok=True)
    assert data.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(from_tif, data.values)  # same job, same bits
    reference = expected(raster, 3, "lanczos")
    if np.dtype(dtype).kind == "f":
        valid = reference[np.isfinite(reference)]
        atol = 1e-5 * float(valid.max() - valid.min())
        np.testing.assert_allclose(from_tif, reference, rtol=0, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(from_tif, reference)


def test_zarr_input_to_geotiff_via_the_cli(tmp_path: Path, uint16_zarr: Any) -> None:
    out = tmp_path / "out.tif"
    cli_ok("upscale", uint16_zarr.path, out, "--scale", 3, "--method", "lanczos", "--chunks", 128)
    with rasterio.open(out) as tif:
        # The store carries its CRS only through the CF grid_mapping attribute (as rioxarray writes).
        assert tif.crs is not None and tif.crs.to_epsg() == 32633
        assert tif.transform.almost_equals(uint16_zarr.transform @ Affine.scale(1 / 3))
        assert tif.nodata == 0
        assert tif.descriptions == uint16_zarr.descriptions
        np.testing.assert_array_equal(tif.read(), expected(uint16_zarr, 3, "lanczos"))


# ----------------------------------------------------------------------------------------------
# Resuming an interrupted Zarr job; failed jobs leave nothing that looks finished
# ----------------------------------------------------------------------------------------------


class InjectedFailure(RuntimeError):
    pass


def _passthrough(block: np.ndarray, *, calls: list[int], fail_at: int | None) -> np.ndarray:
    calls.append(1)
    if fail_at is not None and len(calls) >= fail_at:
        raise InjectedFailure("the job was interrupted here")
    return block


def flaky(data: xr.DataArray, calls: list[int], fail_at: int | None) -> xr.DataArray:
    """``data`` behind a block function that counts its calls and fails from call ``fail_at``.

    The graph name is fixed, so a rerun is the same job whatever ``fail_at`` is.
    """
    blocks = data.data.map_blocks(
        partial(_passthrough, calls=calls, fail_at=fail_at),
        name="flaky-job",
        dtype=data.dtype,
        meta=data.data._meta,  # else dask calls the function once to find out
    )
    return data.copy(data=blocks)


def chunk_file(array: Path, index: list[str], zarr_format: int) -> Path:
    """The file of a chunk: ``c/i/j/k`` in format 3, ``i.j.k`` in format 2."""
    return array / "c" / Path(*index) if zarr_format == 3 else array / ".".join(index)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_interrupted_zarr_job_resumes_and_equals_a_clean_run(
    tmp_path: Path, uint16_tif: Any, zarr_format: int
) -> None:
    fine = dasksr.upscale(
        dasksr.open_raster(uint16_tif.path, chunks=32), scale=SCALE, method="bilinear"
    )
    target = tmp_path / "out.zarr"
    partial_store = tmp_path / "out.zarr.partial"
    blocks = math.prod(len(c) for c in fine.chunks)  # 1 x 3 x 3 output chunks
    with dask.config.set(scheduler="synchronous"):
        calls: list[int] = []
        with pytest.raises(InjectedFailure):
            dasksr.to_zarr(flaky(fine, calls, fail_at=5), target, zarr_format=zarr_format)
        assert not target.exists()  # nothing that looks finished
        markers = sorted(
            p for p in (partial_store / ".dasksr-progress").iterdir() if p.name != "job.json"
        )
        assert 0 < len(markers) < blocks
        # Forget one finished chunk and corrupt its bytes: the rerun must write it again.
        forgotten = markers[0]
        forgotten.unlink()
        var, *index = forgotten.name.split(".")  # markers are VARIABLE.i.j.k
        chunk = chunk_file(partial_store / var, index, zarr_format)
        assert chunk.is_file()
        chunk.write_bytes(b"not a zstd chunk")

        rerun: list[int] = []
        written = dasksr.to_zarr(flaky(fine, rerun, fail_at=None), target, zarr_format=zarr_format)
        assert written == target.absolute()
        assert len(rerun) == blocks - len(markers) + 1  # only what was missing

        clean = dasksr.to_zarr(fine, tmp_path / "clean.zarr")
    assert not partial_store.exists()
    resumed = xr.open_zarr(target, mask_and_scale=False)["data"]
    np.testing.assert_array_equal(
        resumed.values, xr.open_zarr(clean, mask_and_scale=False)["data"].values
    )
    np.testing.assert_array_equal(resumed.values, expected(uint16_tif, SCALE, "bilinear"))
    assert resumed.rio.crs.to_epsg() == 32633


def test_interrupted_cli_job_resumes_when_run_again(
    tmp_path: Path, make_geotiff: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import dasksr.io.zarr_write as write

    raster = make_geotiff(tmp_path / "scene.tif", height=300, width=300, tile=64)
    original = write._write_zarr_block
    calls = tmp_path / "calls"
    calls.mkdir()

    def failing_writer(block: np.ndarray, block_info: Any = None, **options: Any) -> np.ndarray:
        # Counted in files: the embedded cluster may run a pickled copy of this function.
        n = len(list(calls.iterdir()))
        (calls / f"{n}-{os.getpid()}-{id(block)}").touch()
        if n >= 3:
            raise InputError("input 'scene.tif' vanished: injected failure, run the job again")
        return original(block, block_info=block_info, **options)

    out = tmp_path / "out.zarr"
    args = ["upscale", str(raster.path), str(out), "--chunks", "128", "--method", "lanczos"]
    monkeypatch.setattr(write, "_write_zarr_block", failing_writer)
    assert main(args) == 2
    assert "injected failure" in capsys.readouterr().err
    assert not out.exists()
    assert listing(tmp_path) == {"scene.tif", "out.zarr.partial", "calls"}
    monkeypatch.undo()

    done = [
        p
        for p in (tmp_path / "out.zarr.partial" / ".dasksr-progress").iterdir()
        if p.name != "job.json"
    ]
    assert 0 < len(done) < 9
    assert main(args) == 0
    np.testing.assert_array_equal(
        xr.open_zarr(out, mask_and_scale=False)["data"].values, expected(raster, 2, "lanczos")
    )
    assert listing(tmp_path) == {"scene.tif", "out.zarr", "calls"}


def test_changed_job_does_not_reuse_a_partial_store(tmp_path: Path, uint16_tif: Any) -> None:
    data = dasksr.open_raster(uint16_tif.path, chunks=32)
    target = tmp_path / "out.zarr"
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(InjectedFailure):
            dasksr.to_zarr(flaky(data.sr.upscale(scale=2), [], fail_at=3), target)
        # Another method: the finished chunks of the first job must not be kept.
        dasksr.to_zarr(data.sr.upscale(scale=2, method="nearest"), target)
    np.testing.assert_array_equal(
        xr.open_zarr(target, mask_and_scale=False)["data"].values,
        expected(uint16_tif, 2, "nearest"),
    )


def test_failed_geotiff_job_leaves_no_file(tmp_path: Path, uint16_tif: Any) -> None:
    fine = dasksr.upscale(
        dasksr.open_raster(uint16_tif.path, chunks=32), scale=SCALE, method=METHOD
    )
    before = listing(tmp_path)
    with dask.config.set(scheduler="threads"):
        for cog in (False, True):
            with pytest.raises(InjectedFailure):
                dasksr.to_geotiff(flaky(fine, [], fail_at=4), tmp_path / "out.tif", cog=cog)
            assert listing(tmp_path) == before  # no out.tif, no hidden temporary file


def test_failed_zarr_job_leaves_only_the_partial_store(tmp_path: Path, uint16_tif: Any) -> None:
    fine = dasksr.upscale(
        dasksr.open_raster(uint16_tif.path, chunks=32), scale=SCALE, method=METHOD
    )
    before = listing(tmp_path)
    with dask.config.set(scheduler="threads"), pytest.raises(InjectedFailure):
        dasksr.to_zarr(flaky(fine, [], fail_at=2), tmp_path / "out.zarr")
    assert listing(tmp_path) == before | {"out.zarr.partial"}


def test_overwrite_replaces_an_existing_output(tmp_path: Path, uint16_tif: Any) -> None:
    data = dasksr.open_raster(uint16_tif.path, chunks=32)
    with dask.config.set(scheduler="threads"):
        for method in ("nearest", "bilinear"):
            dasksr.to_geotiff(
                data.sr.upscale(scale=2, method=method), tmp_path / "o.tif", overwrite=True
            )
            dasksr.to_zarr(
                data.sr.upscale(scale=2, method=method), tmp_path / "o.zarr", overwrite=True
            )
    reference = expected(uint16_tif, 2, "bilinear")
    with rasterio.open(tmp_path / "o.tif") as out:
        np.testing.assert_array_equal(out.read(), reference)
    np.testing.assert_array_equal(
        xr.open_zarr(tmp_path / "o.zarr", mask_and_scale=False)["data"].values, reference
    )


# ----------------------------------------------------------------------------------------------
# Output integrity: failed writes, --overwrite, chunk records, the resume identity
# ----------------------------------------------------------------------------------------------

#: Each file a process may write is capped at this size: the output's tiles and chunks (1 MB and
#: more) exceed it, the Zarr metadata and a compiled-kernel cache file (about 100 kB) do not.
FILE_SIZE_LIMIT = 512 * 1024


def run_with_file_size_limit(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``dasksr ARGS`` in a process whose files cannot grow past `FILE_SIZE_LIMIT` (EFBIG), as on
    a full disk. Python ignores SIGXFSZ, so the writes fail with an OSError."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))

    code = "import sys; from dasksr.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is a POSIX limit")
@pytest.mark.parametrize("output", ["out.tif", "cog.tif", "out.zarr"])
def test_a_full_disk_fails_the_job_naming_the_output(
    tmp_path: Path, make_geotiff: Any, output: str
) -> None:
    # A GeoTIFF on a full disk was reported as written (exit 0, 71% zeros); Zarr and COG jobs
    # ended in tracebacks.
    make_geotiff(tmp_path / "scene.tif", dtype="float64", height=400, width=400, tile=64)
    before = listing(tmp_path)
    args = ["upscale", "scene.tif", output, "--chunks", "256", "--method", "bilinear"]
    if output == "cog.tif":
        args.append("--cog")
    proc = run_with_file_size_limit(args, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    *others, last = proc.stderr.splitlines()
    assert last.startswith(f"dasksr: error: output '{output}' cannot be written (")
    assert "free disk space" in last
    if output.endswith(".zarr"):
        assert "File too large" in last
        assert others == []
        # The partial store stays for a rerun; nothing at the final path.
        assert listing(tmp_path) == before | {f"{output}.partial"}
    else:
        # GDAL's own libtiff prints its write errors on stderr itself, from C: nothing else.
        assert all(line.startswith("_tiffWriteProc: ") for line in others), others
        assert listing(tmp_path) == before


def test_write_errors_inside_the_tasks_name_the_output(
    tmp_path: Path, uint16_tif: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import dasksr.io.zarr_write as write

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    fine = dasksr.open_raster(uint16_tif.path, chunks=32).sr.upscale(scale=2)
    monkeypatch.setattr(write.os, "fsync", failing_fsync)
    with dask.config.set(scheduler="threads"), pytest.raises(OutputError) as error:
        dasksr.to_zarr(fine, tmp_path / "out.zarr")
    assert str(error.value).startswith(f"output '{tmp_path / 'out.zarr'}' cannot be written")
    assert "Input/output error" in str(error.value)
    # The data never reached the disk: no chunk is recorded as done.
    state = tmp_path / "out.zarr.partial" / ".dasksr-progress"
    assert {p.name for p in state.iterdir()} == {"job.json"}
    assert not (tmp_path / "out.zarr").exists()


def test_a_zarr_chunk_written_twice_is_recorded_once_and_unchanged(
    tmp_path: Path, uint16_tif: Any
) -> None:
    # A distributed task may run twice (a worker lost after the write): the second run is harmless.
    import dasksr.io.zarr_write as write

    fine = dasksr.open_raster(uint16_tif.path, chunks=32).sr.upscale(scale=2)
    with dask.config.set(scheduler="threads"):
        target = dasksr.to_zarr(fine, tmp_path / "out.zarr")
    store = tmp_path / "again.zarr"
    target.rename(store)
    (store / ".dasksr-progress").mkdir()
    block = fine.data.blocks[0, 1, 1].compute()
    info = {0: {"array-location": [(0, 3), (64, 128), (64, 128)], "chunk-location": (0, 1, 1)}}
    for _ in range(2):
        write._write_zarr_block(
            block,
            store=str(store / "data"),
            marker=str(store / ".dasksr-progress" / "data"),
            shown=str(store),
            block_info=info,
        )
    assert [p.name for p in (store / ".dasksr-progress").iterdir()] == ["data.0.1.1"]
    np.testing.assert_array_equal(
        xr.open_zarr(store, mask_and_scale=False)["data"].values, expected(uint16_tif, 2, "bicubic")
    )


@pytest.mark.parametrize("ext", [".tif", ".zarr"])
def test_overwrite_never_replaces_a_folder_of_other_files(
    tmp_path: Path, uint16_tif: Any, ext: str
) -> None:
    folder = tmp_path / f"mine{ext}"
    folder.mkdir()
    (folder / "thesis.txt").write_text("three years of work")
    notes = tmp_path / f"notes{ext}"
    notes.write_text("not a raster")
    fine = dasksr.open_raster(uint16_tif.path).sr.upscale(scale=2)
    write = dasksr.to_zarr if ext == ".zarr" else dasksr.to_geotiff
    for path, what in ((folder, "a folder that is not a Zarr store"), (notes, "not a TIFF")):
        with pytest.raises(OutputError, match=what):
            write(fine, path, overwrite=True)
    assert (folder / "thesis.txt").read_text() == "three years of work"
    assert notes.read_text() == "not a raster"
    assert listing(tmp_path) == {"scene.tif", f"mine{ext}", f"notes{ext}"}


@pytest.mark.parametrize("ext", [".tif", ".zarr"])
def test_overwrite_leaves_the_old_or_the_new_output_when_interrupted(
    tmp_path: Path, uint16_tif: Any, monkeypatch: pytest.MonkeyPatch, ext: str
) -> None:
    import dasksr.io.zarr_write as write

    data = dasksr.open_raster(uint16_tif.path)
    save = dasksr.to_zarr if ext == ".zarr" else dasksr.to_geotiff
    target = tmp_path / f"out{ext}"
    with dask.config.set(scheduler="threads"):
        save(data.sr.upscale(scale=2, method="nearest"), target)
        replace = os.replace
        moves: list[tuple[str, str]] = []

        def interrupted_replace(src: Any, dst: Any) -> None:
            if Path(dst).parent == tmp_path:  # not zarr's own renames inside the store
                moves.append((Path(src).name, Path(dst).name))
                if len(moves) == 1 + (ext == ".zarr"):  # Ctrl-C as the new output is moved in
                    raise KeyboardInterrupt
            replace(src, dst)

        monkeypatch.setattr(write.os, "replace", interrupted_replace)
        with pytest.raises(KeyboardInterrupt):
            save(data.sr.upscale(scale=2, method="bilinear"), target, overwrite=True)
        monkeypatch.undo()
        reopened = dasksr.open_raster(target).values
        np.testing.assert_array_equal(reopened, expected(uint16_tif, 2, "nearest"))  # the old
        save(data.sr.upscale(scale=2, method="bilinear"), target, overwrite=True)
    np.testing.assert_array_equal(
        dasksr.open_raster(target).values, expected(uint16_tif, 2, "bilinear")
    )
    hidden = {name for name in listing(tmp_path) if name.startswith(".")}
    assert hidden == set()
    if ext == ".zarr":  # renamed aside, the new one not moved in, the old one put back
        aside = moves[0][1]
        assert moves == [
            (target.name, aside),
            ("out.zarr.partial", target.name),
            (aside, target.name),
        ]
    else:  # a file replaces a file in one rename
        assert len(moves) == 1 and moves[0][1] == target.name


def test_input_as_output_is_refused_by_any_spelling(tmp_path: Path, uint16_tif: Any) -> None:
    source = uint16_tif.path
    original = source.read_bytes()
    (tmp_path / "link.tif").symlink_to(source)
    os.link(source, tmp_path / "hard.tif")
    (tmp_path / "sub").mkdir()
    spellings = [
        (source, source),
        (source, tmp_path / "sub" / ".." / source.name),
        (tmp_path / "link.tif", source),
        (source, tmp_path / "link.tif"),
        (source, tmp_path / "hard.tif"),
    ]
    for src, out in spellings:
        assert main(["upscale", str(src), str(out), "--overwrite"]) == 2
    assert source.read_bytes() == original
    zarr_source = tmp_path / "scene.zarr"
    with dask.config.set(scheduler="threads"):
        dasksr.to_zarr(dasksr.open_raster(source), zarr_source)
    for out in (zarr_source, zarr_source / "inner.zarr"):
        assert main(["upscale", str(zarr_source), str(out), "--overwrite"]) == 2
    assert not (zarr_source / "inner.zarr").exists()


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's /sys")
@pytest.mark.parametrize("name", ["out.tif", "out.zarr"])
def test_an_unwritable_output_is_named_as_the_output(
    uint16_tif: Any, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    # It said "cannot read the input raster".
    assert main(["upscale", str(uint16_tif.path), f"/sys/kernel/{name}"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("dasksr: error: output ") and "/sys/kernel" in err
    assert "input" not in err


def zarr_job(
    fine: xr.DataArray, target: Path, monkeypatch: pytest.MonkeyPatch, *, fail_at: int | None
) -> int:
    """``to_zarr(fine, target)`` whose chunk writes fail from write ``fail_at``; returns the
    number of chunks written. Unlike `flaky`, the job keeps the graph name of ``fine``."""
    import dasksr.io.zarr_write as write

    original = write._write_zarr_block
    calls: list[int] = []

    def counted(block: np.ndarray, block_info: Any = None, **options: Any) -> np.ndarray:
        calls.append(1)
        if fail_at is not None and len(calls) >= fail_at:
            raise InjectedFailure(f"injected failure at write {len(calls)}")
        return original(block, block_info=block_info, **options)

    with monkeypatch.context() as patch, dask.config.set(scheduler="synchronous"):
        patch.setattr(write, "_write_zarr_block", counted)
        if fail_at is None:
            dasksr.to_zarr(fine, target)
        else:
            with pytest.raises(InjectedFailure):
                dasksr.to_zarr(fine, target)
    return len(calls) - (fail_at is not None)


def test_a_changed_method_version_is_recomputed_not_resumed(
    tmp_path: Path, make_geotiff: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The resume identity had only the method's name: new weights or a new kernel version under
    # the same name resumed with the old version's chunks.
    from dasksr.methods import _REGISTRY, get_method, register

    raster = make_geotiff(tmp_path / "scene.tif", height=96, width=96)
    target = tmp_path / "out.zarr"
    try:
        register(replace(get_method("bilinear"), name="trial"))
        fine = dasksr.open_raster(raster.path, chunks=32).sr.upscale(scale=2, method="trial")
        assert zarr_job(fine, target, monkeypatch, fail_at=4) == 3
        register(replace(get_method("nearest"), name="trial", version="2"))
        fine = dasksr.open_raster(raster.path, chunks=32).sr.upscale(scale=2, method="trial")
        assert zarr_job(fine, target, monkeypatch, fail_at=None) == 9
    finally:
        _REGISTRY.pop("trial", None)
    np.testing.assert_array_equal(
        xr.open_zarr(target, mask_and_scale=False)["data"].values, expected(raster, 2, "nearest")
    )


@pytest.mark.parametrize("change", ["touched input", "dtype", "scale"])
def test_a_changed_input_dtype_or_scale_is_recomputed_not_resumed(
    tmp_path: Path, make_geotiff: Any, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    raster = make_geotiff(tmp_path / "scene.tif", height=96, width=96)
    target = tmp_path / "out.zarr"
    fine = dasksr.open_raster(raster.path, chunks=32).sr.upscale(scale=2)
    assert zarr_job(fine, target, monkeypatch, fail_at=4) == 3
    options: dict[str, Any] = {"scale": 2}
    if change == "touched input":  # same bytes, a new modification time
        stat = raster.path.stat()
        os.utime(raster.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    elif change == "dtype":
        options["dtype"] = "float32"
    else:
        options["scale"] = 3
    fine = dasksr.open_raster(raster.path, chunks=32).sr.upscale(**options)
    assert zarr_job(fine, target, monkeypatch, fail_at=None) == 9
    written = xr.open_zarr(target, mask_and_scale=False)["data"]
    assert written.dtype == fine.dtype
    np.testing.assert_array_equal(written.values, fine.values)


# ----------------------------------------------------------------------------------------------
# Python API: open_raster, the accessor, to_zarr / to_geotiff, Datasets
# ----------------------------------------------------------------------------------------------


def test_open_raster_is_lazy_and_chunked_on_the_file_tiles(
    tmp_path: Path, make_geotiff: Any
) -> None:
    raster = make_geotiff(tmp_path / "cog.tif", height=300, width=260, tile=64, cog=True)
    for chunks, edge in ((100, 64), (200, 192), ({"y": 128, "x": 64}, None)):
        data = dasksr.open_raster(raster.path, chunks=chunks)
        assert isinstance(data.data, da.Array)
        assert data.chunks is not None
        band_chunks, y_chunks, x_chunks = data.chunks
        assert band_chunks == (3,)  # all bands of a tile in one task
        for c in (*y_chunks[:-1], *x_chunks[:-1]):
            assert c % 64 == 0
        if edge is not None:
            assert y_chunks[0] == x_chunks[0] == edge
        else:
            assert (y_chunks[0], x_chunks[0]) == (128, 64)
    assert data.dtype == np.uint16
    assert data.rio.crs.to_epsg() == 32633
    assert data.rio.nodata == 0
    assert data.rio.transform() == raster.transform
    y, x = fine_centres(raster.transform, 300, 260, 1)
    np.testing.assert_allclose(data.x.values, x)
    np.testing.assert_allclose(data.y.values, y)
    np.testing.assert_array_equal(data.values, raster.data)


def test_open_raster_reads_nothing_until_computed(tmp_path: Path, damaged_geotiff: Any) -> None:
    # A damaged tile in the middle: opening works, computing names the damaged window.
    raster = damaged_geotiff(tmp_path / "cog.tif")
    data = dasksr.open_raster(raster.path, chunks=64)
    np.testing.assert_array_equal(data[:, :64, :].values, raster.data[:, :64, :])
    with pytest.raises(InputError, match=r"rows 64:128, columns 64:128.*damaged"):
        data.values  # noqa: B018


def test_open_raster_on_zarr_aligns_chunks_to_the_store(uint16_zarr: Any) -> None:
    data = dasksr.open_raster(uint16_zarr.path, chunks=40)  # stored in 32 x 32 chunks
    assert data.chunks is not None and data.chunks[1:] == ((32, 32, 6), (32, 32, 26))
    whole = dasksr.open_raster(uint16_zarr.path)  # default: about 1024 pixels
    assert whole.chunks is not None and whole.chunks[1:] == ((70,), (90,))
    assert data.rio.crs is not None and data.rio.crs.to_epsg() == 32633
    assert data.rio.nodata == 0
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data.values, uint16_zarr.data)


def test_accessor_upscale_matches_the_whole_image_result(uint16_tif: Any) -> None:
    data = dasksr.open_raster(uint16_tif.path, chunks=32)
    fine = data.sr.upscale(scale=2, method="lanczos")
    assert isinstance(fine.data, da.Array)
    assert fine.rio.transform() == uint16_tif.transform @ Affine.scale(1 / 2)
    assert fine.rio.crs.to_epsg() == 32633
    assert fine.rio.nodata == 0
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(fine.values, expected(uint16_tif, 2, "lanczos"))


@pytest.mark.parametrize("fixture", ["uint16_tif", "uint16_zarr"])
def test_blocks_read_their_own_haloed_windows(fixture: str, request: pytest.FixtureRequest) -> None:
    # No task of an upscaled GeoTIFF or Zarr store waits for a neighbour: every one reads its
    # window with the halo from the source, so read, upscale and write fuse and memory stays flat
    # (benchmarks/). Chunks smaller than a tile or a stored chunk are kept.
    raster = request.getfixturevalue(fixture)
    data = dasksr.open_raster(raster.path, chunks={"y": 16, "x": 24})
    fine = data.sr.upscale(scale=3, method="bicubic")
    graph = fine.data.__dask_graph__()
    assert data.data.name not in graph.layers
    assert fine.data.chunks[-2:] == tuple(tuple(3 * c for c in cs) for cs in data.data.chunks[-2:])
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(fine.values, expected(raster, 3, "bicubic"))
    # A band subset keeps the source wiring (tests/test_sources.py); arithmetic takes the
    # map_overlap wiring on the array's own blocks instead.
    subset = data.isel(band=[0]).sr.upscale(scale=3, method="bicubic")
    assert data.data.name not in subset.data.__dask_graph__().layers
    changed = (data + 0).sr.upscale(scale=3, method="bicubic")
    assert data.data.name in changed.data.__dask_graph__().layers
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(subset.values, expected(raster, 3, "bicubic")[:1])
        np.testing.assert_array_equal(changed.values, expected(raster, 3, "bicubic"))


@pytest.mark.parametrize("width", [150, 2600])
def test_striped_geotiff_reads_as_the_whole_image(tmp_path: Path, width: int) -> None:
    # Untiled files are cached in groups of strips (and at most 1024 columns of a wide strip).
    import rasterio
    from rasterio.transform import from_origin

    pixels = np.random.default_rng(width).integers(0, 60000, (2, 70, width)).astype(np.uint16)
    path = tmp_path / "striped.tif"
    profile = {"driver": "GTiff", "compress": "deflate", "crs": "EPSG:32633"}
    with rasterio.open(
        path, "w", width=width, height=70, count=2, dtype="uint16",
        transform=from_origin(0, 0, 10, 10), **profile,
    ) as dst:  # fmt: skip
        dst.write(pixels)
    fine = dasksr.open_raster(path, chunks=32).sr.upscale(scale=2, method="lanczos")
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(
            fine.values, dasksr.upscale(pixels, scale=2, method="lanczos")
        )


def test_damaged_zarr_chunk_is_a_clear_error(tmp_path: Path, uint16_zarr: Any) -> None:
    # A Zarr chunk that does not decode names the window and the fix, as a damaged GeoTIFF does.
    chunk = uint16_zarr.path / "data" / "c" / "0" / "1" / "1"
    assert chunk.is_file()
    chunk.write_bytes(b"\xff" * 100)
    fine = dasksr.open_raster(uint16_zarr.path).sr.upscale(scale=2, method="bilinear")
    with pytest.raises(InputError, match=r"cannot be read at rows \d+:\d+, columns .*replace it"):
        fine.compute(scheduler="threads")


def test_to_zarr_and_to_geotiff_round_trip_through_open_raster(
    tmp_path: Path, uint16_tif: Any
) -> None:
    fine = dasksr.open_raster(uint16_tif.path, chunks=32).sr.upscale(scale=2, method="bilinear")
    with dask.config.set(scheduler="threads"):
        store = dasksr.to_zarr(fine, tmp_path / "fine.zarr")
        tif = dasksr.to_geotiff(fine, tmp_path / "fine.tif")
    reference = expected(uint16_tif, 2, "bilinear")
    for path in (store, tif):
        back = dasksr.open_raster(path)
        np.testing.assert_array_equal(back.values, reference)
        assert back.rio.transform() == uint16_tif.transform @ Affine.scale(1 / 2)
        assert back.rio.crs.to_epsg() == 32633
        assert back.rio.nodata == 0
        assert list(back.attrs["long_name"]) == list(uint16_tif.descriptions)


def test_dataset_upscale_keeps_non_spatial_variables(uint16_tif: Any) -> None:
    reflectance = dasksr.open_raster(uint16_tif.path, chunks=32)
    mask = (reflectance.isel(band=0, drop=True).astype(np.float32) / 1000.0).compute()
    mask.attrs = {}  # no nodata: every pixel is valid
    wavelength = xr.DataArray([665.0, 560.0, 842.0], dims="band", coords={"band": [1, 2, 3]})
    ds = xr.Dataset({"reflectance": reflectance, "mask": mask, "wavelength": wavelength})
    out = ds.sr.upscale(scale=2, method="bicubic")
    assert set(out.data_vars) == {"reflectance", "mask", "wavelength"}
    # Kept as it was (its spatial_ref coordinate is the Dataset's, now on the fine grid).
    xr.testing.assert_identical(
        out["wavelength"].drop_vars("spatial_ref"), ds["wavelength"].drop_vars("spatial_ref")
    )
    np.testing.assert_array_equal(out["reflectance"].values, expected(uint16_tif, 2, "bicubic"))
    np.testing.assert_array_equal(
        out["mask"].values, dasksr.upscale(mask.values, scale=2, method="bicubic")
    )
    y, x = fine_centres(uint16_tif.transform, 70, 90, 2)
    np.testing.assert_allclose(out.x.values, x)
    np.testing.assert_allclose(out.y.values, y)
    assert out["reflectance"].rio.crs.to_epsg() == 32633


# ----------------------------------------------------------------------------------------------
# Real data: a Sentinel-2 L2A band (COG, uint16, nodata 0)
# ----------------------------------------------------------------------------------------------


@pytest.mark.data
def test_sentinel2_band_upscaled_x2_via_the_cli(tmp_path: Path) -> None:
    source = data_path("rasters", "sentinel2_l2a_29RKH_20200219", "B05.tif")
    if source is None:
        pytest.skip("shared Sentinel-2 rasters are not on this machine (set DASKSR_DATA)")
    out = tmp_path / "B05_x2.tif"
    cli_ok("upscale", source, out, "--scale", 2, "--method", "bicubic", "--chunks", 256)
    with rasterio.open(source) as src, rasterio.open(out) as tif:
        assert src.overviews(1) and src.block_shapes[0] == (512, 512)  # a COG, as published
        assert tif.transform == src.transform @ Affine.scale(1 / 2)
        assert tif.bounds == src.bounds
        assert tif.crs == src.crs and tif.crs.to_epsg() == 32629
        assert tif.res == (100.0, 100.0)  # 200 m pixels become 100 m
        assert tif.nodata == src.nodata == 0
        coarse = src.read(1)
        fine = tif.read(1)
    np.testing.assert_array_equal(fine, dasksr.upscale(coarse, scale=2, method="bicubic", nodata=0))
    # A fine pixel is nodata exactly where its coarse pixel is: no valid pixel became 0.
    np.testing.assert_array_equal(fine == 0, np.kron(coarse == 0, np.ones((2, 2), bool)))


def test_dataset_with_several_rasters_round_trips_through_zarr(tmp_path: Path) -> None:

    y = 1000.0 - (np.arange(12) + 0.5) * 10
    x = 500.0 + (np.arange(16) + 0.5) * 10
    rng = np.random.default_rng(5)
    red = xr.DataArray(rng.integers(1, 900, (12, 16)).astype("uint16"), dims=("y", "x"))
    ndvi = xr.DataArray(rng.normal(0, 0.3, (2, 12, 16)).astype("float32"), dims=("time", "y", "x"))
    ds = xr.Dataset({"red": red, "ndvi": ndvi, "weight": ("time", [0.25, 0.75])})
    ds = ds.assign_coords(y=y, x=x).rio.write_crs("EPSG:32632")
    ds["red"] = ds["red"].rio.write_nodata(0)
    fine = ds.chunk({"y": 5, "x": 7}).sr.upscale(scale=2, method="bilinear")
    out = dasksr.to_zarr(fine, tmp_path / "multi.zarr")
    back = xr.open_zarr(out, mask_and_scale=False)
    assert back["red"].dtype == np.uint16 and back["ndvi"].dtype == np.float32
    assert back["red"].rio.crs == ds.rio.crs and back["red"].rio.nodata == 0
    np.testing.assert_array_equal(back["red"].values, fine["red"].values)
    np.testing.assert_array_equal(back["ndvi"].values, fine["ndvi"].values)
    np.testing.assert_array_equal(back["weight"].values, [0.25, 0.75])
    with pytest.raises(InvalidArgumentError, match="holds 2 raster variables"):
        dasksr.to_geotiff(fine, tmp_path / "multi.tif")
    single = dasksr.to_geotiff(fine[["red"]], tmp_path / "red.tif")
    with rasterio.open(single) as src:
        np.testing.assert_array_equal(src.read(1), fine["red"].values)


def test_default_zarr_chunks_never_split_stored_chunks(tmp_path: Path) -> None:
    data = xr.DataArray(np.zeros((1, 3000, 40), np.uint16), dims=("band", "y", "x"))
    data.to_dataset(name="v").to_zarr(
        tmp_path / "big.zarr", encoding={"v": {"chunks": (1, 3000, 40)}}, consolidated=False
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xarray warns when chunks split the stored ones
        opened = dasksr.open_raster(tmp_path / "big.zarr")
    assert opened.chunks is not None and opened.chunks[1] == (3000,)


def test_explicit_small_chunks_are_honoured_for_tiled_geotiffs(tmp_path: Path) -> None:
    path = tmp_path / "tiled.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="uint8",
        tiled=True,
        blockxsize=32,
        blockysize=32,
        crs="EPSG:32633",
        transform=Affine(10.0, 0.0, 0.0, 0.0, -10.0, 640.0),
    ) as dst:
        dst.write(np.arange(64 * 64, dtype=np.uint8).reshape(1, 64, 64))
    assert dasksr.open_raster(path).chunks[1:] == ((64,), (64,))
    assert dasksr.open_raster(path, chunks=16).chunks[1:] == ((16,) * 4, (16,) * 4)
    assert dasksr.open_raster(path, chunks=40).chunks[1:] == ((32, 32), (32, 32))


@pytest.mark.parametrize("chunks", [True, "auto"])
def test_open_raster_auto_chunks_are_tile_multiples_of_dasks_chunk_size(
    tmp_path: Path, make_geotiff: Any, chunks: Any
) -> None:
    # As rioxarray's chunks=True / "auto": dask's array.chunk-size, the file's tiles the unit.
    raster = make_geotiff(tmp_path / "cog.tif", height=300, width=260, tile=64, cog=True)
    with dask.config.set({"array.chunk-size": "64KiB"}):
        data = dasksr.open_raster(raster.path, chunks=chunks)
    assert data.chunks is not None
    band_chunks, y_chunks, x_chunks = data.chunks
    assert band_chunks == (3,)
    assert len(y_chunks) > 1 and len(x_chunks) > 1  # not one chunk, and not 1-pixel ones
    for c in (*y_chunks[:-1], *x_chunks[:-1]):
        assert c % 64 == 0
    assert 3 * y_chunks[0] * x_chunks[0] * 2 <= 64 * 2**10
    np.testing.assert_array_equal(data.values, raster.data)


def test_open_raster_chunk_dicts_and_none_as_rioxarray(tmp_path: Path, make_geotiff: Any) -> None:
    raster = make_geotiff(tmp_path / "cog.tif", height=300, width=260, tile=64, cog=True)
    assert dasksr.open_raster(raster.path, chunks={"x": 128}).chunks == (
        (3,),
        (300,),
        (128, 128, 4),
    )
    assert dasksr.open_raster(raster.path, chunks={"y": -1, "x": 64}).chunks[1][0] == 300
    assert dasksr.open_raster(raster.path, chunks={"band": 1}).chunks[0] == (1, 1, 1)
    assert dasksr.open_raster(raster.path, chunks=None).chunks[1:] == ((300,), (260,))
    with pytest.raises(InvalidArgumentError, match=r"chunks names dims \['z'\]"):
        dasksr.open_raster(raster.path, chunks={"z": 4})
    for bad in (0, -5, 1.5, "big", False):
        with pytest.raises(InvalidArgumentError, match="is not a chunking"):
            dasksr.open_raster(raster.path, chunks=bad)


def test_open_raster_auto_chunks_on_zarr_never_split_stored_chunks(uint16_zarr: Any) -> None:
    with dask.config.set({"array.chunk-size": "8KiB"}):
        data = dasksr.open_raster(uint16_zarr.path, chunks="auto")  # stored in 32 x 32 chunks
    assert data.chunks is not None
    for c in (*data.chunks[1][:-1], *data.chunks[2][:-1]):
        assert c % 32 == 0
    np.testing.assert_array_equal(data.values, uint16_zarr.data)


@pytest.mark.parametrize("dtype, work", [("uint8", "float32"), ("uint16", "float32"),
                                         ("int32", "float64"), ("float32", "float32")])  # fmt: skip
def test_open_raster_masked_as_rioxarray(
    tmp_path: Path, make_geotiff: Any, dtype: str, work: str
) -> None:
    nodata = -9999 if dtype == "float32" else 0
    raster = make_geotiff(tmp_path / "in.tif", dtype=dtype, nodata=nodata)
    data = dasksr.open_raster(raster.path, chunks=32, masked=True)
    rio = rioxarray.open_rasterio(raster.path, masked=True)
    assert data.dtype == rio.dtype == np.dtype(work)
    np.testing.assert_array_equal(data.values, rio.values)  # NaN where the file has nodata
    assert np.isnan(data.rio.nodata) and np.isnan(rio.rio.nodata)
    # The file's nodata value stays the encoded one, and the file's dtype the encoding's.
    assert data.rio.encoded_nodata == rio.rio.encoded_nodata == nodata
    assert data.encoding["dtype"] == rio.encoding["dtype"] == dtype
    assert "_FillValue" not in data.attrs


def test_masked_input_upscales_and_writes_back_the_files_nodata(
    tmp_path: Path, uint16_tif: Any, uint16_zarr: Any
) -> None:
    for i, source in enumerate((uint16_tif.path, uint16_zarr.path)):
        data = dasksr.open_raster(source, chunks=32, masked=True)
        assert data.dtype == np.float32 and data.rio.encoded_nodata == 0
        fine = data.sr.upscale(scale=2, method="bicubic")
        # The holes are where the integer result has nodata, and the valid pixels agree with it
        # before rounding.
        reference = expected(uint16_tif, 2, "bicubic")
        np.testing.assert_array_equal(np.isnan(fine.values), reference == 0)
        assert fine.rio.encoded_nodata == 0
        out = dasksr.to_geotiff(fine, tmp_path / f"out{i}.tif")
        with rasterio.open(out) as tif:
            assert tif.nodata == 0
            written = tif.read(masked=True)
        np.testing.assert_array_equal(written.mask, reference == 0)


def test_masked_without_nodata_only_changes_the_dtype(tmp_path: Path, make_geotiff: Any) -> None:
    raster = make_geotiff(tmp_path / "in.tif", dtype="uint8", nodata=None)
    data = dasksr.open_raster(raster.path, masked=True)
    assert data.dtype == np.float32 and data.rio.nodata is None
    assert data.rio.encoded_nodata is None
    np.testing.assert_array_equal(data.values, raster.data.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# Zarr that GDAL opens: formats, codecs, levels
# ----------------------------------------------------------------------------------------------


def test_default_zarr_store_opens_in_gdal_with_the_crs_and_transform(
    tmp_path: Path, uint16_tif: Any
) -> None:
    fine = dasksr.upscale(
        dasksr.open_raster(uint16_tif.path, chunks=32), scale=SCALE, method=METHOD
    )
    store = dasksr.to_zarr(fine, tmp_path / "out.zarr")
    want = uint16_tif.transform @ Affine.scale(1 / SCALE)
    for name in (str(store), f'ZARR:"{store}":/data'):
        with rasterio.open(name) as src:  # rasterio's own GDAL
            assert src.driver == "Zarr"
            assert src.crs is not None and src.crs.to_epsg() == 32633
            assert src.transform.almost_equals(want, precision=1e-9)
            assert src.count == 3 and src.dtypes[0] == "uint16"
            np.testing.assert_array_equal(src.read(), expected(uint16_tif, SCALE, METHOD))
    rio = rioxarray.open_rasterio(f'ZARR:"{store}":/data')
    assert rio.rio.crs.to_epsg() == 32633 and rio.rio.transform().almost_equals(want)
    # GDAL's own CRS attribute is written beside CF's grid_mapping, and says the same.
    attrs = xr.open_zarr(store, mask_and_scale=False)["data"].attrs
    assert attrs["grid_mapping"] == "spatial_ref"
    assert rasterio.crs.CRS.from_wkt(attrs["_CRS"]["wkt"]) == rasterio.crs.CRS.from_epsg(32633)
    assert "_CRS" not in dasksr.open_raster(store).attrs  # the CRS is on spatial_ref


def test_zarr_format_3_is_written_when_asked_and_gdal_reads_it_from_3_11(
    tmp_path: Path, uint16_tif: Any
) -> None:
    data = dasksr.open_raster(uint16_tif.path, chunks=32)
    store = dasksr.to_zarr(data, tmp_path / "v3.zarr", zarr_format=3)
    assert (store / "zarr.json").is_file() and not (store / ".zgroup").exists()
    np.testing.assert_array_equal(dasksr.open_raster(store).values, uint16_tif.data)
    v2 = dasksr.to_zarr(data, tmp_path / "v2.zarr")
    assert (v2 / ".zgroup").is_file() and (v2 / "data" / ".zarray").is_file()
    # The default follows what rasterio's bundled GDAL reads (docs/conventions.md).
    gdal = tuple(int(p) for p in rasterio.__gdal_version__.split(".")[:2])
    if gdal >= (3, 11):
        with rasterio.open(f'ZARR:"{store}":/data') as src:
            np.testing.assert_array_equal(src.read(), uint16_tif.data)
    else:
        with pytest.raises(rasterio.errors.RasterioIOError, match="codec"):
            rasterio.open(f'ZARR:"{store}":/data')


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("codec, level", [("zstd", 9), ("lz4", 5), ("gzip", 6), ("none", 0)])
def test_zarr_codecs_and_levels_round_trip(
    tmp_path: Path, uint16_tif: Any, zarr_format: int, codec: str, level: int
) -> None:
    data = dasksr.open_raster(uint16_tif.path, chunks=32)
    store = dasksr.to_zarr(
        data, tmp_path / "o.zarr", zarr_format=zarr_format, codec=codec, compression_level=level
    )
    np.testing.assert_array_equal(
        xr.open_zarr(store, mask_and_scale=False)["data"].values, uint16_tif.data
    )
    if zarr_format == 2 and codec != "lz4":  # GDAL 3.10 reads these in format 2
        with rasterio.open(str(store)) as src:
            np.testing.assert_array_equal(src.read(), uint16_tif.data)


def test_a_higher_compression_level_makes_a_smaller_store(tmp_path: Path) -> None:
    # Smooth data upscaled: the kind of content where levels differ.
    y, x = np.mgrid[0:256, 0:256]
    pixels = (1000 + 800 * np.sin(x / 9.0) * np.cos(y / 7.0)).astype(np.uint16)
    data = xr.DataArray(pixels[None], dims=("band", "y", "x")).chunk({"y": 128, "x": 128})
    fine = dasksr.upscale(data, scale=2, method="bicubic")
    sizes = {}
    for level in (0, 1, 9):
        store = dasksr.to_zarr(fine, tmp_path / f"l{level}.zarr", compression_level=level)
        sizes[level] = sum(p.stat().st_size for p in (store / "data").rglob("*") if p.is_file())
    assert sizes[9] < sizes[1] < sizes[0], sizes


@pytest.mark.parametrize(
    "options, message",
    [
        ({"zarr_format": 4}, "zarr_format=4 is not a Zarr format"),
        ({"codec": "brotli"}, "codec='brotli' is not a Zarr codec"),
        ({"compression_level": 10}, "compression_level=10 is out of range"),
        ({"codec": "gzip", "compression_level": 0}, "out of range for codec 'gzip'"),
    ],
)
def test_bad_zarr_options_are_refused_before_anything_is_written(
    tmp_path: Path, uint16_tif: Any, options: dict[str, Any], message: str
) -> None:
    data = dasksr.open_raster(uint16_tif.path)
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        dasksr.to_zarr(data, tmp_path / "o.zarr", **options)
    assert listing(tmp_path) == {"scene.tif"}


def test_cli_zarr_format_and_compress_level(
    tmp_path: Path, uint16_tif: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    out = tmp_path / "o.zarr"
    cli_ok("upscale", uint16_tif.path, out, "--zarr-format", 3, "--compress-level", 7)
    meta = json.loads((out / "data" / "zarr.json").read_text())
    blosc = next(c for c in meta["codecs"] if c["name"] == "blosc")
    assert blosc["configuration"]["clevel"] == 7
    cli_ok("upscale", uint16_tif.path, tmp_path / "d.zarr")
    assert (tmp_path / "d.zarr" / ".zgroup").is_file()
    capsys.readouterr()
    assert (
        main(["upscale", str(uint16_tif.path), str(tmp_path / "x.zarr"), "--compress-level", "12"])
        == 2
    )
    assert (
        main(["upscale", str(uint16_tif.path), str(tmp_path / "x.tif"), "--zarr-format", "3"]) == 2
    )
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "compression_level=12" in err[0] and "needs a .zarr output" in err[1]
    assert listing(tmp_path) == {"scene.tif", "o.zarr", "d.zarr"}


# ----------------------------------------------------------------------------------------------
# Writers that return a dask object (compute=False), and the accessor's writers
# ----------------------------------------------------------------------------------------------


def test_delayed_writes_create_nothing_until_computed_and_then_equal_eager_ones(
    tmp_path: Path, uint16_tif: Any
) -> None:
    from dask.delayed import Delayed

    fine = dasksr.open_raster(uint16_tif.path, chunks=32).sr.upscale(scale=SCALE, method=METHOD)
    out = tmp_path / "out"
    out.mkdir()
    tif = fine.sr.to_geotiff(out / "o.tif", compute=False)
    cog = dasksr.to_geotiff(fine, out / "c.tif", cog=True, blocksize=64, compute=False)
    store = fine.sr.to_zarr(out / "o.zarr", compute=False)
    assert all(isinstance(d, Delayed) for d in (tif, cog, store))
    # A GeoTIFF is not even started; a Zarr store has only its partial metadata.
    assert listing(out) == {"o.zarr.partial"}
    results = dask.compute(tif, cog, store)  # one graph: the upscaling is shared
    assert results == (out / "o.tif", out / "c.tif", out / "o.zarr")
    assert listing(out) == {"o.tif", "c.tif", "o.zarr"}  # no partial file left
    want = expected(uint16_tif, SCALE, METHOD)
    for name in ("o.tif", "c.tif"):
        with rasterio.open(out / name) as src:
            np.testing.assert_array_equal(src.read(), want)
            assert src.crs.to_epsg() == 32633 and src.nodata == 0
            assert src.descriptions == ("red", "green", "nir")
    with rasterio.open(out / "c.tif") as src:
        assert src.overviews(1) and src.block_shapes[0] == (64, 64)
    np.testing.assert_array_equal(
        xr.open_zarr(out / "o.zarr", mask_and_scale=False)["data"].values, want
    )


def test_a_failed_delayed_geotiff_write_leaves_nothing_that_looks_finished(
    tmp_path: Path, uint16_tif: Any
) -> None:
    fine = dasksr.upscale(
        dasksr.open_raster(uint16_tif.path, chunks=32), scale=SCALE, method="bilinear"
    )
    delayed = dasksr.to_geotiff(flaky(fine, [], fail_at=3), tmp_path / "o.tif", compute=False)
    with dask.config.set(scheduler="synchronous"), pytest.raises(InjectedFailure):
        delayed.compute()
    assert not (tmp_path / "o.tif").exists()


def test_accessor_writers_are_the_io_functions(uint16_tif: Any) -> None:
    data = dasksr.open_raster(uint16_tif.path)
    assert data.sr.to_zarr.__doc__ == dasksr.to_zarr.__doc__
    assert data.sr.to_geotiff.__doc__ == dasksr.to_geotiff.__doc__


@pytest.mark.slow
def test_delayed_writes_built_without_a_client_run_on_a_cluster(
    tmp_path: Path, uint16_tif: Any
) -> None:
    from distributed import Client, LocalCluster

    fine = dasksr.open_raster(uint16_tif.path, chunks=32).sr.upscale(scale=SCALE, method=METHOD)
    # Built before any client exists: the GeoTIFF's write lock is chosen where the tasks run.
    tif = fine.sr.to_geotiff(tmp_path / "o.tif", cog=True, blocksize=64, compute=False)
    store = fine.sr.to_zarr(tmp_path / "o.zarr", compute=False)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        futures = client.compute([tif, store])
        # The client gets the two paths; the pixels and the COG copy stay on the workers.
        assert client.gather(futures) == [tmp_path / "o.tif", tmp_path / "o.zarr"]
    want = expected(uint16_tif, SCALE, METHOD)
    with rasterio.open(tmp_path / "o.tif") as src:
        np.testing.assert_array_equal(src.read(), want)
    np.testing.assert_array_equal(
        xr.open_zarr(tmp_path / "o.zarr", mask_and_scale=False)["data"].values, want
    )
