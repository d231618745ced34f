"""Guided reconstruction: every coarse band on the grid of a product's sharper bands.

``sharpen(coarse, guide)`` puts each band of ``coarse`` (Sentinel-2's 20 m or 60 m bands, a
multispectral image) on the grid of ``guide`` (the 10 m bands, a panchromatic band), with the
guide's detail injected. It is the third operation beside ``upscale`` and ``fuse``, declared as an
`dasksr.operation.Operation` whose operands live on two grids:

- **Grids.** Both share a CRS and an integer resolution ratio; their origins may differ by any
  amount (Sentinel-2's 10 m and 20 m crops, Landsat's pan half a pan pixel off the multispectral
  grid). `relate_grids` measures the offset and the coarse bands are cut (`aligned_coarse`) so that
  every fine block of ``ratio * c`` pixels has its coarse block of ``c`` pixels at the same offset:
  the kernel (:mod:`dasksr.kernels.sharpen`) then sees the same geometry in every block. Each
  operand is extended past its edges (the guide by half-sample symmetry, the coarse bands with
  invalid pixels, so nothing is invented where the coarse bands have no data) and blocks get
  their halos from their neighbours (``map_overlap`` with no boundary): chunked equals whole.
- **Statistics.** GLP's regression weights are summed over the valid coarse pixels of the whole
  scene in a first pass, then rounded to 9 significant digits (the sums' last bits depend on the
  chunking; the rounded weights do not), and enter every block as constants.
- **Values.** The result has the coarse bands' dtype and nodata, the guide's grid (CRS, transform,
  coordinates) and the coarse bands' names, written as the band descriptions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from dasksr.api import check_nodata_fits, raster_transform, spatial_dims
from dasksr.errors import InvalidArgumentError
from dasksr.grid import format_number
from dasksr.kernels import sharpen as kernel
from dasksr.operation import Operand, Operation, plan
from dasksr.scenes import SENTINEL2_MTF

__all__ = [
    "GENERIC_MTF",
    "SHARPEN_METHODS",
    "GridRelation",
    "band_mtf",
    "relate_grids",
    "sharpen",
    "sharpen_check",
    "sharpen_numpy",
]

#: The MTF gain at Nyquist assumed for a band of unknown sensor (the pansharpening literature's
#: usual default).
GENERIC_MTF = 0.3
#: The guided methods.
SHARPEN_METHODS = ("glp", "cnn-s2")
#: Default fine chunk size (pixels per side).
_FINE_CHUNK = 1024


def band_mtf(name: str | None) -> float:
    """The MTF gain at Nyquist of a band by its name: Sentinel-2's as the products name them
    (``B01`` .. ``B12``, ``B8A``); anything else, Landsat's ``B2`` included (no citable OLI
    values were found), gets `GENERIC_MTF`."""
    return GENERIC_MTF if name is None else SENTINEL2_MTF.get(str(name).upper(), GENERIC_MTF)


@dataclass(frozen=True)
class GridRelation:
    """Where the coarse grid lies on the guide's: ``ratio`` guide pixels per coarse pixel, and
    ``origin``, the coarse grid's first pixel edge in guide pixels (``(y, x)``, any real value)."""

    ratio: int
    origin: tuple[float, float]

    @property
    def first(self) -> tuple[int, int]:
        """The first coarse pixel used: the one whose cut puts the offset in ``(-ratio, 0]``."""
        return tuple(math.ceil(o / self.ratio - 1e-9) for o in self.origin)  # type: ignore[return-value]

    @property
    def offset(self) -> tuple[float, float]:
        """The kernel's offset: the first used coarse pixel's edge in guide pixels."""
        return tuple(o - f * self.ratio for o, f in zip(self.origin, self.first, strict=False))  # type: ignore[return-value]

    def coarse_length(self, fine: tuple[int, int]) -> tuple[int, int]:
        """Coarse pixels covering ``fine`` guide pixels from the first used one."""
        return tuple(
            math.ceil((n - e) / self.ratio - 1e-9) for n, e in zip(fine, self.offset, strict=False)
        )  # type: ignore[return-value]


def _describe(data: xr.DataArray, transform: Any) -> str:
    ny, nx = data.shape[-2:]
    crs = data.rio.crs
    where = "no CRS" if crs is None else str(crs.to_string())
    return (
        f"{nx}x{ny} px of {format_number(abs(transform.a))} x {format_number(abs(transform.e))} "
        f"at ({format_number(transform.c)}, {format_number(transform.f)}), {where}"
    )


def relate_grids(coarse: xr.DataArray, guide: xr.DataArray) -> GridRelation:
    """The `GridRelation` of two georeferenced ``(band, y, x)`` DataArrays, or a one-line
    `InvalidArgumentError` naming both grids (different CRS, non-integer ratio, rotation, swapped
    arguments, disjoint extents)."""
    ct, gt = raster_transform(coarse), raster_transform(guide)
    if ct is None or gt is None:
        raise InvalidArgumentError(
            "sharpen needs georeferenced inputs (a transform on both): "
            f"coarse has {'none' if ct is None else 'one'}, guide has {'none' if gt is None else 'one'}"
        )
    grids = f"coarse {_describe(coarse, ct)}; guide {_describe(guide, gt)}"
    if coarse.rio.crs != guide.rio.crs:
        raise InvalidArgumentError(f"the coarse bands and the guide have different CRS: {grids}")
    if ct.b or ct.d or gt.b or gt.d or ct.a <= 0 or gt.a <= 0 or ct.e >= 0 or gt.e >= 0:
        raise InvalidArgumentError(f"sharpen needs north-up grids: {grids}")
    ratio_x, ratio_y = ct.a / gt.a, ct.e / gt.e
    if ratio_x < 1 - 1e-9 or ratio_y < 1 - 1e-9:
        raise InvalidArgumentError(
            f"the guide is coarser than the bands to sharpen (are the arguments swapped?): {grids}"
        )
    ratio = round(ratio_x)
    if abs(ratio_x - ratio) > 1e-6 * ratio or abs(ratio_y - ratio) > 1e-6 * ratio or ratio < 2:
        raise InvalidArgumentError(
            f"the resolution ratio must be one integer of at least 2 on both axes, "
            f"not {ratio_x:g} x {ratio_y:g}: {grids}"
        )
    origin = ((ct.f - gt.f) / gt.e, (ct.c - gt.c) / gt.a)
    ny, nx = guide.shape[-2:]
    cy, cx = coarse.shape[-2:]
    apart = (
        origin[1] >= nx
        or origin[1] + cx * ratio <= 0
        or origin[0] >= ny
        or origin[0] + cy * ratio <= 0
    )
    if apart:
        raise InvalidArgumentError(f"the coarse bands and the guide do not overlap: {grids}")
    # Offsets within a millionth of a pixel are taken as exact.
    exact = [float(round(o)) if abs(o - round(o)) < 1e-6 else float(o) for o in origin]
    return GridRelation(ratio=ratio, origin=(exact[0], exact[1]))


def _band_names(data: xr.DataArray) -> list[str | None]:
    """Each band's identity: the ``band`` coordinate when it holds names, else the descriptions
    (``long_name``), else None."""
    n = data.shape[0]
    lead = data.dims[0]
    if lead in data.coords:
        values = [v.item() if hasattr(v, "item") else v for v in data[lead].values]
        if all(isinstance(v, str) and v for v in values):
            return [str(v) for v in values]
    described = data.attrs.get("long_name")
    if isinstance(described, str) and n == 1:
        described = (described,)
    if isinstance(described, (list, tuple)) and len(described) == n and all(described):
        return [str(v) for v in described]
    return [None] * n


def _as_bands(data: Any, what: str) -> xr.DataArray:
    """``data`` as a ``(band, y, x)`` DataArray: a Dataset's single-band variables are stacked
    (their names are the bands'), a 2-D DataArray gets a band axis."""
    import rioxarray  # noqa: F401

    if isinstance(data, xr.Dataset):
        planes = []
        for name, var in data.data_vars.items():
            if var.ndim == 3 and var.shape[0] == 1:
                var = var.squeeze(var.dims[0], drop=True)
            if var.ndim != 2:
                raise InvalidArgumentError(
                    f"{what}: Dataset variable {name!r} has dims {tuple(var.dims)}; "
                    "each variable must be one band (y, x)"
                )
            planes.append(var.expand_dims(band=[str(name)]))
        if not planes:
            raise InvalidArgumentError(f"{what}: the Dataset has no variables")
        stacked = xr.concat(planes, dim="band", combine_attrs="override")
        stacked.attrs["long_name"] = tuple(str(n) for n in data.data_vars)
        return stacked.rio.write_crs(data.rio.crs) if data.rio.crs is not None else stacked
    if not isinstance(data, xr.DataArray):
        raise InvalidArgumentError(
            f"{what} must be an xarray DataArray (band, y, x) or a Dataset of bands, "
            f"not {type(data).__name__}"
        )
    if data.ndim == 2:
        data = data.expand_dims(band=[data.name if isinstance(data.name, str) else 1])
    if data.ndim != 3:
        raise InvalidArgumentError(f"{what} must be (band, y, x), not {tuple(data.dims)}")
    ydim, xdim = spatial_dims(data)
    lead = next(d for d in data.dims if d not in (ydim, xdim))
    return data.transpose(lead, ydim, xdim).rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)


def _nodata(data: xr.DataArray, given: float | None) -> float | None:
    if given is not None:
        return float(given)
    value = data.rio.nodata
    if value is None:
        value = data.rio.encoded_nodata
    return None if value is None else float(value)


@dataclass(frozen=True)
class _Layout:
    """Blocks of both operands: the coarse cut, the chunks of each and their halos."""

    relation: GridRelation
    fine: tuple[int, int]
    coarse_chunks: tuple[tuple[int, ...], tuple[int, ...]]
    fine_chunks: tuple[tuple[int, ...], tuple[int, ...]]
    coarse_halo: int
    fine_halo: int

    @property
    def geometry(self) -> kernel.BlockGeometry:
        r = self.relation
        return kernel.BlockGeometry(r.ratio, r.offset, self.coarse_halo, self.fine_halo)


def _layout(
    relation: GridRelation, fine: tuple[int, int], halos: tuple[int, int], chunk: int
) -> _Layout:
    r = relation.ratio
    hc, hf = halos
    c = max(chunk // r, hc, -(-hf // r), 1)
    lengths = relation.coarse_length(fine)
    coarse_chunks, fine_chunks = [], []
    for n_fine, n_coarse in zip(fine, lengths, strict=False):
        blocks = max(1, -(-n_fine // (c * r)))
        fine_chunks.append((c * r,) * (blocks - 1) + (n_fine - (blocks - 1) * c * r,))
        coarse_chunks.append((c,) * (blocks - 1) + (n_coarse - (blocks - 1) * c,))
    return _Layout(relation, fine, tuple(coarse_chunks), tuple(fine_chunks), hc, hf)  # type: ignore[arg-type]


def _extend(array: Any, before: tuple[int, int], after: tuple[int, int], mode: str) -> Any:
    """Pad (or crop, for negative widths) the last two axes; ``mode`` 'zero' or 'symmetric'.

    The symmetric extension is written as an index map (half-sample symmetry, repeated for
    widths beyond the axis's length, as ``numpy.pad`` does), the same for NumPy and dask arrays.
    """
    xp = da if isinstance(array, da.Array) else np
    if mode == "zero":
        widths = [(0, 0)] + [(max(b, 0), max(a, 0)) for b, a in zip(before, after, strict=True)]
        if any(w != (0, 0) for w in widths):
            array = xp.pad(array, widths, mode="constant", constant_values=0)
        crop = [slice(None)] + [
            slice(max(-b, 0), array.shape[ax + 1] - max(-a, 0))
            for ax, (b, a) in enumerate(zip(before, after, strict=True))
        ]
        return array[tuple(crop)]
    for ax, (b, a) in enumerate(zip(before, after, strict=True)):
        n = array.shape[ax + 1]
        index = np.arange(-b, n + a) % (2 * n)
        index = np.where(index >= n, 2 * n - 1 - index, index)
        if np.array_equal(index, np.arange(n)):
            continue
        runs = _runs(index)
        if xp is da and len(runs) <= 3:
            # Reversed and plain slices, concatenated: ``take`` would shuffle every chunk.
            parts = [array[(slice(None),) * (ax + 1) + (r,)] for r in runs]
            array = da.concatenate(parts, axis=ax + 1) if len(parts) > 1 else parts[0]
        else:
            array = xp.take(array, index, axis=ax + 1)
    return array


def _runs(index: np.ndarray) -> list[slice]:
    """``index`` as consecutive slices of step 1 or -1 (a crop or a reflection each)."""
    runs, start, n = [], 0, index.size
    while start < n:
        end, step = start + 1, 1
        if end < n and abs(int(index[end] - index[start])) == 1:
            step = int(index[end] - index[start])
            while end < n and index[end] - index[end - 1] == step:
                end += 1
        first, last = int(index[start]), int(index[end - 1])
        if step == 1:
            runs.append(slice(first, last + 1))
        else:
            runs.append(slice(first, last - 1 if last > 0 else None, -1))
        start = end
    return runs


def _operands(
    layout: _Layout, coarse: Any, coarse_valid: Any, guide: Any, guide_valid: Any
) -> list[Any]:
    """The four operands extended by their halos (and the coarse ones cut to the fine grid)."""
    rel, hc, hf = layout.relation, layout.coarse_halo, layout.fine_halo
    lengths = rel.coarse_length(layout.fine)
    # The first used coarse pixel is pixel -first (its edge lies at the offset).
    before = tuple(hc + f for f in rel.first)
    after = tuple(
        n + hc - f - size for f, n, size in zip(rel.first, lengths, coarse.shape[-2:], strict=False)
    )
    out = [
        _extend(coarse, before, after, "zero"),  # type: ignore[arg-type]
        _extend(coarse_valid, before, after, "zero"),  # type: ignore[arg-type]
        _extend(guide, (hf, hf), (hf, hf), "symmetric"),
        _extend(guide_valid, (hf, hf), (hf, hf), "symmetric"),
    ]
    if isinstance(coarse, da.Array):
        cc = [
            (hc + ch[0], *ch[1:-1], ch[-1] + hc) if len(ch) > 1 else (ch[0] + 2 * hc,)
            for ch in layout.coarse_chunks
        ]
        fc = [
            (hf + ch[0], *ch[1:-1], ch[-1] + hf) if len(ch) > 1 else (ch[0] + 2 * hf,)
            for ch in layout.fine_chunks
        ]
        out = [a.rechunk(((a.shape[0],), *(cc if i < 2 else fc))) for i, a in enumerate(out)]
    return out


def _operation(
    name: str, token: str, block: Any, layout: _Layout, dtype: Any, nodata: float | None = None
) -> Operation:
    """The `Operation` of a sharpen pass: four operands on two grids, each already extended."""
    hc, hf = layout.coarse_halo, layout.fine_halo
    return Operation(
        name=name,
        token=tokenize(token, layout.relation, layout.coarse_halo, layout.fine_halo),
        operands=(
            Operand("coarse", whole_leading=True, halo=hc),
            Operand("coarse validity", whole_leading=True, halo=hc),
            Operand("guide", whole_leading=True, halo=hf),
            Operand("guide validity", whole_leading=True, halo=hf),
        ),
        scale=layout.relation.ratio,
        halo=hf,
        block=block,
        dtype=np.dtype(dtype),
        boundary="extended",
        nodata=nodata,
        nodata_rule="a guide pixel is nodata where the coarse pixel containing its centre is, "
        "or where the coarse bands do not reach; no detail is injected where the guide is nodata",
    )


def _run(operation: Operation, operands: list[Any], chunks: tuple[tuple[int, ...], ...]) -> Any:
    if isinstance(operands[0], da.Array):
        return plan(operation, *operands, output_chunks=chunks).array
    return operation.whole(*operands)


def _stats_block(
    cb: Any,
    cv: Any,
    gb: Any,
    gv: Any,
    *,
    geometry: Any,
    sigmas: Sequence[float],
    radiometry: kernel.Radiometry | None,
) -> Any:
    stats = kernel.detail_statistics(
        cb, cv, gb, gv, geometry=geometry, sigmas=sigmas, radiometry=radiometry
    )
    return stats.reshape(stats.shape[0], 1, -1)


def _glp_weights(
    layout: _Layout,
    operands: list[Any],
    sigmas: Sequence[float],
    guides: int,
    radiometry: kernel.Radiometry | None = None,
) -> np.ndarray:
    """GLP's regression weights, ``(coarse bands, guide bands)``, from the whole scene."""
    bands, k = operands[0].shape[0], guides + 2
    block = partial(
        _stats_block, geometry=layout.geometry, sigmas=tuple(sigmas), radiometry=radiometry
    )
    operation = _operation("sharpen-statistics", tokenize(tuple(sigmas)), block, layout, np.float64)
    ny, nx = (len(c) for c in layout.fine_chunks)
    chunks = ((bands,), (1,) * ny, (k * k,) * nx)
    stats = _run(operation, operands, chunks)
    if isinstance(stats, da.Array):
        from dasksr.stream import compute

        # Strip by strip of the output's rows of blocks, as the output is written: the pass
        # reads the whole scene, and held most of it at once in one computation.
        row = bands * max(layout.fine_chunks[0]) * layout.fine[1] * operands[0].dtype.itemsize
        found = compute(
            list(stats.to_delayed(optimize_graph=False).ravel()), [stats], row_bytes=row
        )
        stats = np.concatenate(
            [np.concatenate(found[i * nx : (i + 1) * nx], axis=2) for i in range(ny)], axis=1
        )
    parts = np.asarray(stats)
    gram = parts.reshape(bands, ny, nx, k, k).sum(axis=(1, 2))
    if np.any(gram[:, -2, -2] == 0):
        raise InvalidArgumentError(
            "sharpen: no coarse pixel is valid where the guide is valid: nothing to learn the "
            "guide's weights from"
        )
    weights = kernel.solve_weights(gram)[:, :guides]
    # Rounded so that the chunking, which moves the sums' last bits, cannot change a result.
    return np.array([[float(f"{w:.9g}") for w in row] for row in weights])


def _valid(array: Any, nodata: float | None) -> Any:
    """Where ``array`` holds data: finite, and not ``nodata``."""
    xp = da if isinstance(array, da.Array) else np
    ok = xp.isfinite(array) if array.dtype.kind == "f" else xp.ones(array.shape, dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        ok = ok & (array != nodata)
    return ok


def _sharpen_block(
    cb: Any,
    cv: Any,
    gb: Any,
    gv: Any,
    *,
    geometry: kernel.BlockGeometry,
    weights: np.ndarray,
    sigmas: tuple[float, ...],
    network: Any,
    dtype: Any,
    nodata: float | None,
    radiometry: kernel.Radiometry | None = None,
) -> Any:
    common = {"geometry": geometry, "weights": weights, "sigmas": sigmas, "dtype": dtype}
    common |= {"nodata": nodata, "radiometry": radiometry}
    if network is None:
        return kernel.glp_block(cb, cv, gb, gv, **common)
    return kernel.network_block(cb, cv, gb, gv, network=network, **common)


def _outside(relation: GridRelation, fine: tuple[int, int], coarse: tuple[int, int]) -> bool:
    """Whether some guide pixel's centre lies outside the coarse bands' extent."""
    r = relation.ratio
    for o, n, m in zip(relation.origin, fine, coarse, strict=False):
        if math.floor((0.5 - o) / r) < 0 or math.floor((n - 0.5 - o) / r) >= m:
            return True
    return False


def _normal_name(name: str | None) -> str | None:
    if name is None:
        return None
    key = str(name).upper().removesuffix(".TIF").removesuffix(".TIFF")
    key = key.rsplit("_", 1)[-1] if "_" in key else key
    if key.startswith("B") and key[1:].isdigit() and len(key) == 2:
        key = f"B0{key[1]}"
    return key


def _network(
    ratio: int, names: list[str | None], guides: list[str | None]
) -> tuple[Any, list[int], list[int]]:
    """The shipped guided network for ``ratio`` and the orders that put the inputs in its bands'."""
    from dasksr.models import GuidedNetwork, guided_records

    records = guided_records()
    if ratio not in records:
        raise InvalidArgumentError(
            f"cnn-s2 has networks for ratios {', '.join(map(str, sorted(records)))}, not {ratio}"
        )
    record = records[ratio]
    need_c, need_g = list(record.record["coarse_bands"]), list(record.record["guide_bands"])
    given_c, given_g = [_normal_name(n) for n in names], [_normal_name(n) for n in guides]
    if None in given_c or None in given_g:
        raise InvalidArgumentError(
            "cnn-s2 needs each band's identity: name the bands (a 'band' coordinate or "
            f"descriptions such as {need_c[0]!r}; on the command line, files named like "
            f"{need_c[0]}.tif or band descriptions)"
        )
    if sorted(map(str, given_c)) != sorted(need_c) or not set(need_g) <= set(given_g):
        raise InvalidArgumentError(
            f"cnn-s2 x{ratio} sharpens {', '.join(need_c)} with the guide {', '.join(need_g)}; "
            f"got {', '.join(map(str, given_c))} with {', '.join(map(str, given_g))}"
        )
    return (
        GuidedNetwork(record),
        [given_c.index(b) for b in need_c],
        [given_g.index(b) for b in need_g],
    )


def _sharpen_arrays(
    coarse: Any,
    guide: Any,
    relation: GridRelation,
    *,
    names: list[str | None],
    guides: list[str | None],
    method: str,
    nodata: float | None,
    guide_nodata: float | None,
    chunk: int,
    radiometry: tuple[list[tuple[float, float]], list[tuple[float, float]]] | None = None,
) -> tuple[Any, float | None]:
    """The sharpened array (NumPy for NumPy inputs, else lazy) and its nodata. ``radiometry`` is
    each coarse and guide band's ``(scale, offset)`` (`band_radiometry`)."""
    if method not in SHARPEN_METHODS:
        from dasksr.errors import UnknownMethodError

        raise UnknownMethodError(
            f"unknown sharpen method {method!r}: use one of {', '.join(SHARPEN_METHODS)}"
        )
    r = relation.ratio
    network, order, guide_order = None, list(range(coarse.shape[0])), list(range(guide.shape[0]))
    if method == "cnn-s2":
        network, order, guide_order = _network(r, names, guides)
        coarse, guide = coarse[order], guide[guide_order]
        names = [names[i] for i in order]
    model = None
    if radiometry is not None:
        model = _model_radiometry(
            [radiometry[0][i] for i in order], [radiometry[1][i] for i in guide_order]
        )
    fine = tuple(int(n) for n in guide.shape[-2:])
    dtype = np.dtype(coarse.dtype)
    if nodata is None and _outside(relation, fine, coarse.shape[-2:]):  # type: ignore[arg-type]
        nodata = float("nan") if dtype.kind == "f" else 0.0
    check_nodata_fits(nodata, dtype)
    sigmas = tuple(kernel.mtf_sigma(band_mtf(n), r) for n in names)
    margin = 0 if network is None else network.layers
    layout = _layout(relation, fine, kernel.halos(r, max(sigmas), margin), chunk)  # type: ignore[arg-type]
    operands = _operands(layout, coarse, _valid(coarse, nodata), guide, _valid(guide, guide_nodata))
    weights = _glp_weights(layout, operands, sigmas, guide.shape[0], model)
    block = partial(
        _sharpen_block,
        geometry=layout.geometry,
        weights=weights,
        sigmas=sigmas,
        network=network,
        dtype=dtype,
        nodata=nodata,
        radiometry=model,
    )
    token = tokenize(
        method, weights, sigmas, model, None if network is None else network.record.sha256
    )
    operation = _operation(f"sharpen-{method}-x{r}", token, block, layout, dtype, nodata)
    out = _run(operation, operands, ((coarse.shape[0],), *layout.fine_chunks))
    back = np.argsort(order)
    return (out if list(back) == list(range(len(back))) else out[back]), nodata


#: What the shipped Sentinel-2 networks were trained on: L1C digital numbers of processing
#: baselines before 04.00, reflectance times 10000 with no offset.
_MODEL_QUANTIFICATION = 10000.0


def band_radiometry(data: xr.DataArray) -> list[tuple[float, float]]:
    """Each band's ``(scale, offset)``: its stored values ``v`` mean ``scale * v + offset``.

    From the per-band ``scales`` and ``offsets`` attributes (rasterio's names, which dasksr's
    readers give GDAL's band scale and offset, and a Sentinel-2 product's ``RADIO_ADD_OFFSET`` /
    ``BOA_ADD_OFFSET``), one value per band or one for all; ``(1, 0)`` where none is given.
    """
    n = data.shape[0]
    out = []
    for attr, identity in (("scales", 1.0), ("offsets", 0.0)):
        values = np.atleast_1d(np.asarray(data.attrs.get(attr, identity), dtype=np.float64))
        if values.size == 1:
            values = np.repeat(values, n)
        if values.size != n:
            raise InvalidArgumentError(
                f"sharpen: {attr} has {values.size} values for {n} bands; give one per band"
            )
        out.append(values)
    return [(float(s), float(o)) for s, o in zip(out[0], out[1], strict=True)]


def _model_radiometry(
    coarse: list[tuple[float, float]], guide: list[tuple[float, float]]
) -> kernel.Radiometry | None:
    """The maps from the stored values to the values `sharpen` works on (None when they are the
    same): reflectance times 10000 with no offset, what the shipped Sentinel-2 networks were
    trained on (L1C digital numbers before processing baseline 04.00) and the level GLP's
    weights were chosen at (`kernel.solve_weights`).

    A band with a scale other than 1 holds scaled reflectance (Sentinel-2 COGs: 0.0001 and -0.1):
    it is worked on as ``10000 * (scale * v + offset)``. A band with scale 1 and an offset holds
    digital numbers with a radiometric offset (Sentinel-2 since processing baseline 04.00:
    ``RADIO_ADD_OFFSET`` = -1000): it is worked on as ``v + offset``. The result is mapped back.
    """

    def model(pair: tuple[float, float]) -> tuple[float, float]:
        scale, offset = pair
        if scale == 1.0:
            return 1.0, offset
        return scale * _MODEL_QUANTIFICATION, offset * _MODEL_QUANTIFICATION

    maps = [[model(p) for p in side] for side in (coarse, guide)]
    if all(m == (1.0, 0.0) for side in maps for m in side):
        return None
    if any(m[0] <= 0 for side in maps for m in side):
        raise InvalidArgumentError("sharpen: a band's scale must be positive")
    return kernel.Radiometry(
        coarse_gain=tuple(m[0] for m in maps[0]),
        coarse_offset=tuple(m[1] for m in maps[0]),
        guide_gain=tuple(m[0] for m in maps[1]),
        guide_offset=tuple(m[1] for m in maps[1]),
    )


def sharpen_numpy(
    coarse: np.ndarray,
    guide: np.ndarray,
    *,
    ratio: int,
    origin: tuple[float, float] = (0.0, 0.0),
    method: str = "glp",
    names: Sequence[str | None] | None = None,
    guides: Sequence[str | None] | None = None,
    nodata: float | None = None,
    guide_nodata: float | None = None,
) -> np.ndarray:
    """The whole-image `sharpen` of ``(band, y, x)`` arrays: the reference of the seamless
    contract. ``origin`` is where the coarse grid's first pixel edge lies, in guide pixels."""
    relation = GridRelation(int(ratio), (float(origin[0]), float(origin[1])))
    out, _ = _sharpen_arrays(
        np.asarray(coarse),
        np.asarray(guide),
        relation,
        names=list(names) if names is not None else [None] * coarse.shape[0],
        guides=list(guides) if guides is not None else [None] * guide.shape[0],
        method=method,
        nodata=nodata,
        guide_nodata=guide_nodata,
        chunk=1 << 30,
    )
    return out


def sharpen(
    coarse: Any,
    guide: Any,
    *,
    method: str = "glp",
    nodata: float | None = None,
    guide_nodata: float | None = None,
    chunks: int | None = None,
) -> xr.DataArray:
    """Every band of ``coarse`` on the grid of ``guide``, with the guide's detail.

    Parameters
    ----------
    coarse, guide : xarray.DataArray or xarray.Dataset
        ``(band, y, x)`` DataArrays, or Datasets of single bands (the variable names are the bands').
        Both georeferenced, in one CRS; the guide's pixels an integer ratio (2 or more) smaller.
    method : {'glp', 'cnn-s2'}
        ``'glp'``: MTF-matched generalised Laplacian pyramid with regression weights, any sensor.
        ``'cnn-s2'``: the shipped Sentinel-2 networks (20 m and 60 m bands from the 10 m bands);
        the bands must be named (``B05``, ``B8A``...).
    nodata, guide_nodata : float, optional
        Override the inputs' own nodata.
    chunks : int, optional
        The output's chunk size in guide pixels (default 1024, rounded to a multiple of the ratio).

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` on the guide's grid and coordinates, in the coarse bands' dtype, with their
        nodata (where a coarse pixel is nodata, or where the coarse bands do not reach, the output
        is nodata), band names and attributes, and the guide's CRS and transform.
    """
    coarse_da, guide_da = _as_bands(coarse, "coarse"), _as_bands(guide, "guide")
    relation = relate_grids(coarse_da, guide_da)
    names, guides = _band_names(coarse_da), _band_names(guide_da)
    carr, garr = coarse_da.data, guide_da.data
    size = chunks or _FINE_CHUNK
    if not isinstance(carr, da.Array):
        carr = da.from_array(carr, chunks=(-1, size, size))
    if not isinstance(garr, da.Array):
        garr = da.from_array(garr, chunks=(-1, size, size))
    out, out_nodata = _sharpen_arrays(
        carr,
        garr,
        relation,
        names=names,
        guides=guides,
        method=method,
        nodata=_nodata(coarse_da, nodata),
        guide_nodata=_nodata(guide_da, guide_nodata),
        chunk=size,
        radiometry=(band_radiometry(coarse_da), band_radiometry(guide_da)),
    )
    return _on_guide_grid(out, coarse_da, guide_da, names, out_nodata, method)


def sharpen_check(out: xr.DataArray, coarse: Any, *, nodata: float | None = None) -> Any:
    """The consistency (`dasksr.consistency.Check`) of ``out = sharpen(coarse, guide)``: each
    band of ``out`` taken to the coarse grid by its MTF Gaussian (`band_mtf`, centred on the
    coarse pixels wherever they lie), minus ``coarse``. Coarse pixels that the output covers only
    in part, or where ``coarse`` has no data, are not measured."""
    from affine import Affine

    from dasksr.consistency import Check, residual, residual_raster
    from dasksr.kernels.degrade import sensor_psf

    coarse_da = _as_bands(coarse, "coarse")
    relation = relate_grids(coarse_da, out)
    r, fine = relation.ratio, tuple(int(n) for n in out.shape[-2:])
    lengths, first = relation.coarse_length(fine), relation.first  # type: ignore[arg-type]
    pad: Any = tuple(-math.floor(e) for e in relation.offset)
    after: Any = tuple(n * r - p - f for n, p, f in zip(lengths, pad, fine, strict=True))
    values = _extend(da.asarray(out.data), pad, after, "symmetric")
    shifts = [(e + p) / r for e, p in zip(relation.offset, pad, strict=True)]
    psfs = [
        tuple(sensor_psf(r, kernel.mtf_sigma(band_mtf(n), r) / r, d) for d in shifts)
        for n in _band_names(coarse_da)
    ]
    # The coarse pixel whose edge lies at the offset is pixel -first of the coarse array.
    cut_before = first
    cut_after: Any = tuple(
        n - f - m for f, n, m in zip(first, lengths, coarse_da.shape[-2:], strict=True)
    )
    data = da.asarray(coarse_da.data)
    valid = _extend(_valid(data, _nodata(coarse_da, nodata)), cut_before, cut_after, "zero")
    cut = da.where(valid, _extend(data, cut_before, cut_after, "zero").astype(float), np.nan)
    inside = [
        (relation.offset[i] + np.arange(n) * r >= 0)
        & (relation.offset[i] + (np.arange(n) + 1) * r <= fine[i])
        for i, n in enumerate(lengths)
    ]
    # Lazy, in the cut's chunks: a whole-scene mask in the graph would travel with every task.
    rows = da.from_array(inside[0], chunks=(cut.chunks[-2],))[:, None]
    cols = da.from_array(inside[1], chunks=(cut.chunks[-1],))[None, :]
    cut = da.where(rows & cols, cut, np.nan)
    found = residual(values, cut, r, psfs, nodata=out.rio.nodata, dtype=np.float32)  # type: ignore[arg-type]
    transform = raster_transform(coarse_da) @ Affine.translation(-first[1], -first[0])
    return Check(residual_raster(found, coarse_da, transform), "band MTF Gaussian")


def _on_guide_grid(
    out: Any,
    coarse: xr.DataArray,
    guide: xr.DataArray,
    names: list[str | None],
    nodata: float | None,
    method: str,
) -> xr.DataArray:
    ydim, xdim = spatial_dims(guide)
    lead = coarse.dims[0]
    coords: dict[Any, Any] = {ydim: guide[ydim], xdim: guide[xdim]} if ydim in guide.coords else {}
    if lead in coarse.coords:
        coords[lead] = coarse[lead]
    attrs = {k: v for k, v in coarse.attrs.items() if not str(k).startswith("STATISTICS_")}
    if all(n is not None for n in names):
        attrs["long_name"] = tuple(str(n) for n in names)
    attrs["sharpen_method"] = method
    result = xr.DataArray(
        out, dims=(lead, ydim, xdim), coords=coords, attrs=attrs, name=coarse.name
    )
    result.encoding = {k: v for k, v in coarse.encoding.items() if k in ("dtype",)}
    transform = raster_transform(guide)
    result = result.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)
    result = result.rio.write_transform(transform)
    if guide.rio.crs is not None:
        result = result.rio.write_crs(guide.rio.crs)
    if nodata is not None:
        result = result.rio.write_nodata(nodata, encoded=False)
    return result
