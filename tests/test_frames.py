"""`dasksr.open_stack` and the grid check: the frames of a scene as `dasksr.fuse` takes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dasksr
from dasksr.errors import InvalidArgumentError
from dasksr.frames import check_same_grid, open_frame, open_stack


@pytest.fixture
def frames(tmp_path: Path, make_geotiff: Callable[..., Any]) -> list[Any]:
    """Three 2-band uint16 frames on one grid (70 x 90, nodata 0 in a corner), other noise each."""
    return [make_geotiff(tmp_path / f"day{k}.tif", bands=2, seed=k) for k in range(3)]


def test_open_stack_is_public_and_stacks_the_frames_lazily(frames: list[Any]) -> None:
    assert dasksr.open_stack is open_stack
    stack, masks = dasksr.open_stack([f.path for f in frames], chunks=32)
    assert masks is None
    assert stack.dims == ("time", "band", "y", "x") and stack.shape == (3, 2, 70, 90)
    assert list(stack["time"].values) == ["day0", "day1", "day2"]
    assert stack.chunks is not None  # nothing read yet
    np.testing.assert_array_equal(stack.values, np.stack([f.data for f in frames]))
    assert stack.rio.transform() == frames[0].transform


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        (lambda d: d.isel(y=slice(0, 60)), "size 90 x 60 instead of 90 x 70"),
        (lambda d: d.rio.write_crs("EPSG:32634"), "CRS EPSG:32634 instead of EPSG:32633"),
        (
            lambda d: d.assign_coords(x=d.x + 10.0),
            "transform (10, 0, 399970, 0, -10, 5000040) instead of "
            "(10, 0, 399960, 0, -10, 5000040)",
        ),
        (lambda d: d.isel(band=[0]), "1 band(s) instead of 2"),
    ],
)
def test_a_frame_off_the_grid_is_named_with_the_difference(
    frames: list[Any], change: Callable[[Any], Any], difference: str
) -> None:
    first = open_frame(frames[0].path)
    check_same_grid(first, open_frame(frames[1].path), names=("a", "b"))  # the same grid
    with pytest.raises(InvalidArgumentError) as error:
        check_same_grid(first, change(first), names=("a.tif", "b.tif"))
    assert str(error.value) == (
        f"frame b.tif is not on the grid of a.tif: {difference}; "
        "resample the frames to one grid first"
    )


def test_open_stack_refuses_frames_on_other_grids(
    tmp_path: Path, frames: list[Any], make_geotiff: Callable[..., Any]
) -> None:
    other = make_geotiff(tmp_path / "small.tif", bands=2, height=60)
    with pytest.raises(
        InvalidArgumentError, match=r"small\.tif is not on the grid of .*day0\.tif: "
    ):
        open_stack([frames[0].path, other.path])


def test_one_frame_without_time_is_refused(frames: list[Any]) -> None:
    with pytest.raises(InvalidArgumentError, match="is one frame: fuse needs at least 2"):
        open_stack(frames[0].path)


def test_mask_band_is_taken_out_as_the_masks(frames: list[Any]) -> None:
    stack, masks = open_stack([f.path for f in frames], mask_band=2)
    assert stack.shape == (3, 1, 70, 90)
    assert masks is not None and masks.dims == ("time", "y", "x") and masks.dtype == bool
    np.testing.assert_array_equal(masks.values, np.stack([f.data[1] != 0 for f in frames]))
    np.testing.assert_array_equal(stack.values[:, 0], np.stack([f.data[0] for f in frames]))


def test_a_mask_band_the_frames_cannot_spare_is_refused(
    tmp_path: Path, frames: list[Any], make_geotiff: Callable[..., Any]
) -> None:
    with pytest.raises(InvalidArgumentError) as error:
        open_stack([f.path for f in frames], mask_band=3)
    assert str(error.value) == "--mask-band 3 is not a band of the frames (2 band(s))"
    single = [make_geotiff(tmp_path / f"one{k}.tif", bands=1).path for k in range(2)]
    with pytest.raises(InvalidArgumentError) as error:
        open_stack(single, mask_band=1)
    assert str(error.value) == "--mask-band 1: the frames need a band besides the mask band"


def test_mask_files_are_read_as_invalid_flags_and_joined_to_the_mask_band(
    tmp_path: Path, frames: list[Any], make_geotiff: Callable[..., Any]
) -> None:
    masks = [
        make_geotiff(tmp_path / f"mask{k}.tif", bands=1, nodata=0, seed=10 + k) for k in range(3)
    ]
    paths = [f.path for f in frames]
    _, from_files = open_stack(paths, masks=[m.path for m in masks])
    assert from_files is not None and from_files.shape == (3, 70, 90)
    assert list(from_files["time"].values) == ["day0", "day1", "day2"]
    np.testing.assert_array_equal(from_files.values, np.stack([m.data[0] != 0 for m in masks]))
    _, both = open_stack(paths, masks=[m.path for m in masks], mask_band=2)
    assert both is not None
    expected = [(m.data[0] != 0) | (f.data[1] != 0) for m, f in zip(masks, frames, strict=True)]
    np.testing.assert_array_equal(both.values, np.stack(expected))


def test_masks_of_another_count_size_or_band_count_are_refused(
    tmp_path: Path, frames: list[Any], make_geotiff: Callable[..., Any]
) -> None:
    paths = [f.path for f in frames]
    good = make_geotiff(tmp_path / "good.tif", bands=1).path
    small = make_geotiff(tmp_path / "small.tif", bands=1, height=10).path
    wide = make_geotiff(tmp_path / "wide.tif", bands=2).path
    with pytest.raises(InvalidArgumentError, match=r"^2 mask\(s\) for 3 frames: give one"):
        open_stack(paths, masks=[good, good])
    with pytest.raises(InvalidArgumentError, match=r"small\.tif is 90 x 10 pixels but the frames"):
        open_stack(paths, masks=[good, small, good])
    with pytest.raises(
        InvalidArgumentError, match=r"wide\.tif has 2 bands: give single-band masks"
    ):
        open_stack(paths, masks=[good, good, wide])


def test_quality_layers_are_decoded_by_their_rule(
    tmp_path: Path, frames: list[Any], make_geotiff: Callable[..., Any]
) -> None:
    paths = [f.path for f in frames]
    scl = [
        make_geotiff(tmp_path / f"S2_SCL_{k}.tif", bands=1, dtype="uint8", nodata=None, seed=k)
        for k in range(3)
    ]
    _, auto = open_stack(paths, masks=[m.path for m in scl])  # named SCL: read as one
    assert auto is not None
    invalid_classes = np.stack([np.isin(m.data[0], (0, 1, 3, 8, 9, 10)) for m in scl])
    np.testing.assert_array_equal(auto.values, invalid_classes)
    _, nonzero = open_stack(paths, masks=[m.path for m in scl], mask_rule="nonzero")
    assert nonzero is not None
    np.testing.assert_array_equal(nonzero.values, np.stack([m.data[0] != 0 for m in scl]))
    _, band = open_stack(paths, mask_band=2, mask_rule="qa_pixel")  # fill, clouds, shadow bits
    assert band is not None
    np.testing.assert_array_equal(band.values, np.stack([(f.data[1] & 31) != 0 for f in frames]))
    _, classes = open_stack(paths, mask_band=2, mask_rule="classes:0,7")
    assert classes is not None
    np.testing.assert_array_equal(
        classes.values, np.stack([np.isin(f.data[1], (0, 7)) for f in frames])
    )
    with pytest.raises(InvalidArgumentError, match="mask rule 'clouds' is not known"):
        open_stack(paths, mask_band=2, mask_rule="clouds")
