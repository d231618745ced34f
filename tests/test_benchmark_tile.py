"""Smoke test of benchmarks/tile.py on a tiny scene: the scene, one measured job with the figures
that its preload collects in the scheduler and the workers, and the model's arithmetic (no
timings checked)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tile(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("benchmarks/tile.py")


@pytest.mark.data
@pytest.mark.slow
def test_two_worker_job_is_measured(tile: ModuleType, tmp_path: Path) -> None:
    import rasterio

    from dasksr.data import data_path

    if data_path(*tile_native_b02()) is None:
        pytest.skip("the native Sentinel-2 bands are not on this machine (set DASKSR_DATA)")
    argv = ["--size", "256", "--workdir", str(tmp_path), "--configs", "workers2"]
    result = tile.main([*argv, "--methods", "bicubic", "--json", str(tmp_path / "t.json")])
    with rasterio.open(tmp_path / "tile_256.tif") as src:
        assert src.shape == (256, 256) and src.count == 4 and src.block_shapes[0] == (512, 512)
        assert src.descriptions == ("B02", "B03", "B04", "B08") and src.nodata == 0
        pixels = src.read()
    assert pixels.std(axis=(1, 2)).min() > 10  # real texture, not a constant
    (job,) = result["jobs"]
    assert job["config"] == "workers2" and job["mpix_s"] > 0
    # Figures from the scheduler's and both workers' preload; every process's peak memory.
    assert job["tasks_run"] > 0 and job["tasks_received"] >= job["tasks_run"]
    assert job["graph_mib"] > 0 and job["transfers"] is not None
    assert "write_zarr_block" in job["prefixes"]
    assert {"client + scheduler", "worker 0", "worker 1"} <= set(job["rss_gib"])
    assert 0 < job["peak_worker_gib"] < job["peak_total_gib"]
    assert (tmp_path / "t.json").exists() and not (tmp_path / "out.zarr").exists()


def tile_native_b02() -> tuple[str, ...]:
    from dasksr.scenes import SENTINEL2_NATIVE

    return SENTINEL2_NATIVE["B02"]


def test_targets_and_model_arithmetic(tile: ModuleType) -> None:
    def job(config: str, mpix: float, worker: float) -> object:
        figures = dict(wall_s=1.0, rss_gib={}, cpu_s={}, peak_total_gib=worker, tasks_run=1)
        figures |= dict(tasks_received=1, graph_mib=0.0, transfer_mib=0.0, transfers=0)
        figures |= dict(output_mib=1.0, compute_span_s=1.0)
        return tile.Job(config, "bicubic", 64, mpix_s=mpix, peak_worker_gib=worker, **figures)

    jobs = [job("local", 10.0, 1.0), job("workers2", 8.0, 2.5), job("s3", 7.0, 1.0)]
    met = {row.split(" | ")[0]: row for row in tile.targets(jobs).splitlines()}
    assert "**no**" in met["| peak worker RSS <= 2 GiB"]  # 2.5 GiB
    assert "0.80x | **no**" in met["| workers2 / local >= 0.85"]
    assert "0.88x | yes" in met["| s3 / workers2 (local disk) >= 0.8"]
    assert tile.median_job([job("a", 1, 1), job("b", 2, 1), job("c", 3, 1)]).config in "abc"
    # Four limits; the largest binds, and more nodes shorten all but the scheduler's.
    year = tile.predict_year(1.0, 5.0, 0.002, 1e9, 3.0, 1024)
    assert year[1]["hours"] == max(v for k, v in year[1].items() if k != "hours")
    assert year[64]["scheduler_h"] == year[1]["scheduler_h"]
    np.testing.assert_allclose(year[1]["cpu_h"], 64 * year[64]["cpu_h"])
    # A block 4x as costly balances at half the chunk edge.
    assert tile.balanced_chunk(4.0, 1024, 5.0, 0.002, 64) * 2 == pytest.approx(
        tile.balanced_chunk(1.0, 1024, 5.0, 0.002, 64), abs=2
    )
