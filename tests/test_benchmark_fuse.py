"""Smoke test of benchmarks/fuse.py on a synthetic scene: the rows and the table (no timings)."""

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
    rows = [bench.quality("synthetic", hr, n, 2, seed=n) for n in (1, 3)]
    assert "rms_phase" not in rows[0] and rows[1]["rms_refined"] < 0.1
    for row in rows:
        assert set(row) >= {"fuse", "a", "b", "c", "fuse_s", "out_mpix"}
    table = bench.markdown(rows, None)
    assert table.count("| synthetic | 2 |") == 2
    bench.plot(rows, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
