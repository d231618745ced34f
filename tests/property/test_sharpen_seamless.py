"""The seamless contract for guided reconstruction: ``sharpen`` chunked equals the whole scene
(`dasksr.guided.sharpen_numpy`), over random grids (ratios 2, 3, 4 and 6, origins a whole or half
guide pixel apart, or anywhere), shapes, chunk sizes (smaller than the halos included), dtypes,
nodata holes in either operand, and both methods (``cnn-s2`` at the ratios it ships)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_seamless import assert_seamless, chunking  # the same folder (pytest puts it on the path)

from dasksr.guided import GridRelation, _sharpen_arrays, sharpen_numpy
from dasksr.models import guided_records

NETWORKS = {ratio: record.record for ratio, record in guided_records().items()}


@st.composite
def cases(draw: st.DrawFn) -> dict:
    learned = bool(NETWORKS) and draw(st.booleans())
    if learned:
        ratio = draw(st.sampled_from(sorted(NETWORKS)))
        names = list(NETWORKS[ratio]["coarse_bands"])
        guides = list(NETWORKS[ratio]["guide_bands"])
        method = "cnn-s2"
    else:
        ratio = draw(st.sampled_from([2, 3, 4, 6]))
        names = [None] * draw(st.integers(1, 3))
        guides = [None] * draw(st.integers(1, 3))
        method = "glp"
    kind = draw(st.sampled_from(["whole", "half", "any"]))
    origin = []
    for _ in range(2):
        step = {"whole": 1.0, "half": 0.5, "any": 0.125}[kind]
        origin.append(step * draw(st.integers(int(-2 * ratio / step), int(ratio / step))))
    dtype = np.dtype(draw(st.sampled_from([np.uint8, np.uint16, np.int16, np.float32])))
    ny, nx = draw(st.integers(4, 40)), draw(st.integers(4, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cy = int(np.ceil((ny - origin[0]) / ratio)) + draw(st.integers(-1, 2))
    cx = int(np.ceil((nx - origin[1]) / ratio)) + draw(st.integers(-1, 2))
    top = 200 if dtype == np.uint8 else 3000
    coarse = rng.uniform(10, top, (len(names), max(cy, 1), max(cx, 1))).astype(dtype)
    guide = rng.uniform(10, top, (len(guides), ny, nx)).astype(dtype)
    nodata = guide_nodata = None
    if draw(st.booleans()):
        nodata = 0.0 if dtype.kind in "iu" else float("nan")
        coarse[rng.random(coarse.shape) < 0.05] = nodata
    if draw(st.booleans()):
        guide_nodata = 0.0 if dtype.kind in "iu" else float("nan")
        guide[rng.random(guide.shape) < 0.03] = guide_nodata
    return {
        "coarse": coarse,
        "guide": guide,
        "relation": GridRelation(ratio, (origin[0], origin[1])),
        "names": names,
        "guides": guides,
        "method": method,
        "nodata": nodata,
        "guide_nodata": guide_nodata,
        "chunk": draw(st.integers(1, 48)),
        "input_chunks": (draw(chunking(ny)), draw(chunking(nx))),
    }


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_chunked_sharpen_equals_whole_scene(case: dict) -> None:
    coarse, guide, relation = case["coarse"], case["guide"], case["relation"]
    options = {
        "names": case["names"],
        "guides": case["guides"],
        "method": case["method"],
        "nodata": case["nodata"],
        "guide_nodata": case["guide_nodata"],
    }
    try:
        whole = sharpen_numpy(
            coarse, guide, ratio=relation.ratio, origin=relation.origin, **options
        )
    except Exception as exc:  # a draw with no valid pixel at all: both paths must refuse it
        assert "nothing to learn" in str(exc)
        return
    ys, xs = case["input_chunks"]
    lazy, _ = _sharpen_arrays(
        da.from_array(coarse, chunks=-1),
        da.from_array(guide, chunks=((guide.shape[0],), ys, xs)),
        relation,
        chunk=case["chunk"],
        **options,
    )
    with dask.config.set(scheduler="synchronous"):
        assert_seamless(whole, lazy.compute())
