"""`fuse` on five real Sentinel-2 revisits of one area (July to September 2015; two dates fully
clouded): the clouded dates are dropped without masks, a cloud pasted into a clear date does not
print through, product masks are read, and dates that differ in radiometry register."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
import xarray as xr

import dasksr
from dasksr.data import data_path
from dasksr.multiframe import FrameDroppedWarning

pytestmark = pytest.mark.data

_FOLDER = ("rasters", "sentinel2_l1c_33T_2015_5dates_eolearn")
#: Frame i of REFERENCE_SCENES is date ORDER[i] of timestamps.json (MANIFEST.md).
_ORDER = (2, 1, 4, 3, 0)
#: B02, B03, B04, B08 in eo-learn's band order.
_BANDS = (1, 2, 3, 7)
#: The clear date of 2015-08-30, the reference.
_REFERENCE = 3


@pytest.fixture(scope="module")
def revisits() -> xr.DataArray:
    """The five dates, ``(time, band, y, x)`` uint16 DN (TOA reflectance x 10000)."""
    scenes, stamps = (
        data_path(*_FOLDER, "REFERENCE_SCENES.npy"),
        data_path(*_FOLDER, "timestamps.json"),
    )
    if scenes is None or stamps is None:
        pytest.skip("the real revisits are not on this machine: set DASKSR_DATA")
    pixels = np.load(scenes)[..., list(_BANDS)]
    dates = json.loads(stamps.read_text())
    data = (np.moveaxis(pixels, -1, 1) * 10000).round().astype(np.uint16)
    return xr.DataArray(
        data, dims=("time", "band", "y", "x"), coords={"time": [dates[k][:10] for k in _ORDER]}
    )


def _clouded(revisits: xr.DataArray) -> tuple[xr.DataArray, np.ndarray, np.ndarray]:
    """The stack with real clouds (of the two clouded dates) pasted over discs of the clear dates
    of September (37 % of it) and July (19 %), and the discs."""
    yy, xx = np.mgrid[: revisits.sizes["y"], : revisits.sizes["x"]]
    september = (yy - 50) ** 2 + (xx - 30) ** 2 < 35**2
    july = (yy - 30) ** 2 + (xx - 70) ** 2 < 25**2
    data = revisits.values.copy()
    data[2][:, september] = data[0][:, september]
    data[4][:, july] = data[1][:, july]
    return revisits.copy(data=data), september, july


def _coarse(fine: Any) -> np.ndarray:
    """The fine result area-averaged back onto the frames' grid."""
    values = np.asarray(fine, dtype=np.float64)
    b, ny, nx = values.shape
    return values.reshape(b, ny // 2, 2, nx // 2, 2).mean(axis=(2, 4))


def _contrast(values: Any, where: np.ndarray | None = None) -> np.ndarray:
    """Mean gradient magnitude per band (8 border pixels left out), over ``where`` when given."""
    gy, gx = np.gradient(np.asarray(values, dtype=np.float64), axis=(-2, -1))
    magnitude = np.hypot(gy, gx)
    inner = np.zeros(magnitude.shape[-2:], bool)
    inner[8:-8, 8:-8] = True
    use = inner if where is None else inner & where
    return magnitude[:, use].mean(axis=-1)


def _single(revisits: xr.DataArray) -> np.ndarray:
    reference = revisits.isel(time=_REFERENCE, drop=True)
    return dasksr.upscale(reference, scale=2, method="cnn-sensor").values


def test_fully_clouded_dates_are_dropped_without_masks(revisits: xr.DataArray) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FrameDroppedWarning)
        out = dasksr.fuse(revisits, 2, reference=_REFERENCE)
    dropped = sorted(str(w.message).split()[1] for w in caught)
    assert dropped == ["2015-07-31", "2015-08-20"]
    assert out.attrs["fuse_frames"] == ["2015-09-09", "2015-08-30", "2015-07-11"]
    assert [d.split(":")[0] for d in out.attrs["fuse_dropped"]] == ["2015-08-20", "2015-07-31"]
    # Never hazier than the single-image result of the reference.
    assert np.all(_contrast(out.values) >= _contrast(_single(revisits)))


def test_a_clouded_reference_alone_gives_its_single_image_result(revisits: xr.DataArray) -> None:
    clouded_only = revisits.isel(time=[_REFERENCE, 0, 1])
    with pytest.warns(FrameDroppedWarning):
        out = dasksr.fuse(clouded_only, 2, reference=0)
    np.testing.assert_array_equal(out.values, _single(revisits))
    assert out.attrs["fuse_solver"] == "single-image cnn-sensor"


def _options() -> dict[str, Any]:
    # The frames count (not the prior alone), and every run assumes one PSF: only masks differ.
    return {"reference": _REFERENCE, "iterations": 4, "psf_sigma": 0.5}


def _fused(stack: xr.DataArray, masks: Any = None, rule: str = "nonzero") -> xr.DataArray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FrameDroppedWarning)
        return dasksr.fuse(stack, 2, masks=masks, mask_rule=rule, **_options())


def _cloud_masks(september: np.ndarray, july: np.ndarray) -> np.ndarray:
    masks = np.zeros((5, *september.shape), bool)
    masks[:2] = True
    masks[2][september] = True
    masks[4][july] = True
    return masks


def test_real_clouds_do_not_print_through(revisits: xr.DataArray) -> None:
    """Unflagged, the pasted clouds change the result by at most 10 DN on average over them
    against the same clouds flagged (they are 1500 DN and more above the ground)."""
    stack, september, july = _clouded(revisits)
    unflagged = _fused(stack)
    flagged = _fused(stack, _cloud_masks(september, july))
    assert unflagged.attrs["fuse_frames"] == ["2015-09-09", "2015-08-30", "2015-07-11"]
    excess = (stack.values[2] - revisits.values[2]).astype(float)[:, september].mean(axis=-1)
    assert np.all(excess > 1500)
    for cloud in (september, july):
        bias = (_coarse(unflagged.values) - _coarse(flagged.values))[:, cloud].mean(axis=-1)
        assert np.all(np.abs(bias) <= 10), bias
    # 4 iterations forced (the default chooses 0 here): the near infrared loses up to 4 %.
    assert np.all(_contrast(unflagged.values) >= 0.95 * _contrast(_single(revisits)))


def test_quality_layers_are_read_as_masks(revisits: xr.DataArray) -> None:
    """The same clouds as boolean masks, a Sentinel-2 SCL (4 vegetation, 8 and 9 clouds) and a
    Landsat QA_PIXEL (21824 clear, 22280 cloud) give the same result."""
    stack, september, july = _clouded(revisits)
    clouds = _cloud_masks(september, july)
    scl = np.where(clouds, 9, 4).astype(np.uint8)
    scl[4][july] = 8
    qa_pixel = np.where(clouds, 22280, 21824).astype(np.uint16)
    expected = _fused(stack, clouds).values
    np.testing.assert_array_equal(_fused(stack, scl, "scl").values, expected)
    np.testing.assert_array_equal(_fused(stack, qa_pixel, "qa_pixel").values, expected)
    assert not np.array_equal(_fused(stack).values, expected)


def test_dates_months_apart_register(revisits: xr.DataArray) -> None:
    """July and September against late August (NIR 10 % brighter in July): the shifts found on
    crops moved by whole pixels move by exactly those pixels."""
    whole = dasksr.fuse(revisits.isel(time=[2, 3, 4]), 2, reference=1, solver="kernel")
    moved = revisits.isel(time=[2, 3, 4]).values
    crop = np.stack([moved[0, :, 2:-2, 1:-3], moved[1, :, 1:-3, 1:-3], moved[2, :, 1:-3, 3:-1]])
    cropped = dasksr.fuse(
        revisits.isel(time=[2, 3, 4], y=slice(0, 97), x=slice(0, 96)).copy(data=crop),
        2,
        reference=1,
        solver="kernel",
    )
    for key, expected in (("fuse_shift_y", (1, 0, 0)), ("fuse_shift_x", (0, 0, 2))):
        change = np.subtract(cropped.attrs[key], whole.attrs[key])
        np.testing.assert_allclose(change, expected, atol=0.1)
    assert abs(whole.attrs["fuse_shift_y"][2] + 0.53) < 0.1  # July: about half a pixel off
