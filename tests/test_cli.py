"""The ``dasksr`` command: user errors are one line and status 2, the commands do what they say."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

import dasksr
from dasksr.cli import main
from dasksr.demo import make_scene


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``run(*args)``: ``dasksr.cli.main`` in this process, with its stdout and stderr."""

    def invoke(*args: Any) -> Run:
        capsys.readouterr()
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return invoke


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ----------------------------------------------------------------------------------------------
# Bad input: one line on stderr naming the problem and the fix, status 2, nothing finished left
# ----------------------------------------------------------------------------------------------


def _missing(tmp: Path, request: pytest.FixtureRequest) -> Path:
    return tmp / "nope.tif"


def _text_file(tmp: Path, request: pytest.FixtureRequest) -> Path:
    path = tmp / "notes.tif"
    path.write_text("these are my notes, not a raster\n")
    return path


def _truncated(tmp: Path, request: pytest.FixtureRequest) -> Path:
    # GDAL writes the directory last: the first half has no header to open.
    raster = request.getfixturevalue("make_geotiff")(
        tmp / "cut.tif", height=200, width=200, tile=64
    )
    cut_in_half(raster.path)
    return raster.path


def _truncated_cog(tmp: Path, request: pytest.FixtureRequest) -> Path:
    # A COG has its header first: the first half opens, the missing tiles must still be found.
    raster = request.getfixturevalue("make_geotiff")(
        tmp / "cut.tif", height=200, width=200, tile=64, cog=True
    )
    cut_in_half(raster.path)
    with rasterio.open(raster.path) as src:
        assert src.shape == (200, 200)
    return raster.path


def _damaged_tile(tmp: Path, request: pytest.FixtureRequest) -> Path:
    # Opens fine and the last tile is intact: the error surfaces while the job computes.
    return Path(request.getfixturevalue("damaged_geotiff")(tmp / "damaged.tif").path)


INPUT_ERRORS = {
    "missing file": (_missing, ["does not exist", "check the path"]),
    "text file named .tif": (_text_file, ["notes.tif", "not a readable raster", "pass a GeoTIFF"]),
    "truncated GeoTIFF": (_truncated, ["cut.tif", "not a readable raster"]),
    "truncated COG": (_truncated_cog, ["cut.tif", "not a readable raster"]),
    "damaged tile": (_damaged_tile, ["damaged.tif", "cannot be read at rows", "replace it"]),
}


def assert_one_line_error(result: Run, *words: str) -> None:
    assert result.status == 2
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("dasksr: error: ")
    assert "Traceback" not in result.err
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("case", list(INPUT_ERRORS))
@pytest.mark.parametrize("ext", [".tif", ".zarr"])
def test_bad_input_is_one_line_and_status_2(
    tmp_path: Path, request: pytest.FixtureRequest, run: Callable[..., Run], case: str, ext: str
) -> None:
    make_input, words = INPUT_ERRORS[case]
    source = make_input(tmp_path, request)
    before = listing(tmp_path)
    out = tmp_path / f"out{ext}"
    result = run("upscale", source, out, "--chunks", 128)
    assert_one_line_error(result, *words)
    if case == "damaged tile":
        assert request.getfixturevalue("names_damaged_tile")(result.err)
    assert not out.exists()
    # A Zarr job that failed while computing keeps its partial store for a rerun, nothing else.
    allowed = {f"out{ext}.partial"} if ext == ".zarr" else set()
    assert listing(tmp_path) - before <= allowed
    assert listing(tmp_path) >= before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scale", "0"], ["scale=0", "use an integer from 2 to 8"]),
        (["--scale", "1"], ["scale=1", "use an integer from 2 to 8"]),
        (["--scale", "1.5"], ["1.5", "is not an integer", "use an integer"]),
        (["--scale", "-2"], ["scale=-2", "use an integer from 2 to 8"]),
        (["--scale", "two"], ["'two'", "use an integer"]),
        (["--method", "sharpest"], ["unknown method 'sharpest'", "bicubic", "lanczos"]),
        # --chunks 1 hung; --chunks 16 took 50 times longer than the default.
        (["--chunks", "1"], ["--chunks 1", "minimum of 128 pixels", "use 128 or more"]),
        (["--chunks", "16"], ["--chunks 16", "minimum of 128 pixels"]),
        (["--chunks", "127"], ["--chunks 127", "minimum of 128 pixels"]),
    ],
)
def test_bad_options_are_one_line_and_status_2(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run], args: list[str], words: list[str]
) -> None:
    result = run("upscale", uint16_tif.path, tmp_path / "out.tif", *args)
    assert_one_line_error(result, *words)
    assert listing(tmp_path) == {"scene.tif"}


def _empty_zarr(path: Path, shape: tuple[int, ...]) -> Path:
    dims = ("band", "y", "x")[-len(shape) :]
    coords = {"y": np.arange(shape[-2], dtype=float)[::-1], "x": np.arange(shape[-1], dtype=float)}
    xr.Dataset({"data": (dims, np.zeros(shape, "float32"))}, coords=coords).to_zarr(
        path, zarr_format=3, consolidated=False
    )
    return path


@pytest.mark.parametrize(
    ("shape", "words"),
    [((0, 50), ["holds no pixels", "y: 0"]), ((0, 64, 64), ["holds no pixels", "band: 0"])],
)
@pytest.mark.parametrize("command", ["upscale", "info"])
def test_an_input_without_pixels_is_one_line_and_status_2(
    tmp_path: Path, run: Callable[..., Run], shape: tuple[int, ...], words: list[str], command: str
) -> None:
    # 0 rows ended in a rioxarray traceback; 0 bands was "upscaled" into an empty store.
    source = _empty_zarr(tmp_path / "empty.zarr", shape)
    args = [source, tmp_path / "out.zarr"] if command == "upscale" else [source]
    result = run(command, *args)
    assert_one_line_error(result, "empty.zarr", *words)
    assert result.out == ""
    assert listing(tmp_path) == {"empty.zarr"}


def test_info_on_a_lat_lon_zarr_describes_it_as_upscale_reads_it(
    tmp_path: Path, run: Callable[..., Run]
) -> None:
    # It ended in a rioxarray traceback, while `dasksr upscale` reads the same store.
    source = tmp_path / "t2m.zarr"
    values = np.zeros((90, 180), "float32")
    coords = {"lat": np.linspace(89.5, -89.5, 90), "lon": np.linspace(-179.5, 179.5, 180)}
    xr.Dataset({"t2m": (("lat", "lon"), values)}, coords=coords).to_zarr(
        source, zarr_format=3, consolidated=False
    )
    result = run("info", source)
    assert result.status == 0, result.err
    assert result.err == ""
    assert "dims:       lat: 90, lon: 180" in result.out
    assert "resolution: 2.005586592178771, 2.0112359550561796" in result.out
    upscaled = run("upscale", source, tmp_path / "t2m_x2.tif", "--no-progress")
    assert upscaled.status == 0, upscaled.err


@pytest.mark.parametrize("command", ["info", "upscale"])
def test_unknown_spatial_dims_are_one_line_and_status_2(
    tmp_path: Path, run: Callable[..., Run], command: str
) -> None:
    source = tmp_path / "cube.zarr"
    values = np.zeros((4, 30, 40), "float32")
    xr.Dataset({"v": (("a", "b", "c"), values)}).to_zarr(source, zarr_format=3, consolidated=False)
    args = [source, tmp_path / "out.tif"] if command == "upscale" else [source]
    result = run(command, *args)
    assert_one_line_error(result, "cannot tell which dims", "('a', 'b', 'c')", "rename them")
    assert result.out == ""
    assert listing(tmp_path) == {"cube.zarr"}


# Each block write waits, so that the job still runs (and writes) when Ctrl-C comes.
_SLOW_ZARR = """
import dasksr.io.zarr_write as write
original = write._write_zarr_block
def slow(block, block_info=None, **options):
    Path(STARTED).touch()
    time.sleep(0.5)
    return original(block, block_info=block_info, **options)
write._write_zarr_block = slow
"""
_SLOW_TIF = """
import dasksr.io.geotiff_write as write
original = write._GeoTIFFWriter.__setitem__
def slow(self, key, value):
    Path(STARTED).touch()
    time.sleep(0.5)
    return original(self, key, value)
write._GeoTIFFWriter.__setitem__ = slow
"""


@pytest.mark.parametrize(
    ("output", "slow", "what"),
    [
        ("out.zarr", _SLOW_ZARR, "a Zarr job resumes when run again"),
        # It left a hidden .out.tif.*.partial.tif, and said that the job would resume.
        ("out.tif", _SLOW_TIF, "nothing was written: run the job again"),
    ],
)
def test_ctrl_c_exits_130_with_one_line(
    tmp_path: Path, make_geotiff: Any, output: str, slow: str, what: str
) -> None:
    # It printed about 2,000 lines of "Task exception was never retrieved".
    import signal

    raster = make_geotiff(tmp_path / "scene.tif", height=640, width=640, tile=64)
    started = tmp_path / "started"
    code = f"import sys, time\nfrom pathlib import Path\nSTARTED = {str(started)!r}\n{slow}"
    code += "from dasksr.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "upscale", str(raster.path), output, "--chunks", "128"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job ignores SIGINT, and the child would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the job did not start"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.splitlines() == [f"dasksr: interrupted: the output was not finished ({what})"]
    assert out == ""
    assert not (tmp_path / output).exists()
    if output.endswith(".tif"):
        assert listing(tmp_path) == {"scene.tif", "started"}


def test_existing_output_is_kept_without_overwrite(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run]
) -> None:
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious")
    result = run("upscale", uint16_tif.path, out)
    assert_one_line_error(result, "out.tif", "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    assert listing(tmp_path) == {"scene.tif", "out.tif"}


def test_unwritable_output_folder(tmp_path: Path, uint16_tif: Any, run: Callable[..., Run]) -> None:
    # Tests may run as root, whom permission bits do not stop: a regular file as the "folder"
    # cannot be written into by anyone.
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    for name in ("out.tif", "out.zarr"):
        result = run("upscale", uint16_tif.path, blocker / name)
        assert_one_line_error(result, "results", "not a folder", "choose an output path")
    missing = run("upscale", uint16_tif.path, tmp_path / "no" / "such" / "out.tif")
    assert_one_line_error(missing, "does not exist", "create it first")
    assert listing(tmp_path) == {"scene.tif", "results"}


@pytest.mark.parametrize(
    ("name", "extra", "words"),
    [
        ("out.png", [], ["out.png", "no known extension", ".zarr or .tif"]),
        ("out", [], ["no known extension", ".zarr or .tif"]),
        ("out.zarr", ["--cog"], ["--cog", ".tif output"]),
    ],
)
def test_unknown_output_extension(
    tmp_path: Path,
    uint16_tif: Any,
    run: Callable[..., Run],
    name: str,
    extra: list[str],
    words: list[str],
) -> None:
    result = run("upscale", uint16_tif.path, tmp_path / name, *extra)
    assert_one_line_error(result, *words)
    assert listing(tmp_path) == {"scene.tif"}


def test_console_script_prints_no_traceback(tmp_path: Path, damaged_geotiff: Any) -> None:
    # The installed entry point, as a user runs it; the error comes from inside the computation.
    script = Path(sys.executable).with_name("dasksr")
    assert script.exists(), f"the dasksr console script is not installed beside {sys.executable}"
    source = damaged_geotiff(tmp_path / "damaged.tif").path
    proc = subprocess.run(
        [str(script), "upscale", str(source), "out.tif", "--chunks", "128"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dasksr: error: input ")
    assert "damaged.tif" in lines[0] and "replace it" in lines[0]
    assert proc.stdout == ""
    assert listing(tmp_path) == {"damaged.tif"}


# ----------------------------------------------------------------------------------------------
# methods, info, demo, progress
# ----------------------------------------------------------------------------------------------


def test_methods_lists_every_registered_method(run: Callable[..., Run]) -> None:
    result = run("methods")
    assert result.status == 0
    rows = {line.split()[0]: line.split() for line in result.out.splitlines()[1:]}
    methods = dasksr.list_methods()
    assert set(rows) == {m.name for m in methods}
    assert {"nearest", "bilinear", "bicubic", "lanczos"} <= set(rows)
    for m in methods:
        _, scales, halo = rows[m.name][:3]
        ordered = sorted(m.scales)
        if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
            assert scales == f"{ordered[0]}..{ordered[-1]}"
        else:  # cnn-sensor's weights are for x2 and x4 only
            assert scales == ",".join(map(str, ordered))
        halos = sorted({m.halo(s) for s in m.scales})
        assert halo == (str(halos[0]) if len(halos) == 1 else f"{halos[0]}..{halos[-1]}")
        assert m.summary in rows_text(result.out, m.name)


def rows_text(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.split()[0] == name)


def parse_info(out: str) -> dict[str, str]:
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def test_info_on_geotiff_and_zarr(
    tmp_path: Path, make_geotiff: Any, make_zarr: Any, run: Callable[..., Run]
) -> None:
    raster = make_geotiff(tmp_path / "scene.tif")
    # An origin with more digits than %g shows: info must print the transform exactly.
    origin = Affine(10.0, 0.0, 399965.25, 0.0, -10.0, 5000047.5)
    with rasterio.open(raster.path, "r+") as dst:
        dst.transform = origin
    store = make_zarr(
        tmp_path / "scene.zarr",
        type(raster)(
            raster.path, raster.data, origin, raster.crs, raster.nodata, raster.descriptions
        ),
    )
    for path in (raster.path, store.path):
        result = run("info", path)
        assert result.status == 0, result.err
        info = parse_info(result.out)
        assert info["dims"] == "band: 3, y: 70, x: 90"
        assert info["dtype"] == "uint16"
        assert info["bands"] == "red, green, nir"
        assert info["crs"] == "EPSG:32633"
        assert float(info["nodata"]) == 0
        assert tuple(float(v) for v in info["transform"].split(",")) == tuple(origin)[:6]
        with rasterio.open(raster.path) as src:
            bounds = tuple(float(v) for v in info["bounds"].split(","))
            assert bounds == tuple(src.bounds)
        assert tuple(float(v) for v in info["resolution"].split(",")) == (10.0, 10.0)
    missing = run("info", tmp_path / "nope.zarr")
    assert_one_line_error(missing, "does not exist")


def test_demo_writes_what_it_promises(tmp_path: Path, run: Callable[..., Run]) -> None:
    folder = tmp_path / "demo"
    result = run("demo", folder, "--size", 128)
    assert result.status == 0, result.err
    assert {"scene.tif", "scene_x2.zarr", "scene_x2.tif"} <= listing(folder)
    scene = make_scene(128)
    reference = dasksr.upscale(scene, scale=2, method="bicubic", nodata=0)
    with rasterio.open(folder / "scene.tif") as src:
        np.testing.assert_array_equal(src.read(), scene)
        assert (src.crs.to_epsg(), src.nodata, src.count, src.dtypes[0]) == (32633, 0, 3, "uint16")
    with rasterio.open(folder / "scene_x2.tif") as tif:
        np.testing.assert_array_equal(tif.read(), reference)
        assert tif.transform == src.transform @ Affine.scale(1 / 2)
        assert tif.crs.to_epsg() == 32633
    np.testing.assert_array_equal(
        xr.open_zarr(folder / "scene_x2.zarr", mask_and_scale=False)["data"].values, reference
    )
    assert "scene_x2.zarr" in result.out and "scene_x2.tif" in result.out


def test_progress_bar_goes_to_stderr_only_when_asked(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run]
) -> None:
    shown = run("upscale", uint16_tif.path, tmp_path / "a.zarr", "--chunks", 128, "--progress")
    assert shown.status == 0
    assert "100% Completed" in shown.err
    assert shown.out.startswith("wrote ") and len(shown.out.splitlines()) == 1
    hidden = run("upscale", uint16_tif.path, tmp_path / "b.tif", "--chunks", 128, "--no-progress")
    assert hidden.status == 0
    assert hidden.err == ""
    assert hidden.out.startswith("wrote ")


def test_progress_bar_with_the_threaded_scheduler(
    tmp_path: Path, uint16_tif: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import dask

    fine = dasksr.open_raster(uint16_tif.path, chunks=32).sr.upscale(scale=2)
    with dask.config.set(scheduler="threads"):
        dasksr.to_zarr(fine, tmp_path / "a.zarr", progress=True)
        assert "100% Completed" in capsys.readouterr().err
        dasksr.to_geotiff(fine, tmp_path / "a.tif")
        assert capsys.readouterr().err == ""


def test_busy_dashboard_port_prints_no_warning(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run]
) -> None:
    # The embedded cluster's HTTP server used port 8787 and warned (on stderr) when it was taken.
    blocker = socket.socket()
    try:
        try:
            blocker.bind(("127.0.0.1", 8787))
            blocker.listen()
        except OSError:
            pass  # something else holds it already: the condition under test holds anyway
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run("upscale", uint16_tif.path, tmp_path / "out.tif", "--no-progress")
    finally:
        blocker.close()
    assert result.status == 0
    assert result.err == ""
    assert not [w for w in caught if "already in use" in str(w.message)]


# ----------------------------------------------------------------------------------------------
# The README's install commands: nothing is written into the installed package
# ----------------------------------------------------------------------------------------------


def _numba_files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*.nb[ic]")}


def test_compiled_kernels_are_cached_in_the_cache_folder_not_the_package(tmp_path: Path) -> None:
    # A cache in site-packages/dasksr outlived `pip uninstall` and shadowed the editable install.
    import dasksr.kernels.loops as loops

    package = Path(loops.__file__).parent
    before = _numba_files(package)
    cache = tmp_path / "cache"
    code = (
        "import numpy as np; from dasksr.kernels.loops import polyphase_rows; "
        "polyphase_rows(np.ones((9, 9)), np.ones((2, 3)))"
    )
    env = {**os.environ, "DASKSR_CACHE_DIR": str(cache)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert [p.name for p in (cache / "numba").rglob("*.nbi")], "nothing cached in DASKSR_CACHE_DIR"
    assert _numba_files(package) == before


def test_kernel_cache_folder_is_the_user_cache_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dasksr.kernels.loops import _writable_folder, kernel_cache_dir

    monkeypatch.delenv("DASKSR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = kernel_cache_dir()
    assert folder.name == "dasksr"
    assert Path(dasksr.__file__).parent.parent not in (folder, *folder.parents)
    if sys.platform.startswith("linux"):
        assert folder == tmp_path / "xdg" / "dasksr"
    monkeypatch.setenv("DASKSR_CACHE_DIR", str(tmp_path / "mine"))
    assert kernel_cache_dir() == tmp_path / "mine"
    # A folder that cannot be made: the kernels are compiled without a disk cache.
    (tmp_path / "a-file").write_text("")
    assert _writable_folder(tmp_path / "a-file" / "cache") is None
    assert _writable_folder(tmp_path / "mine") == tmp_path / "mine"


# ----------------------------------------------------------------------------------------------
# Options that rioxarray users expect: --nodata, --dtype, --bands, --resolution, --report
# ----------------------------------------------------------------------------------------------


def test_nodata_marks_an_untagged_fill(
    tmp_path: Path, make_geotiff: Any, run: Callable[..., Run]
) -> None:
    # As Landsat 8 files: 0-fill around the scene and no nodata tag. Bicubic blended the fill
    # into the scene edge.
    raster = make_geotiff(tmp_path / "landsat.tif", nodata=None)
    pixels = raster.data.copy()
    pixels[:, :, :20] = 0
    with rasterio.open(raster.path, "r+") as dst:
        dst.write(pixels)
    plain = run("upscale", raster.path, tmp_path / "plain.tif", "--no-progress")
    fixed = run("upscale", raster.path, tmp_path / "fixed.tif", "--nodata", "0", "--no-progress")
    assert plain.status == 0 and fixed.status == 0, plain.err + fixed.err
    expected = dasksr.upscale(pixels, scale=2, method="bicubic", nodata=0)
    with rasterio.open(tmp_path / "fixed.tif") as src:
        assert src.nodata == 0
        np.testing.assert_array_equal(src.read(), expected)
    with rasterio.open(tmp_path / "plain.tif") as src:
        assert src.nodata is None
        assert not np.array_equal(src.read(), expected)
    bad = run("upscale", raster.path, tmp_path / "x.tif", "--nodata", "zero")
    assert_one_line_error(bad, "--nodata 'zero' is not a number")


def test_dtype_and_bands_pick_the_output(
    tmp_path: Path, make_geotiff: Any, run: Callable[..., Run]
) -> None:
    raster = make_geotiff(tmp_path / "scene.tif", bands=4)
    out = tmp_path / "out.tif"
    result = run(
        "upscale", raster.path, out, "--bands", "4,1-2", "--dtype", "float32", "--no-progress"
    )
    assert result.status == 0, result.err
    expected = dasksr.upscale(
        raster.data[[3, 0, 1]], scale=2, method="bicubic", nodata=0, dtype="float32"
    )
    with rasterio.open(out) as src:
        assert src.dtypes == ("float32",) * 3
        assert src.descriptions == ("swir", "red", "green")
        np.testing.assert_array_equal(src.read(), expected)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--bands", "5"], ["--bands 5", "has 4 band(s), numbered 1..4"]),
        (["--bands", "0"], ["bands are numbered from 1"]),
        (["--bands", "3-1"], ["a range runs from low to high"]),
        (["--bands", "red"], ["not a list of band numbers"]),
        (["--dtype", "complex64"], ["--dtype 'complex64' is not an integer or floating-point"]),
        (["--dtype", "pixels"], ["--dtype 'pixels'"]),
        (["--resolution", "3"], ["resolution=3.0 is not the input's x pixel size 10"]),
        (["--resolution", "-5"], ["--resolution '-5' is not a positive pixel size"]),
        (["--resolution", "5", "--scale", "2"], ["give --scale or --resolution, not both"]),
        (["--report", "no-such-folder/r.html"], ["no-such-folder", "does not exist"]),
        (["--report", "r.html", "--scheduler", "threads"], ["--report needs a cluster"]),
    ],
)
def test_bad_band_dtype_and_resolution_options_are_one_line(
    tmp_path: Path, make_geotiff: Any, run: Callable[..., Run], args: list[str], words: list[str]
) -> None:
    raster = make_geotiff(tmp_path / "scene.tif", bands=4)
    result = run("upscale", raster.path, tmp_path / "out.tif", *args)
    assert_one_line_error(result, *words)
    assert listing(tmp_path) == {"scene.tif"}


def test_resolution_sets_the_output_pixel_size(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run]
) -> None:
    out = tmp_path / "fine.zarr"
    result = run("upscale", uint16_tif.path, out, "--resolution", "2.5", "--no-progress")
    assert result.status == 0, result.err
    fine = dasksr.open_raster(out)
    assert fine.rio.resolution() == (2.5, -2.5)
    np.testing.assert_array_equal(
        fine.values, dasksr.upscale(uint16_tif.data, scale=4, method="bicubic", nodata=0)
    )


def test_info_shows_the_stored_chunks(
    tmp_path: Path, make_geotiff: Any, make_zarr: Any, run: Callable[..., Run]
) -> None:
    # A 2048 x 2048 store in 512 chunks is read in 1024 chunks; info showed 1024 as "chunks".
    raster = make_geotiff(tmp_path / "scene.tif", height=2048, width=2048, tile=256, bands=1)
    store = make_zarr(tmp_path / "scene.zarr", raster, chunk=512)
    info = parse_info(run("info", store.path).out)
    assert info["chunks"] == "1 x 512 x 512"
    assert info["read as"] == "1 x 1024 x 1024"
    info = parse_info(run("info", raster.path).out)
    assert info["chunks"] == "1 x 256 x 256"


def test_small_jobs_run_in_process_and_clusters_print_their_dashboard(
    tmp_path: Path, uint16_tif: Any
) -> None:
    # In a fresh process: a small job imports neither distributed nor starts a cluster; --workers
    # starts one and says where its dashboard is; --report writes distributed's HTML report.
    code = (
        "import sys; from dasksr.cli import main; status = main(sys.argv[1:]); "
        "print('distributed' in sys.modules, file=sys.stderr); sys.exit(status)"
    )

    def dasksr_job(*args: Any) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", code, "upscale", uint16_tif.path, *args, "--no-progress"]
        return subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, timeout=120, check=False
        )

    small = dasksr_job(tmp_path / "a.tif")
    assert small.returncode == 0, small.stderr
    assert small.stderr.splitlines() == ["False"]
    report = tmp_path / "report.html"
    cluster = dasksr_job(tmp_path / "b.tif", "--workers", "1", "--report", report)
    assert cluster.returncode == 0, cluster.stderr
    lines = cluster.stderr.splitlines()
    assert any(line.startswith("dasksr: Dask dashboard at http://") for line in lines), lines
    assert f"dasksr: performance report in {report}" in lines
    assert "Dask Performance Report" in report.read_text(encoding="utf-8")
    for name in ("a.tif", "b.tif"):
        with rasterio.open(tmp_path / name) as src:
            np.testing.assert_array_equal(
                src.read(), dasksr.upscale(uint16_tif.data, scale=2, method="bicubic", nodata=0)
            )


# ----------------------------------------------------------------------------------------------
# fuse: --solver names the solver; --method, its old name, still works and says so
# ----------------------------------------------------------------------------------------------


def test_fuse_solver_option_and_its_deprecated_alias(
    tmp_path: Path, make_geotiff: Any, run: Callable[..., Run]
) -> None:
    frames = [make_geotiff(tmp_path / f"f{k}.tif", bands=1, seed=k).path for k in range(3)]
    done = run("fuse", *frames, tmp_path / "k.tif", "--solver", "kernel", "--no-progress")
    assert done.status == 0 and " by kernel; shifts (dy, dx)" in done.out
    assert "deprecated" not in done.err
    old = run("fuse", *frames, tmp_path / "m.tif", "-m", "kernel", "--no-progress")
    assert old.status == 0 and " by kernel; shifts (dy, dx)" in old.out
    assert "dasksr: warning: --method of fuse is deprecated: use --solver" in old.err
    with rasterio.open(tmp_path / "k.tif") as a, rasterio.open(tmp_path / "m.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    refused = run("fuse", *frames, tmp_path / "i.tif", "--solver", "kernel", "--iterations", "2")
    assert refused.status == 2
    assert refused.err.strip() == (
        "dasksr: error: --iterations is for --solver ibp: drop it, or use ibp"
    )
    shown = run("fuse", "--help").out
    assert "--solver [ibp|kernel]" in shown and "--method" not in shown
