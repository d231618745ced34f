"""The seamless contract for multi-frame fusion: the blockwise wiring of ``fuse`` (time reduced in
one chunk, halo from the neighbours) equals the whole-scene kernel, over random stacks, shifts,
masks, nodata, chunkings (chunks smaller than the halo included), scales, iteration counts and
single-image priors (none, lanczos, cnn-sensor)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_seamless import assert_seamless, chunking  # the same folder (pytest puts it on the path)

from dasksr.kernels.fuse import FuseParams, fuse_halo
from dasksr.methods import get_method
from dasksr.multiframe import _fuse_array, fuse_numpy


@st.composite
def stacks(draw: st.DrawFn) -> tuple:
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.uint16, np.float32])))
    frames = draw(st.integers(2, 4))
    bands = draw(st.integers(1, 2))
    ny, nx = draw(st.integers(1, 70)), draw(st.integers(1, 70))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.uniform(10, 200, (bands, ny, nx))
    data = (base[None] + rng.normal(0, 5, (frames, bands, ny, nx))).astype(dtype)
    nodata = None
    if draw(st.booleans()):
        nodata = 0.0 if dtype.kind in "iu" else float("nan")
        data[rng.random(data.shape) < 0.05] = nodata
    masks = rng.random((frames, bands, ny, nx)) < 0.2 if draw(st.booleans()) else None
    moved = [tuple(float(v) for v in rng.uniform(-0.6, 0.6, 2)) for _ in range(frames - 1)]
    shifts = ((0.0, 0.0), *moved)
    scale = draw(st.integers(2, 4))
    prior = draw(st.sampled_from([None, "lanczos", "cnn-sensor"]))
    method = None if prior is None or scale not in get_method(prior).scales else get_method(prior)
    params = FuseParams(
        scale=scale,
        shifts=shifts,
        gains=tuple(tuple(rng.uniform(0.9, 1.1, bands)) for _ in range(frames)),
        offsets=tuple(tuple(rng.uniform(-3, 3, bands)) for _ in range(frames)),
        noise=tuple(tuple(rng.uniform(1, 5, bands)) for _ in range(frames)),
        iterations=draw(st.integers(0, 2)),
        prior_halo=0 if method is None else method.halo(scale),
    )
    chunks = (draw(chunking(ny)), draw(chunking(nx)))
    return data, masks, nodata, params, chunks, method


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=stacks())
def test_chunked_fuse_equals_whole_scene(case: tuple) -> None:
    data, masks, nodata, params, (ys, xs), method = case
    whole = fuse_numpy(data, masks, params, nodata=nodata, method=method)
    chunks = ((data.shape[0],), (data.shape[1],), ys, xs)
    lazy = _fuse_array(
        da.from_array(data, chunks=chunks),
        None if masks is None else da.from_array(masks, chunks=chunks),
        params,
        nodata=nodata,
        chunks=None,
        method=method,
    )
    assert lazy.shape == whole.shape
    assert fuse_halo(params) > 0
    with dask.config.set(scheduler="synchronous"):
        chunked = lazy.compute()
    assert_seamless(whole, chunked)
