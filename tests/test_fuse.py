"""Multi-frame fusion: kernels against independent references, the seamless contract, clouds,
bad input and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers the rio accessor)
import xarray as xr
from affine import Affine
from scipy.ndimage import shift as ndi_shift

import dasksr
from dasksr.cli import main
from dasksr.errors import InvalidArgumentError
from dasksr.kernels import fuse as K
from dasksr.multiframe import FrameDroppedWarning, fuse_numpy
from dasksr.sensor import textured_scene as scene

# ------------------------------------------------------------------------------------------------
# Kernels


def test_cubic_shift_matches_scipy_spline_on_smooth_data() -> None:
    image = scene(64)
    ours = K.cubic_shift(image, 0.3, -0.6)
    # scipy's shift moves content by +shift: sampling at i + d is shift by -d.
    theirs = ndi_shift(image, (-0.3, 0.6), order=3, mode="nearest")
    inner = (slice(4, -4), slice(4, -4))
    assert np.abs(ours[inner] - theirs[inner]).max() < 0.01 * np.ptp(image)


@pytest.mark.parametrize("shift", [(0.37, -0.81), (-0.5, 0.25), (1.6, -2.3)])
def test_registration_recovers_known_shifts(shift: tuple[float, float]) -> None:
    hr = scene(256, seed=3)
    ref = dasksr.degrade_sensor(hr, 2, sigma=0.5, snr=40, seed=1)
    mov = dasksr.degrade_sensor(hr, 2, sigma=0.5, shift=shift, snr=40, seed=2)
    pc = K.phase_shift(ref, mov)
    assert np.abs(pc - shift).max() < 0.1
    refined, gain, _offset, used = K.refine_shift(ref, mov, pc)
    assert np.abs(refined - shift).max() < 0.03
    assert abs(gain - 1) < 0.01 and used > 1000


def test_registration_with_masks_ignores_the_masked_cloud() -> None:
    hr = scene(256, seed=4)
    ref = dasksr.degrade_sensor(hr, 2, sigma=0.5, snr=40, seed=1)
    mov = dasksr.degrade_sensor(hr, 2, sigma=0.5, shift=(0.4, -0.7), snr=40, seed=2)
    cloud = np.zeros(mov.shape, bool)
    cloud[20:80, 30:100] = True
    mov = np.where(cloud, 5000.0, mov)
    pc = K.phase_shift(ref, mov, moving_valid=~cloud)
    refined, *_ = K.refine_shift(ref, mov, pc, moving_valid=~cloud)
    assert np.abs(refined - (0.4, -0.7)).max() < 0.03


def test_robust_linear_fit_ignores_outliers() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1000, 5000)
    y = 1.2 * x - 30 + rng.normal(0, 2, x.size)
    y[:1000] += 300  # a cloud over a fifth of the pixels
    gain, offset = K.robust_linear_fit(x, y)
    assert abs(gain - 1.2) < 0.005 and abs(offset + 30) < 3


def test_fusion_of_exactly_shifted_samples_interleaves_them() -> None:
    """Four frames shifted by half a pixel sample the fine grid exactly: nearest-sample fusion
    (``kernel_sigma`` tiny) returns the fine image itself."""
    rng = np.random.default_rng(1)
    fine = rng.uniform(0, 100, (40, 40))
    # Fine pixel 2m + p sits at m + (p + 0.5) / 2 - 0.5, i.e. m - 0.25 or m + 0.25.
    shifts = [(-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25)]
    frames = np.stack([fine[(dy > 0) :: 2, (dx > 0) :: 2] for dy, dx in shifts])[:, None]
    params = K.FuseParams(
        scale=2,
        shifts=tuple(shifts),
        gains=((1.0,),) * 4,
        offsets=((0.0,),) * 4,
        noise=((1.0,),) * 4,
        kernel_sigma=0.05,
        iterations=0,
        kappa=1e9,
    )
    out, empty = K.fuse_block(frames, None, params, halo=0, work=np.float64)
    assert not empty.any()
    np.testing.assert_allclose(out[0], fine, atol=1e-9)


def test_fused_constant_stays_constant_with_iterations() -> None:
    frames = np.full((3, 1, 30, 30), 50.0)
    params = K.FuseParams(
        scale=3,
        shifts=((0, 0), (0.3, -0.2), (-0.6, 0.5)),
        gains=((1.0,),) * 3,
        offsets=((0.0,),) * 3,
        noise=((1.0,),) * 3,
    )
    out = fuse_numpy(frames, None, params)
    np.testing.assert_allclose(out, 50.0, atol=1e-9)


# ------------------------------------------------------------------------------------------------
# The seamless contract and the API


@pytest.mark.parametrize(
    ("dtype", "scale", "chunks", "masked"),
    [
        (np.float32, 2, (17, 23), False),
        (np.uint16, 2, (40, 9), True),
        (np.uint8, 3, (31, 31), False),
        (np.float64, 4, (5, 64), True),
    ],
)
def test_chunked_fuse_equals_whole_scene(dtype: Any, scale: int, chunks: Any, masked: bool) -> None:
    hr = scene(scale * 60, seed=5, level=120)
    frames, _, masks = dasksr.simulate_stack(
        np.clip(hr, 0, None).astype(dtype), 4, scale, snr=40, clouds=0.2 if masked else None, seed=2
    )
    whole = dasksr.fuse(frames, scale, masks=masks).values
    chunked = dasksr.fuse(frames.chunk({"y": chunks[0], "x": chunks[1]}), scale, masks=masks).values
    assert chunked.dtype == dtype
    if np.dtype(dtype).kind == "f":
        assert np.nanmax(np.abs(chunked - whole)) <= 1e-5 * np.ptp(hr)
    else:
        np.testing.assert_array_equal(chunked, whole)


def test_result_is_georeferenced_and_reports_what_was_done() -> None:
    hr = xr.DataArray(
        scene(128)[None].repeat(2, axis=0),
        dims=("band", "y", "x"),
        coords={
            "band": [1, 2],
            "y": 5000.0 - np.arange(128) * 5 - 2.5,
            "x": 300.0 + np.arange(128) * 5 + 2.5,
        },
    ).rio.write_crs("EPSG:32633")
    frames, shifts, _ = dasksr.simulate_stack(hr, 3, 2, snr=40, seed=1)
    frames = frames.rio.write_nodata(0)
    out = frames.chunk({"x": 32}).sr.fuse(2)
    assert out.dims == ("band", "y", "x") and out.shape == (2, 128, 128)
    assert out.rio.crs == frames.rio.crs and out.rio.nodata == 0
    assert out.rio.transform() == frames.rio.transform() @ Affine.scale(0.5)
    assert out.attrs["fuse_frames"] == ["0", "1", "2"]
    np.testing.assert_allclose(out.attrs["fuse_shift_y"], shifts[:, 0], atol=0.05)
    np.testing.assert_allclose(out.attrs["fuse_shift_x"], shifts[:, 1], atol=0.05)
    assert isinstance(out.data, da.Array)


def test_fusion_beats_bicubic_of_the_reference() -> None:
    hr = scene(192, seed=7)
    frames, _, _ = dasksr.simulate_stack(hr, 8, 2, snr=40, seed=3)
    fused = dasksr.fuse(frames, 2).values
    bicubic = dasksr.upscale(frames.values[0], scale=2, method="bicubic")
    crop = (slice(16, -16), slice(16, -16))
    gain = dasksr.psnr(fused[crop], hr[crop], data_range=np.ptp(hr)) - dasksr.psnr(
        bicubic[crop], hr[crop], data_range=np.ptp(hr)
    )
    assert gain > 3.0


def test_noisier_stacks_get_fewer_iterations() -> None:
    hr = scene(192, seed=7)
    chosen = {}
    for snr in (30, 60):
        frames, _, _ = dasksr.simulate_stack(hr, 6, 2, snr=snr, seed=3)
        chosen[snr] = dasksr.fuse(frames, 2).attrs["fuse_iterations"]
    assert chosen[30] < chosen[60]
    fixed = dasksr.fuse(frames, 2, iterations=3)
    assert fixed.attrs["fuse_iterations"] == 3
    assert dasksr.fuse(frames, 2, solver="kernel").attrs["fuse_iterations"] == 0


# ------------------------------------------------------------------------------------------------
# Clouds: 3 frames, 2 with unflagged bright clouds (60 DN, 20 % of the pixels each, overlapping)


def _area_average(fine: np.ndarray, scale: int) -> np.ndarray:
    ny, nx = fine.shape
    return fine.reshape(ny // scale, scale, nx // scale, scale).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def cloudy() -> Any:
    hr = scene(384, seed=11)
    stack = dasksr.simulate_stack(hr, 3, 2, snr=40, clouds=0.2, cloud_brightness=60, seed=4)
    clear = dasksr.degrade_sensor(hr, 2, sigma=0.5)  # the clear reference, noise-free
    return stack, clear


def test_simulated_clouds_are_as_asked(cloudy: Any) -> None:
    (frames, _, masks), clear = cloudy
    m = masks.values
    assert not m[0].any()
    assert all(abs(m[k].mean() - 0.2) < 0.01 for k in (1, 2))
    overlap = (m[1] & m[2]).mean()
    assert 0 < overlap < 0.2
    plain_mean = frames.values.astype(float).mean(axis=0)
    assert 20 < (plain_mean - clear)[m[1] | m[2]].mean() < 40  # a plain mean is off by ~+30


def test_gains_and_offsets_are_not_pulled_by_unflagged_clouds(cloudy: Any) -> None:
    (frames, _, _), _ = cloudy
    found = K.register_frames(frames.values[:, None])
    for frame in found[1:]:
        assert abs(frame.gain[0] - 1) < 0.005 and abs(frame.offset[0]) < 5


@pytest.mark.parametrize(("with_masks", "limit"), [(False, 10.0), (True, 2.0)])
def test_clouds_do_not_print_through(cloudy: Any, with_masks: bool, limit: float) -> None:
    (frames, _, masks), clear = cloudy
    fused = dasksr.fuse(frames, 2, masks=masks if with_masks else None).values
    back = _area_average(fused, 2)
    where = masks.values[1] | masks.values[2]
    error = (back - clear)[where]
    assert abs(error.mean()) < limit
    assert np.percentile(np.abs(error), 95) < 3 * limit + 30


@pytest.mark.parametrize("reference", [0, 1])
def test_eager_threads_do_not_change_the_result(cloudy: Any, reference: int) -> None:
    """Registration, the PSF's estimate and the choice of iterations run in a thread pool sized by
    dask's num_workers; the per-frame (per-width) results are combined in order, so any pool gives
    the same bits, the estimated PSF width included (also on
    the fallback anchor, taken where the reference is masked: reference=1 is clouded)."""
    import dask

    from dasksr.multiframe import eager_threads

    (frames, _, masks), _ = cloudy
    results = []
    for threads in (1, 3):
        with dask.config.set(scheduler="threads", num_workers=threads):
            assert eager_threads() == threads
            fused = dasksr.fuse(
                frames.chunk({"y": 96, "x": 96}), 2, masks=masks, reference=reference
            )
            results.append((fused.values, fused.attrs))
    (one, attrs_one), (three, attrs_three) = results
    np.testing.assert_array_equal(one, three)
    assert attrs_one == attrs_three
    assert attrs_one["fuse_iterations"] >= 1


def test_pixels_masked_in_every_frame_are_nodata() -> None:
    hr = scene(128)
    frames, _, _ = dasksr.simulate_stack(hr.astype(np.float32), 3, 2, snr=40, seed=1)
    masks = np.zeros((3, 64, 64), bool)
    masks[:, 20:30, 20:30] = True
    out = dasksr.fuse(frames, 2, masks=masks).values
    assert np.isnan(out[44:56, 44:56]).all()
    assert np.isfinite(out[:36]).all()


# ------------------------------------------------------------------------------------------------
# Bad input


def _frames(n: int = 3, size: int = 64) -> xr.DataArray:
    return dasksr.simulate_stack(scene(2 * size), n, 2, snr=40, seed=1).frames


def test_one_frame_suggests_upscale() -> None:
    with pytest.raises(InvalidArgumentError, match="use upscale"):
        dasksr.fuse(_frames(1), 2)


def test_mismatched_mask_shape() -> None:
    with pytest.raises(InvalidArgumentError, match="one mask per frame"):
        dasksr.fuse(_frames(3), 2, masks=np.zeros((3, 10, 10), bool))


def test_entirely_masked_frame_is_dropped_with_a_warning() -> None:
    masks = np.zeros((3, 64, 64), bool)
    masks[1] = True
    with pytest.warns(FrameDroppedWarning, match="frame 1 is entirely masked"):
        out = dasksr.fuse(_frames(3), 2, masks=masks)
    assert out.attrs["fuse_frames"] == ["0", "2"]


def test_only_the_reference_left_gives_the_single_image_result() -> None:
    masks = np.zeros((2, 64, 64), bool)
    masks[1] = True
    frames = _frames(2)
    with pytest.warns(FrameDroppedWarning, match="frame 1 is entirely masked"):
        out = dasksr.fuse(frames, 2, masks=masks)
    single = dasksr.upscale(frames.isel(time=0, drop=True), scale=2, method="cnn-sensor")
    np.testing.assert_array_equal(out.values, single.values)
    assert out.attrs["fuse_solver"] == "single-image cnn-sensor"
    assert out.attrs["fuse_dropped"] == ["1: is entirely masked in the registration window"]
    assert out.rio.transform() == single.rio.transform()
    with pytest.warns(FrameDroppedWarning), pytest.raises(InvalidArgumentError, match="at least 2"):
        dasksr.fuse(frames, 2, masks=masks, fallback=None)


def test_unrelated_frame_is_dropped() -> None:
    frames = _frames(3).copy()
    frames[2] = np.random.default_rng(0).uniform(0, 2000, frames.shape[1:])
    with pytest.warns(FrameDroppedWarning, match="frame 2"):
        out = dasksr.fuse(frames, 2)
    assert out.attrs["fuse_frames"] == ["0", "1"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": 1}, "scale"),
        ({"dim": "date"}, "dim="),
        ({"solver": "magic"}, "solver"),
        ({"iterations": -1}, "iterations"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        dasksr.fuse(_frames(2), **kwargs)


# ------------------------------------------------------------------------------------------------
# Command line


def _write_frames(
    folder: Path, frames: xr.DataArray, *, transform: Affine | None = None
) -> list[Path]:
    paths = []
    base = Affine(10, 0, 500000, 0, -10, 4000000)
    for k in range(frames.sizes["time"]):
        path = folder / f"frame{k}.tif"
        values = np.asarray(frames[k].values)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=values.shape[-1],
            height=values.shape[-2],
            count=1,
            dtype=values.dtype,
            crs="EPSG:32633",
            transform=(transform if (transform is not None and k == 1) else base),
        ) as dst:
            dst.write(values, 1)
        paths.append(path)
    return paths


def test_cli_fuses_frames_and_prints_each_shift(tmp_path: Path, capsys: Any) -> None:
    frames = _frames(3)
    paths = _write_frames(tmp_path, frames.astype(np.uint16))
    out = tmp_path / "fused.tif"
    assert (
        main(
            ["fuse", *map(str, paths), str(out), "--scale", "2", "--chunks", "128", "--no-progress"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "wrote" in printed and "frame1 (" in printed and "frame2 (" in printed
    with rasterio.open(out) as src:
        assert src.shape == (128, 128) and src.dtypes[0] == "uint16"
        assert src.transform == Affine(5, 0, 500000, 0, -5, 4000000)


def test_cli_iterations_are_used_and_reported(tmp_path: Path, capsys: Any) -> None:
    paths = _write_frames(tmp_path, _frames(3).astype(np.uint16))
    base = ["fuse", *map(str, paths), "--scale", "2", "--chunks", "128", "--no-progress"]
    outputs = {}
    for iterations in ("0", "3"):
        out = tmp_path / f"fused{iterations}.tif"
        assert main([*base[:4], str(out), *base[4:], "--iterations", iterations]) == 0
        assert f"by ibp, {iterations} iterations, PSF sigma " in capsys.readouterr().out
        with rasterio.open(out) as src:
            outputs[iterations] = src.read(1)
    assert not np.array_equal(outputs["0"], outputs["3"])
    status = main(
        [*base[:4], str(tmp_path / "k.tif"), *base[4:], "-m", "kernel", "--iterations", "2"]
    )
    assert status == 2
    assert "--iterations is for --method ibp" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["one-frame", "other-grid", "mask-shape", "mask-rule", "fallback"])
def test_cli_bad_input_is_one_line_and_status_2(tmp_path: Path, capsys: Any, case: str) -> None:
    frames = _frames(2).astype(np.uint16)
    shifted = Affine(10, 0, 500010, 0, -10, 4000000)
    paths = _write_frames(tmp_path, frames, transform=shifted if case == "other-grid" else None)
    out = tmp_path / "fused.tif"
    args = ["fuse", *map(str, paths), str(out)]
    if case == "one-frame":
        args = ["fuse", str(paths[0]), str(out)]
    if case in ("mask-rule", "fallback"):
        args += ["--mask-band", "1", "--mask-rule", "clouds"] if case == "mask-rule" else []
        args += ["--fallback", "nearest-ish"] if case == "fallback" else []
    if case == "mask-shape":
        masks = xr.DataArray(np.zeros((2, 10, 64), np.uint8), dims=("time", "y", "x"))
        mask_paths = _write_frames(
            tmp_path / "m" if (tmp_path / "m").mkdir() is None else tmp_path, masks
        )
        args += [f"--masks={p}" for p in mask_paths]
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("dasksr: error")]
    assert len(lines) == 1, err
    expected = {
        "one-frame": "use upscale",
        "other-grid": "frame1.tif is not on the grid",
        "mask-shape": "is 64 x 10 pixels",
        "mask-rule": "mask rule 'clouds' is not known",
        "fallback": "nearest-ish",
    }[case]
    assert expected in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("fallback", [None, "lanczos"])
def test_cli_with_every_other_frame_dropped_writes_the_single_image_result(
    tmp_path: Path, capsys: Any, fallback: str | None
) -> None:
    paths = _write_frames(tmp_path, _frames(2).astype(np.uint16))
    masks = xr.DataArray(np.zeros((2, 64, 64), np.uint8), dims=("time", "y", "x"))
    masks[1] = 1
    mask_paths = _write_frames(
        tmp_path / "m" if (tmp_path / "m").mkdir() is None else tmp_path, masks
    )
    out = tmp_path / "fused.tif"
    args = ["fuse", *map(str, paths), str(out), *[f"--masks={p}" for p in mask_paths]]
    args += [] if fallback is None else ["--fallback", fallback]
    method = fallback or "cnn-sensor"
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "dasksr: warning: frame frame1 is entirely masked" in captured.err
    assert f"by single-image {method}" in captured.out
    assert "dropped: frame1 (is entirely masked in the registration window)" in captured.out
    with rasterio.open(out) as src, rasterio.open(paths[0]) as first:
        single = dasksr.upscale(first.read(1).astype(np.uint16), scale=2, method=method)
        np.testing.assert_array_equal(src.read(1), single)


def test_cli_reads_one_zarr_with_a_time_dimension(tmp_path: Path, capsys: Any) -> None:
    frames = _frames(3).drop_vars(["shift_y", "shift_x"])
    frames = frames.assign_coords(
        x=500000 + 10 * np.arange(64) + 5.0, y=4000000 - 10 * np.arange(64) - 5.0
    ).rio.write_crs("EPSG:32633")
    frames.to_dataset(name="refl").to_zarr(tmp_path / "stack.zarr", consolidated=False)
    out = tmp_path / "fused.zarr"
    assert main(["fuse", str(tmp_path / "stack.zarr"), str(out), "--no-progress"]) == 0
    assert "0 (+0.000, +0.000), 1 (" in capsys.readouterr().out
    fused = dasksr.open_raster(out)
    assert fused.shape[-2:] == (128, 128)
    assert fused.rio.transform() == Affine(5, 0, 500000, 0, -5, 4000000)
    np.testing.assert_allclose(
        np.squeeze(fused.values), dasksr.fuse(frames, 2).values, rtol=0, atol=1e-9
    )


def test_cli_mask_band_drops_an_entirely_masked_frame(tmp_path: Path, capsys: Any) -> None:
    frames = _frames(3).astype(np.uint16).values
    masks = np.zeros_like(frames)
    masks[1] = 1
    paths = []
    for k in range(3):
        path = tmp_path / f"frame{k}.tif"
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=64,
            height=64,
            count=2,
            dtype="uint16",
            crs="EPSG:32633",
            transform=Affine(10, 0, 500000, 0, -10, 4000000),
        ) as dst:
            dst.write(np.stack([frames[k], masks[k]]))
        paths.append(path)
    out = tmp_path / "fused.tif"
    assert main(["fuse", *map(str, paths), str(out), "--mask-band", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "frame1 is entirely masked" in captured.err
    used, dropped = captured.out.split("; dropped: ")
    assert "frame0 (" in used and "frame1 (" not in used
    assert dropped.startswith("frame1 (is entirely masked")
    with rasterio.open(out) as src:
        assert src.count == 1 and src.shape == (128, 128)


def test_cli_mask_band_on_single_band_frames_is_refused(tmp_path: Path, capsys: Any) -> None:
    paths = _write_frames(tmp_path, _frames(2).astype(np.uint16))
    status = main(["fuse", *map(str, paths), str(tmp_path / "o.tif"), "--mask-band", "1"])
    err = capsys.readouterr().err
    assert status == 2
    assert "the frames need a band besides the mask band" in err


def test_cli_multiband_mask_is_refused(tmp_path: Path, capsys: Any) -> None:
    paths = _write_frames(tmp_path, _frames(2).astype(np.uint16))
    mask = tmp_path / "mask.tif"
    with rasterio.open(
        mask,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=2,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 4000000),
    ) as dst:
        dst.write(np.zeros((2, 64, 64), np.uint8))
    args = ["fuse", *map(str, paths), str(tmp_path / "o.tif"), f"--masks={mask}", f"--masks={mask}"]
    status = main(args)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("dasksr: error")]
    assert status == 2 and len(lines) == 1
    assert "mask.tif has 2 bands" in lines[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nodata": -1}, "does not fit"),
        ({"chunks": {"y": 32, "x": 32}}, "chunks="),
        ({"chunks": (32, 32, 32)}, "chunks="),
    ],
)
def test_bad_nodata_and_chunks(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        dasksr.fuse(_frames(2).astype(np.uint16), 2, **kwargs)


def test_where_no_other_frame_is_valid_the_result_is_the_single_image_one() -> None:
    frames = _frames(3)
    masks = np.zeros((3, 64, 64), bool)
    masks[1:, :, :32] = True  # the left half: the reference alone
    out = dasksr.fuse(frames, 2, masks=masks, iterations=2).values
    single = dasksr.upscale(frames.isel(time=0, drop=True), scale=2, method="cnn-sensor").values
    # Half a fine pixel beyond the kernel's reach from the masks' edge, the prior exactly.
    np.testing.assert_array_equal(out[:, :58], single[:, :58])
    assert np.abs(out[:, 72:] - single[:, 72:]).mean() > 1e-3 * np.ptp(single)
