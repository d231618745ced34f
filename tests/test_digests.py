"""Outputs are bit-identical to those stored before the operation refactor (issue 20).

``tests/golden/digests.json`` holds the SHA-256 of every built-in method's output at every scale it
supports, on a uint16 and a float32 scene with nodata (whole image and chunked through a GeoTIFF
read, so both wirings are covered), and of ``fuse`` on simulated stacks with both solvers. The
digests were written by this file's ``__main__`` on the code before the refactor; a change of any
output bit fails here. Regenerate them only for an intended change of output, and say so.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dasksr

GOLDEN = Path(__file__).parent / "golden" / "digests.json"


def _digest(array: Any) -> str:
    values = np.ascontiguousarray(np.asarray(array))
    return f"{values.dtype.str}{values.shape}:" + hashlib.sha256(values.tobytes()).hexdigest()


def _scene(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(20)
    yy, xx = np.mgrid[0:45, 0:52]
    smooth = 900 + 600 * np.sin(yy / 5.0) * np.cos(xx / 7.0)
    values = smooth + rng.normal(0, 150, (2, 45, 52))
    values[:, 10:13, 20:24] = 0  # nodata holes
    return np.clip(values, 0, 60000).astype(dtype)


def _upscale_cases() -> list[tuple[str, str, int]]:
    cases = []
    for method in dasksr.list_methods():
        for scale in method.scales:
            for dtype in ("uint16", "float32"):
                cases.append((method.name, dtype, int(scale)))
    return cases


def _upscale_digest(name: str, dtype: str, scale: int, tmp: Path) -> dict[str, str]:
    import rasterio
    from rasterio.transform import from_origin

    scene = _scene(dtype)
    whole = dasksr.upscale(scene, scale=scale, method=name, nodata=0)
    path = tmp / f"{name}-{dtype}-{scale}.tif"
    profile = {
        "driver": "GTiff",
        "width": scene.shape[2],
        "height": scene.shape[1],
        "count": 2,
        "dtype": dtype,
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 4000000, 10, 10),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 16,
        "blockysize": 16,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene)
    data = dasksr.open_raster(path, chunks=16)
    read = dasksr.upscale(data, scale=scale, method=name).compute()
    rechunked = dasksr.upscale(data.chunk(x=13, y=11), scale=scale, method=name).compute()
    return {
        "whole": _digest(whole),
        "source": _digest(read.values),
        "overlap": _digest(rechunked.values),
    }


def _fuse_cases() -> list[tuple[str, int]]:
    return [("ibp", 2), ("kernel", 2), ("ibp", 3)]


def _fuse_digest(solver: str, scale: int) -> str:
    rng = np.random.default_rng(7)
    hr = 1000 + 400 * rng.standard_normal((96, 96)).cumsum(axis=0).cumsum(axis=1) / 96
    frames, _, _ = dasksr.simulate_stack(hr, 4, scale, snr=40, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = dasksr.fuse(frames.chunk({"x": 16, "y": 16}), scale, **{_SOLVER: solver})
    return _digest(fused.values)


#: The keyword of fuse's solver (renamed by issue 20; digests were made with the old name).
_SOLVER = "solver"


@pytest.mark.parametrize(("name", "dtype", "scale"), _upscale_cases())
def test_upscale_output_bits_unchanged(name: str, dtype: str, scale: int, tmp_path: Path) -> None:
    stored = json.loads(GOLDEN.read_text())["upscale"][f"{name}/{dtype}/x{scale}"]
    assert _upscale_digest(name, dtype, scale, tmp_path) == stored


@pytest.mark.parametrize(("solver", "scale"), _fuse_cases())
def test_fuse_output_bits_unchanged(solver: str, scale: int) -> None:
    stored = json.loads(GOLDEN.read_text())["fuse"][f"{solver}/x{scale}"]
    assert _fuse_digest(solver, scale) == stored


if __name__ == "__main__":  # writes the digests: only for an intended change of output
    import sys
    import tempfile

    _SOLVER = sys.argv[1] if len(sys.argv) > 1 else "method"
    with tempfile.TemporaryDirectory() as folder:
        upscale = {
            f"{n}/{d}/x{s}": _upscale_digest(n, d, s, Path(folder)) for n, d, s in _upscale_cases()
        }
    fuse = {f"{m}/x{s}": _fuse_digest(m, s) for m, s in _fuse_cases()}
    GOLDEN.write_text(
        json.dumps({"upscale": upscale, "fuse": fuse}, indent=1, sort_keys=True) + "\n"
    )
    print(len(upscale), "upscale and", len(fuse), "fuse digests written")
