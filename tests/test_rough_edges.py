"""Rough edges a new user hit (issue 23, section 4): each is one line on stderr and status 2 (130
for Ctrl-C), without a traceback, and leaves nothing that looks like a finished output."""

# ruff: noqa: F811  (the tests take test_cli's fixture `run`, imported here, as an argument)

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_cli import Run, assert_one_line_error, listing, run  # noqa: F401  (the same folder)


def one_error_line(result: Run, *words: str) -> str:
    assert_one_line_error(result, *words)
    assert result.out == ""
    return result.err.strip()


# ----------------------------------------------------------------------------------------------
# --scheduler
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["thread", "tcp://127.0.0.1", "http://127.0.0.1:8765", "127.0.0.1:0", ""]
)
@pytest.mark.parametrize("command", ["upscale", "fuse"])
def test_a_scheduler_typo_is_one_line_before_any_work(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run], command: str, address: str
) -> None:
    # "thread" and addresses without a port or of another protocol printed 55-64 line
    # tracebacks and exited 1.
    frames = [uint16_tif.path] * (2 if command == "fuse" else 1)
    result = run(command, *frames, tmp_path / "out.zarr", "--scheduler", address)
    line = one_error_line(result, f"--scheduler {address!r}", "threads", "tcp://HOST:PORT")
    assert ("did you mean threads?" in line) == (address == "thread")
    assert listing(tmp_path) == {"scene.tif"}


def test_good_scheduler_values_pass(run: Callable[..., Run]) -> None:
    from dasksr.cluster import check_scheduler

    for address in ("threads", "tcp://127.0.0.1:8786", "127.0.0.1:8786", "tls://[::1]:8786"):
        assert check_scheduler(address) == address


@pytest.mark.parametrize("output", ["out.zarr", "out.tif"])
def test_a_closed_scheduler_port_is_one_line_quickly(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run], output: str
) -> None:
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    start = time.monotonic()
    result = run("upscale", uint16_tif.path, tmp_path / output, "--scheduler", address)
    took = time.monotonic() - start
    one_error_line(result, "cannot reach the dask scheduler", repr(address), "tcp://HOST:PORT")
    assert took < 5, took  # distributed's client alone retried for 10 s
    # Checked before the output's place is touched: no partial store either.
    assert listing(tmp_path) == {"scene.tif"}


# ----------------------------------------------------------------------------------------------
# GeoTIFF partials (Ctrl-C: tests/test_cli.py)
# ----------------------------------------------------------------------------------------------


def test_a_finished_geotiff_job_removes_stale_partials(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run]
) -> None:
    stale = [
        tmp_path / ".out.tif.0badc0de.partial.tif",
        tmp_path / ".out.tif.feedf00d.partial-cog.tif",
    ]
    for path in stale:
        path.write_bytes(b"II*\x00 left by a job stopped with Ctrl-C")
    other = tmp_path / ".other.tif.0badc0de.partial.tif"  # another output's: kept
    other.write_bytes(b"II*\x00")
    done = run("upscale", uint16_tif.path, tmp_path / "out.tif")
    assert done.status == 0, done.err
    assert listing(tmp_path) == {"scene.tif", "out.tif", other.name}


def test_a_failed_geotiff_job_leaves_no_partial(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dasksr.io.geotiff_write as write

    def full(self: Any, key: Any, value: Any) -> None:
        raise write._write_failed(self.shown, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(write._GeoTIFFWriter, "__setitem__", full)
    result = run("upscale", uint16_tif.path, tmp_path / "out.tif")
    one_error_line(result, "out.tif", "No space left on device")
    assert listing(tmp_path) == {"scene.tif"}


# ----------------------------------------------------------------------------------------------
# A full disk during a Zarr write
# ----------------------------------------------------------------------------------------------


def test_a_full_disk_names_the_partial_store_and_the_ways_out(
    tmp_path: Path, uint16_tif: Any, run: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    import dasksr.io.zarr_write as write

    def full(store: str, location: Any, block: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(write, "_write_region", full)
    output = tmp_path / "out.zarr"
    result = run("upscale", uint16_tif.path, output, "--chunks", "128")
    partial = f"{output}.partial"
    one_error_line(
        result,
        f"output '{output}' cannot be written (No space left on device)",
        f"kept in {partial!r}",
        "free disk space",
        "run the job again to resume",
        f"or remove {partial!r}",
    )
    assert listing(tmp_path) == {"scene.tif", "out.zarr.partial"}
    # Once there is space again, the same command resumes and finishes.
    monkeypatch.undo()
    done = run("upscale", uint16_tif.path, output, "--chunks", "128")
    assert done.status == 0, done.err
    assert listing(tmp_path) == {"scene.tif", "out.zarr"}


# ----------------------------------------------------------------------------------------------
# An input without georeference (a photo, a microscope image)
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(5)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 255, (48, 64, 3)).astype("uint8")).save(path)
    return path


def test_a_photo_gives_one_note_and_an_output_without_georeference(photo: Path) -> None:
    # It gave 6 lines of Python warnings and an output with an invented grid (origin 0, 0,
    # pixel size +0.5).
    import rasterio

    output = photo.parent / "photo_x2.tif"
    done = subprocess.run(
        [sys.executable, "-m", "dasksr.cli", "upscale", str(photo), str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dasksr: note: ") and "no georeference" in lines[0]
    assert "Warning" not in done.stderr
    with rasterio.open(output) as src:
        assert src.crs is None and src.transform.is_identity
        assert (src.count, src.height, src.width) == (3, 96, 128)


def test_a_photo_to_zarr_has_no_grid(photo: Path, run: Callable[..., Run]) -> None:
    import xarray as xr

    output = photo.parent / "photo_x2.zarr"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run("upscale", photo, output)
    assert result.status == 0, result.err
    assert [line.split(":")[1] for line in result.err.splitlines()] == [" note"]
    assert not [w for w in caught if "georeferenc" in str(w.message).lower()]
    stored = xr.open_zarr(output)
    assert set(stored.coords) <= {"band"} and "spatial_ref" not in stored.variables
    assert "grid_mapping" not in stored["data"].attrs
    # And GDAL finds no geotransform in it.
    described = subprocess.run(
        ["gdalinfo", f'ZARR:"{output}":/data:0'], capture_output=True, text=True, timeout=60
    )
    assert described.returncode == 0 and "Origin" not in described.stdout


def test_the_api_warns_once_with_its_own_class(photo: Path) -> None:
    from dasksr.io import NoGeoreferenceWarning, open_raster

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = open_raster(photo)
        assert data.values.shape == (3, 48, 64)  # the reads: no warning from rasterio either
    from rasterio.errors import NotGeoreferencedWarning

    about = (NoGeoreferenceWarning, NotGeoreferencedWarning)
    assert [w.category for w in caught if issubclass(w.category, about)] == [NoGeoreferenceWarning]
    assert data.rio.crs is None and "spatial_ref" not in data.coords and "y" not in data.coords
