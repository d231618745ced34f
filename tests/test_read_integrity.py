"""No stale or mixed data (issue 8): inputs changed after they were opened, the shared block cache,
the user's GDAL settings and persisted arrays."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest

import dasksr
from dasksr.errors import InputError
from dasksr.io import clear_cache, open_raster
from dasksr.sources import source_window


def _rewrite_geotiff(path: Path, value: int) -> None:
    """Overwrite every pixel in place (same size and layout), as an editing tool would."""
    import rasterio

    time.sleep(0.01)  # a new modification time even on coarse clocks
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((dst.count, dst.height, dst.width), value, dtype=dst.dtypes[0]))


def _rewrite_zarr_chunk(store: Path, value: int) -> None:
    """Rewrite the first stored chunk in place; the metadata and every other chunk stay."""
    import zarr

    time.sleep(0.01)
    array = zarr.open_array(str(store), path="data", mode="r+")
    array[:, :32, :32] = value


@pytest.mark.parametrize("fixture", ["uint16_tif", "uint16_zarr"])
def test_input_changed_after_open_fails_naming_it(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    raster = request.getfixturevalue(fixture)
    data = open_raster(raster.path, chunks=32)
    fine = data.sr.upscale(scale=2, method="bicubic")
    with dask.config.set(scheduler="threads"):
        before = fine.values  # every block is now in the shared cache
    if fixture == "uint16_tif":
        _rewrite_geotiff(raster.path, 7)
    else:
        _rewrite_zarr_chunk(raster.path, 7)
    # Cached blocks are not served for a changed input, and fresh reads fail too.
    for lazy in (fine, data):
        with pytest.raises(InputError, match=rf"input {str(raster.path)!r} changed after it"):
            lazy.compute(scheduler="threads")
    # Opened again, the input gives its new pixels (never the cached old blocks).
    again = open_raster(raster.path, chunks=32).sr.upscale(scale=2, method="bicubic")
    with dask.config.set(scheduler="threads"):
        after = again.values
    assert (after[:, :48, :48] == 7).all()
    assert not (before[:, :48, :48] == 7).all()


def test_a_job_never_mixes_old_and_new_pixels(tmp_path: Path, make_geotiff: Any) -> None:
    # The file changes after the first blocks of the job are read: the job fails.
    raster = make_geotiff(tmp_path / "in.tif", height=128, width=128, tile=32)
    fine = open_raster(raster.path, chunks=32).sr.upscale(scale=2, method="bilinear")
    done: list[int] = []

    def change_after_first_block(key: Any, dsk: Any, state: Any) -> None:
        if not done:
            done.append(1)
            _rewrite_geotiff(raster.path, 9)

    with (
        dask.callbacks.Callback(posttask=lambda *a: change_after_first_block(*a[:3])),
        pytest.raises(InputError, match="changed after it was opened"),
    ):
        fine.compute(scheduler="synchronous")
    assert done


def test_sharded_and_v2_zarr_stores_are_checked_chunk_by_chunk(tmp_path: Path) -> None:
    import zarr

    pixels = np.arange(2 * 40 * 50, dtype=np.uint16).reshape(2, 40, 50)
    for name, version, options in (
        ("v2.zarr", 2, {"chunks": (1, 16, 16)}),
        (
            "sharded.zarr",
            3,
            {"chunks": (1, 8, 8), "shards": (1, 16, 16), "dimension_names": ("band", "y", "x")},
        ),
    ):
        group = zarr.open_group(str(tmp_path / name), mode="w", zarr_format=version)
        array = group.create_array("data", shape=pixels.shape, dtype="uint16", **options)
        if version == 2:
            array.attrs["_ARRAY_DIMENSIONS"] = ["band", "y", "x"]
        array[...] = pixels
        data = open_raster(tmp_path / name)
        assert source_window(data) is not None
        np.testing.assert_array_equal(data.values, pixels)
        time.sleep(0.01)
        array[:, 20:24, 30:34] = 1  # one stored chunk (or shard) rewritten
        with pytest.raises(InputError, match="changed after it was opened"):
            data.sr.upscale(scale=2, method="bilinear").compute(scheduler="threads")
        np.testing.assert_array_equal(open_raster(tmp_path / name).values[:, 20:24, 30:34], 1)


def test_clear_cache_drops_decoded_blocks_and_open_files(uint16_tif: Any) -> None:
    from dasksr.io import readers as read

    data = open_raster(uint16_tif.path, chunks=32)
    data.compute(scheduler="synchronous")
    assert read._cache and read._local.__dict__.get("handles")
    opened = [handle for _, handle in read._local.handles.values()]
    clear_cache()
    assert not read._cache and read._cache_bytes == 0
    # This thread's files are closed at its next read, not dropped open.
    np.testing.assert_array_equal(data.compute(scheduler="synchronous").values, uint16_tif.data)
    assert opened and all(handle.closed for handle in opened)
    assert not any(h in opened for _, h in read._local.handles.values())
    np.testing.assert_array_equal(data.compute(scheduler="threads").values, uint16_tif.data)


def test_reads_leave_the_users_gdal_settings_alone(
    uint16_tif: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rasterio.env import get_gdal_config

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    clear_cache()
    open_raster(uint16_tif.path).sr.upscale(scale=2).compute(scheduler="threads")
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_a_persisted_array_is_upscaled_from_its_persisted_blocks(
    tmp_path: Path, make_geotiff: Any
) -> None:
    raster = make_geotiff(tmp_path / "in.tif")
    data = open_raster(raster.path, chunks=32)
    kept = data.persist(scheduler="synchronous")
    assert source_window(data) is not None
    assert source_window(kept) is None
    os.remove(raster.path)
    clear_cache()  # nothing of the file is left in this process
    fine = kept.sr.upscale(scale=2, method="bicubic")
    with dask.config.set(scheduler="threads"):
        expected = dasksr.upscale(raster.data, scale=2, method="bicubic", nodata=raster.nodata)
        np.testing.assert_array_equal(fine.values, expected)
