"""Smoke test of benchmarks/fuse.py on a synthetic scene: the rows and the table (no timings)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fuse.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dasksr_benchmark_fuse", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


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
