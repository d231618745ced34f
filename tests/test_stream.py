"""Writes computed strip of rows by strip of rows (`dasksr.stream`): the same bits as one
computation (output, consistency raster and RMS), input blocks read once, and only a strip's
output blocks in memory at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
import xarray as xr
from dask.callbacks import Callback
from test_sharpen_cli import COARSE_T, GUIDE_T, write

import dasksr
from dasksr import stream
from dasksr.guided import sharpen, sharpen_check
from dasksr.io.checked import write_checked
from dasksr.io.zarr_write import zarr_job

CHUNK = 32  # guide pixels: a 5 x 3 grid of output blocks


def _scene(folder: Path) -> tuple[xr.DataArray, Any]:
    """A small two-band sharpen job (the coarse grid 10 m west of the guide's, as Sentinel-2's)
    and its consistency check."""
    rng = np.random.default_rng(3)
    base = rng.integers(500, 3000, (1, 152, 88)).astype(np.float64)
    guide = np.concatenate([base, base * 0.8 + 100]).astype(np.uint16)
    small = base.reshape(1, 76, 2, 44, 2).mean(axis=(2, 4))
    coarse = np.concatenate([small * 1.1, small * 0.9 + 50]).astype(np.uint16)
    paths = [write(folder / f"B0{5 + i}.tif", coarse[i], COARSE_T) for i in range(2)]
    guides = [write(folder / f"B0{2 + i}.tif", guide[i], GUIDE_T) for i in range(2)]
    coarse_da = xr.concat([dasksr.open_raster(p, chunks=CHUNK) for p in paths], "band")
    guide_da = xr.concat([dasksr.open_raster(p, chunks=CHUNK) for p in guides], "band")
    coarse_da = coarse_da.assign_coords(band=["B05", "B06"])
    out = sharpen(coarse_da, guide_da.assign_coords(band=["B02", "B03"]), chunks=CHUNK)
    return out, sharpen_check(out, coarse_da)


def _write(folder: Path, name: str, strip_bytes: int, kind: str = "zarr") -> tuple[Path, float]:
    out, check = _scene(folder)
    target = folder / f"{name}.{kind}"
    job = zarr_job(out, target) if kind == "zarr" else None
    consistency = str(folder / f"{name}-consistency.{'tif' if kind == 'zarr' else 'zarr'}")
    path, (rms,) = write_checked(
        out, str(target), job, check, consistency, False, strip_bytes=strip_bytes
    )
    return Path(path), rms


def _pixels(path: Path) -> np.ndarray:
    if path.suffix == ".zarr":
        ds = xr.open_zarr(path, mask_and_scale=False)
        return np.asarray(next(v for v in ds.data_vars.values() if v.ndim == 3).values)
    with rasterio.open(path) as src:
        return np.asarray(src.read())


@pytest.mark.parametrize("kind", ["zarr", "tif"])
def test_strips_write_the_bits_of_one_computation(tmp_path: Path, kind: str) -> None:
    with dask.config.set(scheduler="threads"):
        whole, whole_rms = _write(tmp_path, "whole", 2**40, kind)
        strips, strips_rms = _write(tmp_path, "strips", 1, kind)  # one row of blocks a strip
    assert strips_rms == whole_rms and np.isfinite(whole_rms)
    np.testing.assert_array_equal(_pixels(strips), _pixels(whole))
    other = "tif" if kind == "zarr" else "zarr"
    residuals = [_pixels(tmp_path / f"{n}-consistency.{other}") for n in ("strips", "whole")]
    np.testing.assert_array_equal(*residuals)
    assert np.isfinite(residuals[0]).any()


def test_strips_on_a_cluster_write_the_same_bits(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    with dask.config.set(scheduler="threads"):
        whole, whole_rms = _write(tmp_path, "whole", 2**40)
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    row = 2 * 32 * 88 * 2  # bytes of a row of output blocks
    with cluster, Client(cluster):
        strips, strips_rms = _write(tmp_path, "strips", 2 * row)  # 3 strips of 2, 2 and 1 rows
    assert strips_rms == whole_rms
    np.testing.assert_array_equal(_pixels(strips), _pixels(whole))
    np.testing.assert_array_equal(
        _pixels(tmp_path / "strips-consistency.tif"), _pixels(tmp_path / "whole-consistency.tif")
    )


@pytest.mark.parametrize("whole_rows", [True, False])
def test_only_a_strip_of_output_blocks_waits_to_be_written(
    tmp_path: Path, whole_rows: bool
) -> None:
    # A row of blocks per strip, or (a row over the budget) a group of its columns: one block.
    out, check = _scene(tmp_path)
    job = zarr_job(out, tmp_path / "out.zarr")
    blocks = {k for k in dask.core.flatten(out.data.__dask_keys__())}
    writes = {t.key for t in job.tasks}
    rows, cols = out.data.numblocks[-2:]
    assert rows == 5 and cols == 3 and len(writes) == rows * cols
    waiting: set[Any] = set()
    most = [0]

    def finished(key: Any, *_: Any) -> None:
        if key in blocks:
            waiting.add(key[1:])
        elif key in writes:
            waiting.discard(key[1:])
        most[0] = max(most[0], len(waiting))

    with dask.config.set(scheduler="threads"), Callback(posttask=finished):
        row = out.data.nbytes // rows
        write_checked(out, "", job, check, None, False, strip_bytes=row if whole_rows else 1)
    assert not waiting
    assert 0 < most[0] <= (cols if whole_rows else 1)  # never the scene's rows x cols


def test_every_input_block_is_read_once(tmp_path: Path) -> None:
    out, check = _scene(tmp_path)
    job = zarr_job(out, tmp_path / "out.zarr")
    rms = check.rms().to_delayed(optimize_graph=False).ravel()[0]
    rows, cols = out.data.numblocks[-2:]
    for columns, groups in ((None, 1), (1, cols), (2, 2)):
        plan = stream.plan_strips([*job.tasks, rms], [out.data], rows=1, columns=columns)
        assert plan is not None and len(plan.strips) == rows * groups
        _read_once(plan, out.data, columns or cols, groups)


def _read_once(plan: Any, out: Any, columns: int, groups: int) -> None:
    runs: dict[Any, int] = {}
    for keys in plan.strips:
        for key in keys:
            runs[key] = runs.get(key, 0) + 1
    reads = [k for k, node in plan.graph.items() if not node.dependencies]
    assert reads and all(runs[k] == 1 for k in reads)
    for key in dask.core.flatten(out.__dask_keys__()):  # each output block in its strip
        strip = key[2] * groups + key[3] // columns
        assert [i for i, keys in enumerate(plan.strips) if key in keys] == [strip]
    assert plan.recomputed == sum(runs.values()) - len(plan.graph)
    assert plan.recomputed < len(plan.graph) / 2  # copies at the strips' edges, not the scene


def test_a_resumed_zarr_job_in_strips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = dasksr.upscale(
        xr.DataArray(np.arange(96 * 80, dtype=np.float32).reshape(96, 80), dims=("y", "x")),
        scale=2,
        method="bilinear",
    ).chunk(32)
    with dask.config.set(scheduler="threads"):
        dasksr.to_zarr(data, tmp_path / "whole.zarr")
        monkeypatch.setattr(stream, "STRIP_BYTES", 1)
        job = zarr_job(data, tmp_path / "strips.zarr")
        dask.compute(*job.tasks[:7])  # an interrupted job: 7 blocks written
        resumed = zarr_job(data, tmp_path / "strips.zarr")
        assert len(resumed.tasks) == len(job.tasks) - 7
        resumed.run(progress=True)
    np.testing.assert_array_equal(_pixels_2d(tmp_path / "strips.zarr"), data.values)
    np.testing.assert_array_equal(_pixels_2d(tmp_path / "whole.zarr"), data.values)


def _pixels_2d(path: Path) -> np.ndarray:
    return np.asarray(xr.open_zarr(path)["data"].values)


def test_the_strips_progress_bar(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out, check = _scene(tmp_path)
    with dask.config.set(scheduler="threads"):
        write_checked(
            out, str(tmp_path / "out.tif"), None, check, None, False, progress=True, strip_bytes=1
        )
    assert "100% Completed" in capsys.readouterr().err


def test_glp_weights_in_strips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The regression's statistics pass reads the whole scene too: strip by strip, same weights.
    again = tmp_path / "again"
    again.mkdir()
    plans: list[Any] = []
    plan = stream.plan_strips

    def recorded(*args: Any, **kwargs: Any) -> Any:
        plans.append(plan(*args, **kwargs))
        return plans[-1]

    with dask.config.set(scheduler="threads"):
        whole = _scene(tmp_path)[0]
        monkeypatch.setattr(stream, "STRIP_BYTES", 1)
        monkeypatch.setattr(stream, "plan_strips", recorded)
        streamed = _scene(again)[0]  # the pass runs here; the output is not computed yet
        assert len(plans) == 1 and len(plans[0].strips) == 5 * 3  # rows x groups of one column
        np.testing.assert_array_equal(streamed.values, whole.values)


def test_a_row_over_the_budget_is_cut_in_groups_of_columns() -> None:
    # A tile's six bands at 10 m: 11 x 11 blocks of 1024 x 1024 uint16, 135 MB a row.
    out = da.zeros((6, 10980, 10980), dtype=np.uint16, chunks=(6, 1024, 1024))
    row = out.nbytes / out.shape[-2] * 1024  # a full row of blocks
    assert stream.strip_shape([out], strip_bytes=int(2.5 * row)) == (2, None)
    assert stream.strip_shape([out], strip_bytes=int(row) + 1) == (1, None)
    # Five blocks fit: three groups, of 4, 4 and 3 columns (not 5, 5 and 1).
    assert stream.strip_shape([out], strip_bytes=int(5.5 * row / 11)) == (1, 4)
    assert stream.strip_shape([out], strip_bytes=1) == (1, 1)
    assert stream.strip_shape([out], strip_bytes=int(11 * row)) is None


def test_what_a_strip_keeps_for_the_next_holds_its_own_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A halo's edge kept for the next strip is a slice of an input block: as a view it would keep
    # the whole block alive, unseen by dask's memory accounting, until the next strip.
    out, check = _scene(tmp_path)
    job = zarr_job(out, tmp_path / "out.zarr")
    kept: list[Any] = []
    hand_on = stream._hand_on

    def spy(plan: Any, strip: int, values: dict[Any, Any], *args: Any) -> None:
        computed = [k for k in plan.kept[strip] if plan.graph[k].dependencies]  # not constants
        kept.extend(values[k] for k in computed)
        hand_on(plan, strip, values, *args)

    monkeypatch.setattr(stream, "_hand_on", spy)
    with dask.config.set(scheduler="threads"):
        write_checked(out, "", job, check, None, False, strip_bytes=1)
    arrays = [v for v in kept if isinstance(v, np.ndarray)]
    assert len(arrays) > 10
    assert all(_root(a).nbytes <= a.nbytes for a in arrays)  # (a broadcast view is smaller)


def _root(array: np.ndarray) -> Any:
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def test_compact_copies_views_only() -> None:
    block = np.arange(100.0).reshape(10, 10)
    edge = stream.compact(block[:2])
    assert edge.base is None and np.array_equal(edge, block[:2])
    assert stream.compact(block) is block
    assert stream.compact(block[:, :][...]).base is not None  # a view of all of it: no copy
    assert stream.compact(3) == 3
