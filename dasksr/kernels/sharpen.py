"""Guided reconstruction on one block pair: the coarse bands put on the guide's finer grid.

Geometry. The guide's grid is ``ratio`` times finer than the coarse bands' grid, and the two need
not share an origin. The layer above (:mod:`dasksr.sharpen`) cuts the coarse bands so that, in
every block, coarse pixel ``j`` of the block's core covers the fine pixels ``[e + j r, e + (j + 1)
r)`` of the block's fine core, with the same ``offset`` ``e`` in ``(-ratio, 0]`` (per axis) in
every block: fine blocks are ``ratio`` times the coarse blocks. Every quantity below depends only
on positions inside the block, so blocks reproduce the whole-image result.

- ``up``: Keys' cubic convolution (a = -0.5) from the coarse grid to the fine pixel centres, fine
  pixel ``k`` sampling coarse coordinate ``(k + 0.5 - e) / r - 0.5``: the interpolation methods'
  bicubic when ``e = 0``, with any offset honoured exactly.
- ``down``: the sensor's MTF, a Gaussian whose gain at the coarse Nyquist frequency is the band's
  published MTF value (`mtf_sigma`), sampled at each coarse pixel's centre on the fine grid.

Both are per-axis tap tables (`AxisTaps`): each output position reads a few input positions with
fixed weights; the weights depend only on the output's phase (its position modulo ``ratio``).

Methods.

- `glp_block`: generalised Laplacian pyramid injection. Each coarse band ``b`` gets the detail
  ``I_b - up(down_b(I_b))`` of its synthetic guide ``I_b = sum_k w_bk G_k``, added to ``up(C_b)``.
  The weights come from a least-squares regression of the bands' own detail on the guide bands'
  detail, one level coarser (`detail_statistics`), summed over the whole scene by the layer above:
  no statistic of a block enters a result. Injection is additive, so nothing divides by a
  near-zero synthetic guide.
- `guided_network_block`: a learned network on ``[up(C), G, detail(G)]`` predicting the residual
  over ``up(C)`` (see :mod:`dasksr.models`).

Nodata rule: a fine pixel is invalid when the coarse pixel that contains its centre is invalid
(the coarse validity also marks where the coarse bands have no pixels at all); valid fine pixels
whose cubic support touches invalid coarse pixels use the valid taps, renormalised, or their own
coarse pixel's value when those weigh less than one half (the interpolation methods' rule). Where
the guide is invalid within a pixel's support, no detail is injected: the pixel is ``up(C)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dasksr.kernels.interp import keys_cubic
from dasksr.kernels.loops import gather_taps
from dasksr.kernels.values import finalize

__all__ = [
    "AxisTaps",
    "BlockGeometry",
    "Radiometry",
    "apply_taps",
    "detail_statistics",
    "down_taps",
    "glp_block",
    "guide_detail",
    "mtf_sigma",
    "nearest_taps",
    "solve_weights",
    "up_taps",
    "upsample_valid",
]


def mtf_sigma(gain: float, ratio: int) -> float:
    """The standard deviation, in fine pixels, of the Gaussian whose MTF is ``gain`` at the coarse
    grid's Nyquist frequency (``1 / (2 ratio)`` cycles per fine pixel)."""
    if not 0 < gain < 1:
        raise ValueError(f"an MTF gain at Nyquist must lie in (0, 1), not {gain}")
    return ratio * math.sqrt(-2.0 * math.log(gain)) / math.pi


@dataclass(frozen=True)
class AxisTaps:
    """Output position ``i`` is ``sum_t weights[i, t] * input[index[i, t]]`` along one axis."""

    index: np.ndarray
    weights: np.ndarray

    @property
    def reach(self) -> tuple[int, int]:
        """The lowest and highest input index read."""
        return int(self.index.min()), int(self.index.max())


def up_taps(count: int, ratio: int, offset: float, first: int = 0) -> AxisTaps:
    """Cubic taps for fine positions ``first .. first + count - 1`` (of the block's fine core),
    reading coarse positions of the block's core (negative: the halo before it)."""
    k = np.arange(first, first + count)
    phase, base = k % ratio, k // ratio
    local = (np.arange(ratio) + 0.5 - offset) / ratio - 0.5  # per phase, from its base
    lead = np.floor(local).astype(np.int64)
    frac = local - lead
    steps = np.arange(-1, 3)
    weights = keys_cubic(frac[:, None] - steps[None, :])
    return AxisTaps(
        index=(base + lead[phase])[:, None] + steps[None, :],
        weights=np.ascontiguousarray(weights[phase]),
    )


def nearest_taps(count: int, ratio: int, offset: float, first: int = 0) -> np.ndarray:
    """The coarse position (of the block's core) that contains each fine pixel's centre."""
    k = np.arange(first, first + count)
    phase, base = k % ratio, k // ratio
    lead = np.floor((np.arange(ratio) + 0.5 - offset) / ratio).astype(np.int64)
    return base + lead[phase]


def down_taps(
    count: int, ratio: int, offset: float, sigma: float, first: int = 0, truncate: float = 4.0
) -> AxisTaps:
    """Gaussian taps for coarse positions ``first .. first + count - 1`` (of the block's core),
    reading fine positions of the block's fine core (negative: the halo before it)."""
    centre = offset + ratio / 2 - 0.5  # coarse position 0's centre on the fine axis
    radius = truncate * sigma
    lo = math.ceil(centre - radius)
    steps = np.arange(lo, math.floor(centre + radius) + 1)
    weights = np.exp(-0.5 * ((steps - centre) / sigma) ** 2)
    weights /= weights.sum()
    j = np.arange(first, first + count)
    return AxisTaps(
        index=(j * ratio)[:, None] + steps[None, :],
        weights=np.broadcast_to(weights, (count, steps.size)),
    )


def apply_taps(values: np.ndarray, taps: AxisTaps, axis: int, shift: int) -> np.ndarray:
    """``taps`` along ``axis`` of ``values``, whose position 0 is the taps' position ``-shift``
    (the halo the array carries before the core)."""
    index = taps.index + shift
    if index.min() < 0 or index.max() >= values.shape[axis]:
        raise ValueError(
            f"taps read positions {index.min()}..{index.max()} of an axis of {values.shape[axis]}"
        )
    if isinstance(values, np.ndarray) and values.ndim >= 2 and axis in (-1, -2):
        return gather_taps(values, index, taps.weights, axis)  # the same arithmetic, compiled
    values = np.moveaxis(values, axis, -1)
    out = np.zeros((*values.shape[:-1], index.shape[0]), dtype=values.dtype)
    for t in range(index.shape[1]):
        out += values[..., index[:, t]] * taps.weights[:, t].astype(values.dtype)
    return np.moveaxis(out, -1, axis)


@dataclass(frozen=True)
class BlockGeometry:
    """One block pair: the fine core's shape, the halos both carry, the ratio and the offsets."""

    ratio: int
    offset: tuple[float, float]
    coarse_halo: int
    fine_halo: int

    def fine_core(self, guide: np.ndarray) -> tuple[int, int]:
        return guide.shape[-2] - 2 * self.fine_halo, guide.shape[-1] - 2 * self.fine_halo

    def coarse_core(self, coarse: np.ndarray) -> tuple[int, int]:
        return coarse.shape[-2] - 2 * self.coarse_halo, coarse.shape[-1] - 2 * self.coarse_halo


def _resample(values: np.ndarray, taps: Sequence[AxisTaps], shift: int) -> np.ndarray:
    out = apply_taps(values, taps[0], -2, shift)
    return apply_taps(out, taps[1], -1, shift)


def upsample_valid(
    coarse: np.ndarray,
    valid: np.ndarray,
    geometry: BlockGeometry,
    core: tuple[int, int],
    margin: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``up`` of the padded coarse block onto the fine core plus ``margin``, by the nodata rule;
    and the fine validity (the containing coarse pixel's)."""
    r, h = geometry.ratio, geometry.coarse_halo
    taps = [
        up_taps(n + 2 * margin, r, e, -margin) for n, e in zip(core, geometry.offset, strict=False)
    ]
    near = [
        nearest_taps(n + 2 * margin, r, e, -margin) + h
        for n, e in zip(core, geometry.offset, strict=False)
    ]
    fine_valid = valid[..., near[0], :][..., near[1]]
    if valid.all():
        return _resample(coarse, taps, h), fine_valid
    values = np.where(valid, coarse, 0)
    fine = _resample(values, taps, h)
    # The fine pixels whose taps read an invalid coarse pixel (with a non-zero weight): few, along
    # the nodata edges, so their renormalisation runs on those pixels alone.
    loose = [AxisTaps(t.index, np.abs(t.weights)) for t in taps]
    touched = _resample((~valid).astype(np.float32), loose, h) > 0
    if not touched.any():
        return fine, fine_valid
    *lead, i, j = np.nonzero(touched)
    rows, cols = taps[0].index[i] + h, taps[1].index[j] + h
    weight = np.zeros(i.size, coarse.dtype)
    for a in range(rows.shape[1]):
        across = np.zeros(i.size, coarse.dtype)
        for c in range(cols.shape[1]):
            inside = valid[(*lead, rows[:, a], cols[:, c])].astype(coarse.dtype)
            across += inside * taps[1].weights[j, c].astype(coarse.dtype)
        weight += across * taps[0].weights[i, a].astype(coarse.dtype)
    own = coarse[(*lead, near[0][i], near[1][j])]
    enough = weight >= 0.5
    fine[(*lead, i, j)] = np.where(enough, fine[(*lead, i, j)] / np.where(enough, weight, 1), own)
    return fine, fine_valid


def guide_detail(
    planes: np.ndarray,
    sigmas: Sequence[float],
    geometry: BlockGeometry,
    core: tuple[int, int],
    margin: int = 0,
) -> np.ndarray:
    """``P - up(down(P))`` of each padded fine plane (plane ``i`` with ``sigmas[i]``), on the fine
    core plus ``margin``: the detail the coarse grid cannot hold."""
    r, hf = geometry.ratio, geometry.fine_halo
    out = np.empty((planes.shape[0], core[0] + 2 * margin, core[1] + 2 * margin), planes.dtype)
    up = [
        up_taps(n + 2 * margin, r, e, -margin) for n, e in zip(core, geometry.offset, strict=False)
    ]
    # The coarse positions the cubic taps read, from the lowest to the highest.
    spans = [t.reach for t in up]
    for i, sigma in enumerate(sigmas):
        down = [
            down_taps(hi - lo + 1, r, e, sigma, lo)
            for (lo, hi), e in zip(spans, geometry.offset, strict=False)
        ]
        low = _resample(planes[i], down, hf)  # coarse positions lo .. hi
        shifted = [AxisTaps(t.index - lo, t.weights) for t, (lo, _) in zip(up, spans, strict=False)]
        smooth = _resample(low, shifted, 0)
        own = planes[i, hf - margin : hf + core[0] + margin, hf - margin : hf + core[1] + margin]
        out[i] = own - smooth
    return out


def guide_support(ratio: int, sigma: float) -> int:
    """Fine pixels on each side of a pixel that its guide detail reads."""
    return 4 * ratio + math.ceil(4.0 * sigma)


def coarse_features(
    guide: np.ndarray, geometry: BlockGeometry, sigma: float, core: tuple[int, int]
) -> np.ndarray:
    """``down(G_k)`` with the MTF ``sigma``, on the coarse core positions of the block."""
    down = [
        down_taps(n, geometry.ratio, e, sigma) for n, e in zip(core, geometry.offset, strict=False)
    ]
    return _resample(guide, down, geometry.fine_halo)


def detail_statistics(
    coarse: np.ndarray,
    valid: np.ndarray,
    guide: np.ndarray,
    guide_valid: np.ndarray,
    *,
    geometry: BlockGeometry,
    sigmas: Sequence[float],
    radiometry: Radiometry | None = None,
) -> np.ndarray:
    """Sums over the block's coarse core for the regression weights of `glp_block`.

    For coarse band ``b`` the features are the guide bands filtered by band ``b``'s MTF and sampled
    on the coarse grid (``down_b(G_k)``) plus a constant, the target is ``C_b``. The result is
    ``(bands, k + 2, k + 2)``: the Gram matrix of ``[features, 1, target]`` over the coarse pixels
    that are valid and whose guide support is valid. Every coarse pixel belongs to the core of
    exactly one block, so the blocks' sums add up to the scene's. With ``radiometry``, of the
    mapped values.
    """
    coarse, guide = Radiometry.work(radiometry, coarse, guide)
    core = geometry.coarse_core(coarse)
    h = geometry.coarse_halo
    own = coarse[:, h : h + core[0], h : h + core[1]].astype(np.float64)
    ok_c = valid[:, h : h + core[0], h : h + core[1]]
    k = guide.shape[0]
    out = np.zeros((coarse.shape[0], k + 2, k + 2))
    guide = guide.astype(np.float64)
    for b, sigma in enumerate(sigmas):
        ok = ok_c[b]
        if not guide_valid.all():
            reach = guide_support(geometry.ratio, sigma)
            fine_ok = _all_valid_within(guide_valid, reach, 0, guide_valid.shape[-2:])
            centre = [
                np.clip(
                    np.floor(e + (np.arange(n) + 0.5) * geometry.ratio).astype(np.int64)
                    + geometry.fine_halo,
                    0,
                    fine_ok.shape[ax] - 1,
                )
                for ax, (n, e) in enumerate(zip(core, geometry.offset, strict=False))
            ]
            ok = ok & fine_ok[centre[0]][:, centre[1]]
        if not ok.any():
            continue
        features = coarse_features(guide, geometry, sigma, core)[:, ok]
        rows = np.concatenate([features, np.ones((1, features.shape[1])), own[b][ok][None]])
        out[b] = rows @ rows.T
    return out


def solve_weights(gram: np.ndarray, ridge: float = 1e-6) -> np.ndarray:
    """Least-squares weights ``(bands, k)`` from the ``(bands, k + 1, k + 1)`` Gram matrices of
    ``[features, target]`` (a small ridge keeps singular features, such as a constant band, safe).

    The ridge is scaled by the uncentred Gram matrix's trace, so with a constant feature it
    shrinks the constant's weight and the other features carry part of the means: the weights,
    and so the injected detail, grow with the data's level. That is what the shipped networks
    were trained with, and on the validation rows of the Sentinel-2 scene at x2 it injects more
    of the short-wave infrared bands' detail than an unshrunk constant does. The data's level is
    therefore the physical one: see `Radiometry`.
    """
    k = gram.shape[-1] - 1
    out = np.zeros((gram.shape[0], k))
    for b, g in enumerate(gram):
        xx, xy = g[:k, :k], g[:k, k]
        scale = max(float(np.trace(xx)) / max(k, 1), 1e-30)
        out[b] = np.linalg.solve(xx + ridge * scale * np.eye(k), xy)
    return out


def halos(ratio: int, sigma: float, margin: int = 0) -> tuple[int, int]:
    """The ``(coarse, fine)`` halos a block pair needs for results on its fine core plus
    ``margin`` fine pixels, with MTF filters up to ``sigma`` (fine pixels)."""
    return -(-margin // ratio) + 3, margin + 5 * ratio + math.ceil(4.0 * sigma) + 2


def glp_planes(
    coarse: np.ndarray,
    valid: np.ndarray,
    guide: np.ndarray,
    guide_valid: np.ndarray,
    *,
    geometry: BlockGeometry,
    weights: np.ndarray,
    sigmas: Sequence[float],
    margin: int = 0,
    keep_base: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """``up(C)`` (None unless ``keep_base``), the GLP result and the fine validity on the fine
    core plus ``margin``, float64.

    ``weights`` is ``(coarse bands, guide bands)``: each coarse band's synthetic guide.
    """
    bands = coarse.shape[0]
    base = fused = fine_valid = None
    pair = (coarse, valid, guide, guide_valid)
    for b, up, value, ok in _glp_bands(pair, geometry, weights, sigmas, margin):
        if fused is None:
            fused = np.empty((bands, *value.shape))
            base = np.empty_like(fused) if keep_base else None
            fine_valid = np.empty(fused.shape, bool)
        fused[b], fine_valid[b] = value, ok  # type: ignore[index]
        if base is not None:
            base[b] = up
    return base, fused, fine_valid  # type: ignore[return-value]


def _glp_bands(
    pair: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    geometry: BlockGeometry,
    weights: np.ndarray,
    sigmas: Sequence[float],
    margin: int,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(band, up(C), GLP result, fine validity)`` of each coarse band in turn, from the block
    ``pair`` ``(coarse, valid, guide, guide_valid)`` (see `glp_planes`): a block's temporaries
    are a few planes, whatever the band count."""
    coarse, valid, guide, guide_valid = pair
    core = geometry.fine_core(guide)
    wide = (core[0] + 2 * margin, core[1] + 2 * margin)
    ok = None
    if not guide_valid.all():
        reach = max(guide_support(geometry.ratio, s) for s in sigmas)
        ok = _all_valid_within(guide_valid, reach, geometry.fine_halo - margin, wide)
    planes = guide.astype(np.float64, copy=False)
    # The synthetic guide as a sum of products in band order, the same at every position.
    for b in range(coarse.shape[0]):
        up, fine_valid = upsample_valid(
            coarse[b : b + 1].astype(np.float64), valid[b : b + 1], geometry, core, margin
        )
        synthetic = planes[0] * weights[b, 0]
        for k in range(1, planes.shape[0]):
            synthetic += planes[k] * weights[b, k]
        detail = guide_detail(synthetic[None], [sigmas[b]], geometry, core, margin)[0]
        del synthetic
        if ok is not None:
            detail[~ok] = 0
        np.add(up[0], detail, out=detail)
        yield b, up[0], detail, fine_valid[0]


def glp_block(
    coarse: np.ndarray,
    valid: np.ndarray,
    guide: np.ndarray,
    guide_valid: np.ndarray,
    *,
    geometry: BlockGeometry,
    weights: np.ndarray,
    sigmas: Sequence[float],
    dtype: Any,
    nodata: float | None,
    radiometry: Radiometry | None = None,
) -> np.ndarray:
    """The GLP result of one block pair (see the module docstring), in ``dtype``; with
    ``radiometry``, computed on the mapped values and returned in stored ones. Each band is
    finished (mapped back, rounded, cast) as soon as it is made: a block holds the float planes
    of one band, not of all."""
    coarse, guide = Radiometry.work(radiometry, coarse, guide)
    out = np.empty((coarse.shape[0], *geometry.fine_core(guide)), np.dtype(dtype))
    pair = (coarse, valid, guide, guide_valid)
    for b, _, fused, fine_valid in _glp_bands(pair, geometry, weights, sigmas, 0):
        if radiometry is not None:
            fused = radiometry.stored(fused[None], band=b)[0]
        finalize(fused[None], out.dtype, nodata, ~fine_valid[None], out=out[b : b + 1])
    return out


def network_inputs(
    base: np.ndarray, fused: np.ndarray, guide: np.ndarray, geometry: BlockGeometry, margin: int
) -> np.ndarray:
    """The guided network's float32 input planes: ``[up(C), G, GLP]`` on the core plus margin."""
    h = geometry.fine_halo - margin
    ny, nx = base.shape[-2:]
    own = guide[:, h : h + ny, h : h + nx].astype(np.float64)
    return np.concatenate([base, own, fused]).astype(np.float32)


def _all_valid_within(
    valid: np.ndarray, reach: int, halo: int, core: tuple[int, int]
) -> np.ndarray:
    """Whether every pixel within ``reach`` (a square) of each core pixel is valid."""
    from scipy.ndimage import minimum_filter

    ok = np.all(valid, axis=0) if valid.ndim == 3 else valid
    ok = minimum_filter(ok.astype(np.uint8), size=2 * reach + 1, mode="nearest").astype(bool)
    return ok[halo : halo + core[0], halo : halo + core[1]]


def wald_degrade(planes: np.ndarray, sigmas: Sequence[float], ratio: int) -> np.ndarray:
    """Whole ``(band, y, x)`` planes filtered by each band's Gaussian MTF (``sigmas``, fine pixels)
    and sampled ``ratio`` times coarser (coarse pixel ``j`` covers fine ``j r .. j r + r - 1``),
    the image extended by half-sample symmetry: the reduced-resolution inputs of Wald's protocol."""
    ny, nx = planes.shape[-2] // ratio, planes.shape[-1] // ratio
    out = np.empty((planes.shape[0], ny, nx))
    for i, sigma in enumerate(sigmas):
        halo = math.ceil(4.0 * sigma) + ratio
        padded = np.pad(planes[i].astype(np.float64), halo, mode="symmetric")
        down = [down_taps(n, ratio, 0.0, sigma) for n in (ny, nx)]
        out[i] = _resample(padded, down, halo)
    return out


@dataclass(frozen=True)
class Radiometry:
    """The linear maps from each band's stored values to the values the statistics and networks
    work on: ``work = gain * stored + offset`` per coarse band and per guide band (a product's
    radiometric offset added back, so that a scene gives the same result whichever processing
    baseline stored it)."""

    coarse_gain: tuple[float, ...]
    coarse_offset: tuple[float, ...]
    guide_gain: tuple[float, ...]
    guide_offset: tuple[float, ...]

    @staticmethod
    def _map(values: np.ndarray, gain: tuple[float, ...], offset: tuple[float, ...]) -> np.ndarray:
        g = np.asarray(gain, np.float64)[:, None, None]
        return values.astype(np.float64) * g + np.asarray(offset, np.float64)[:, None, None]

    def coarse(self, values: np.ndarray) -> np.ndarray:
        return self._map(values, self.coarse_gain, self.coarse_offset)

    def guide(self, values: np.ndarray) -> np.ndarray:
        return self._map(values, self.guide_gain, self.guide_offset)

    @staticmethod
    def work(
        radiometry: Radiometry | None, coarse: np.ndarray, guide: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``coarse`` and ``guide`` in the working values (unchanged without ``radiometry``)."""
        if radiometry is None:
            return coarse, guide
        return radiometry.coarse(coarse), radiometry.guide(guide)

    def stored(self, values: np.ndarray, band: int | None = None) -> np.ndarray:
        """Coarse-band values back in the stored values: ``(band, y, x)`` planes of every coarse
        band, or of the one coarse band ``band``."""
        picked = slice(None) if band is None else slice(band, band + 1)
        offset = np.asarray(self.coarse_offset, np.float64)[picked, None, None]
        return (values - offset) / np.asarray(self.coarse_gain, np.float64)[picked, None, None]


def network_block(
    coarse: np.ndarray,
    valid: np.ndarray,
    guide: np.ndarray,
    guide_valid: np.ndarray,
    *,
    geometry: BlockGeometry,
    weights: np.ndarray,
    sigmas: Sequence[float],
    network: Any,
    dtype: Any,
    nodata: float | None,
    radiometry: Radiometry | None = None,
) -> np.ndarray:
    """The guided network's result of one block pair: GLP plus the network's residual.

    ``network`` has ``layers`` (valid 3x3 convolutions, its halo in fine pixels) and maps
    ``(inputs, y + 2 layers, x + 2 layers)`` float32 planes to the ``(bands, y, x)`` residual.
    Where the guide is invalid within the network's reach the residual is not added (GLP there
    already falls back to ``up(C)``). With ``radiometry`` it works on the mapped values and
    returns stored ones.
    """
    coarse, guide = Radiometry.work(radiometry, coarse, guide)
    if not valid.all():  # what the network sees beyond the data: zero, whatever was stored there
        coarse = np.where(valid, coarse, 0)
    m = network.layers
    base, fused, fine_valid = glp_planes(
        coarse,
        valid,
        guide,
        guide_valid,
        geometry=geometry,
        weights=weights,
        sigmas=sigmas,
        margin=m,
    )
    assert base is not None  # kept by default
    clean = guide if guide_valid.all() else np.where(guide_valid, guide, 0)
    planes = network_inputs(base, fused, clean, geometry, m)
    residual = network(planes)
    core = (slice(None), slice(m, fused.shape[1] - m), slice(m, fused.shape[2] - m))
    if not guide_valid.all():
        ny, nx = fused.shape[1] - 2 * m, fused.shape[2] - 2 * m
        ok = _all_valid_within(guide_valid, 2 * m, geometry.fine_halo, (ny, nx))
        residual[:, ~ok] = 0
    values = fused[core] + residual
    if radiometry is not None:
        values = radiometry.stored(values)
    return finalize(values, np.dtype(dtype), nodata, ~fine_valid[core])
