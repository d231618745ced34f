"""Smoke test of benchmarks/fuse.py on a synthetic scene: the rows (fuse with its defaults, the\nPSF width estimated) and the table (no timings)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("benchmarks/fuse.py")


def test_quality_rows_and_table(bench, tmp_path: Path) -> None:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    hr = gaussian_filter(rng.uniform(0, 1, (96, 96)), 1.5).astype(np.float32)
    rows = [bench.quality("synthetic", hr, sigma, n=3, seed=1) for sigma in (0.3, 0.7)]
    for row in rows:
        assert set(row) >= {"fuse", "bicubic", "cnn", "mean", "psf", "iterations", "rms_refined"}
        assert row["rms_refined"] < 0.1 and 0.2 <= row["psf"] <= 0.95
    table = bench.markdown(rows, None)
    assert table.count("| synthetic | 0.") == 2 and "worst fuse - cnn-sensor" in table
    bench.plot(rows, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
