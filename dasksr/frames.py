"""Opening inputs as the library's operations take them: one checked raster, its chosen bands, or
the frames of a scene stacked on one grid with their masks (the input of `dasksr.fuse`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasksr.errors import InputError, InvalidArgumentError

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["open_frame", "select_bands", "check_same_grid", "grid_difference", "open_stack"]

PathLike = str | os.PathLike[str]


def open_frame(path: PathLike, *, chunks: Any = None, variable: str | None = None) -> xr.DataArray:
    """Open one raster lazily, checked and with its spatial dims set for rioxarray.

    Parameters
    ----------
    path : str or os.PathLike
        A GeoTIFF/COG or Zarr store, a path or a URL (as `dasksr.open_raster`).
    chunks : optional
        Chunks of the read, as `dasksr.open_raster`.
    variable : str, optional
        The variable of a Zarr store.

    Returns
    -------
    xarray.DataArray
        The raster, lazy, with ``rio`` knowing its ``y`` and ``x`` dims.

    Raises
    ------
    InputError
        When the raster holds no pixels (a dim of length 0).
    InvalidArgumentError
        When its spatial dims cannot be told (`dasksr.api.spatial_dims`).
    """
    from dasksr.io import open_raster

    return checked_raster(open_raster(path, chunks=chunks, variable=variable), str(path))


def checked_raster(data: xr.DataArray, path: str) -> xr.DataArray:
    """``data`` with its spatial dims set for rioxarray; `InputError` when it has no pixels, and
    `InvalidArgumentError` when its spatial dims cannot be told (`dasksr.api.spatial_dims`)."""
    import rioxarray  # noqa: F401  (the rio accessor)

    from dasksr.api import spatial_dims

    empty = [f"{dim}: 0" for dim, n in data.sizes.items() if n == 0]
    if empty:
        raise InputError(
            f"input {path!r} holds no pixels ({', '.join(empty)}): check the file or the variable"
        )
    ydim, xdim = spatial_dims(data)
    return data.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)


def select_bands(data: xr.DataArray, bands: Sequence[int], *, path: str) -> xr.DataArray:
    """``data``'s 1-based ``bands`` in that order, with their per-band attributes.

    Parameters
    ----------
    data : xarray.DataArray
        A raster with a ``band`` dim.
    bands : sequence of int
        Band numbers from 1, in the order wanted; repeats allowed.
    path : str
        The raster's name in messages.

    Returns
    -------
    xarray.DataArray
        The selection; attributes with one entry per band (names, scales, offsets) follow it.

    Raises
    ------
    InvalidArgumentError
        When ``data`` has no ``band`` dim or not one of the ``bands``.
    """
    if "band" not in data.dims:
        raise InvalidArgumentError(
            f"--bands: input {path!r} has no band dimension ({', '.join(map(str, data.dims))}): "
            "drop --bands"
        )
    count = data.sizes["band"]
    missing = [b for b in bands if b > count]
    if missing:
        raise InvalidArgumentError(
            f"--bands {','.join(map(str, missing))}: input {path!r} has {count} band(s), "
            f"numbered 1..{count}"
        )
    picked = data.isel(band=[b - 1 for b in bands])
    attrs = dict(picked.attrs)
    for key, value in data.attrs.items():  # band names, scales, offsets: one entry per band
        if isinstance(value, (list, tuple)) and len(value) == count:
            attrs[key] = type(value)(value[b - 1] for b in bands)
    picked.attrs = attrs
    return picked


def grid_difference(first: xr.DataArray, other: xr.DataArray) -> str:
    """What differs between the grids of two rasters: size, CRS, transform or band count (in that
    order, the first found); empty when they share one."""
    from dasksr.grid import format_number

    if first.shape[-2:] != other.shape[-2:]:
        return (
            f"size {other.shape[-1]} x {other.shape[-2]} instead of "
            f"{first.shape[-1]} x {first.shape[-2]}"
        )
    if first.rio.crs != other.rio.crs:
        return f"CRS {other.rio.crs} instead of {first.rio.crs}"
    a, b = first.rio.transform(), other.rio.transform()
    if not a.almost_equals(b):
        affine = [", ".join(format_number(v) for v in tuple(t)[:6]) for t in (a, b)]
        return f"transform ({affine[1]}) instead of ({affine[0]})"
    if first.shape != other.shape:
        return f"{other.shape[0]} band(s) instead of {first.shape[0]}"
    return ""


def check_same_grid(
    first: xr.DataArray, other: xr.DataArray, *, names: tuple[str, str] = ("first", "other")
) -> None:
    """Raise `InvalidArgumentError` unless ``other`` is on the grid of ``first``.

    Parameters
    ----------
    first, other : xarray.DataArray
        Rasters with their spatial dims known to rioxarray (as `open_frame` returns them).
    names : tuple of str
        How the message names ``first`` and ``other`` (their paths).

    Raises
    ------
    InvalidArgumentError
        Naming ``other`` and the first difference found (`grid_difference`).
    """
    difference = grid_difference(first, other)
    if difference:
        raise InvalidArgumentError(
            f"frame {names[1]} is not on the grid of {names[0]}: {difference}; "
            "resample the frames to one grid first"
        )


def open_stack(
    paths: PathLike | Sequence[PathLike],
    *,
    masks: Sequence[PathLike] | None = None,
    mask_band: int | None = None,
    mask_rule: str | Any = "auto",
    variable: str | None = None,
    chunks: Any = None,
) -> tuple[xr.DataArray, xr.DataArray | None]:
    """Open the frames of a scene as one lazy stack, with their masks, ready for `dasksr.fuse`.

    Parameters
    ----------
    paths : str, os.PathLike or a sequence of them
        Several rasters on one grid, one frame each (the ``time`` labels are their file names
        without the extension), or one raster (a Zarr store) whose variable has a ``time`` dim.
    masks : sequence of str or os.PathLike, optional
        One single-band mask or quality raster per frame, in order, on the frames' grid, read by
        ``mask_rule``.
    mask_band : int, optional
        The 1-based band of every frame that is its mask or quality layer (read by
        ``mask_rule``); it is taken out of the stack.
    mask_rule : str or QualityRule
        How masks and mask bands are read (`dasksr.kernels.quality.quality_rule`): ``'nonzero'``,
        ``'scl'``, ``'qa_pixel'``, ``'bqa'``, ``'classes:V,...'`` or ``'bits:B,...'``. ``'auto'``
        takes the rule that a mask file's name says (``SCL``, ``QA_PIXEL``, ``BQA``), else
        ``'nonzero'``.
    variable : str, optional
        The variable of a Zarr input.
    chunks : optional
        Chunks of the reads, as `dasksr.open_raster`.

    Returns
    -------
    stack : xarray.DataArray
        ``(time, [band,] y, x)``, lazy.
    masks : xarray.DataArray or None
        ``(time, y, x)`` booleans, True where a frame's pixel is invalid (the mask band's and the
        mask files' together), or None when neither was given.

    Raises
    ------
    InvalidArgumentError
        One frame without a ``time`` dim, frames on different grids (`check_same_grid`), a
        ``mask_band`` the frames do not have or that would leave no band, a mask count other than
        the frames', or a mask of another size or with several bands.
    InputError
        An input that cannot be read or holds no pixels.

    Examples
    --------
    >>> import dasksr
    >>> stack, masks = dasksr.open_stack(["a.tif", "b.tif", "c.tif"])  # doctest: +SKIP
    >>> fine = dasksr.fuse(stack, 2, masks=masks)  # doctest: +SKIP
    """
    import xarray as xr

    frames = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
    if not frames:
        raise InvalidArgumentError("give the frames: fuse needs at least 2")
    opened = [open_frame(f, chunks=chunks, variable=variable) for f in frames]
    if len(frames) == 1:
        stack = opened[0]
        if "time" not in stack.dims:
            raise InvalidArgumentError(
                f"{frames[0]} is one frame: fuse needs at least 2 (for a single image use upscale)"
            )
    else:
        for path, data in zip(frames[1:], opened[1:], strict=True):
            check_same_grid(opened[0], data, names=(frames[0], path))
        stack = xr.concat(opened, dim="time", combine_attrs="override", join="override")
        stack = stack.assign_coords(time=[Path(f).stem for f in frames])
    invalid = None
    if mask_band is not None:
        stack, invalid = _split_mask_band(stack, mask_band, _rule(mask_rule, []))
    if masks:
        names = [str(m) for m in masks]
        from_files = _mask_files(names, stack, chunks=chunks, rule=_rule(mask_rule, names))
        invalid = from_files if invalid is None else invalid | from_files
    return stack, invalid


def _rule(rule: Any, paths: list[str]) -> Any:
    """The `QualityRule` of ``rule``; ``'auto'``: the one the mask files' names say (all of them
    alike), else ``'nonzero'``."""
    import re

    from dasksr.kernels.quality import quality_rule

    if not (isinstance(rule, str) and rule.strip().lower() == "auto"):
        return quality_rule(rule)
    said = set()
    for path in paths:
        stem = Path(path).stem.upper()
        found = [
            n for n in ("SCL", "QA_PIXEL", "BQA") if re.search(rf"(?<![A-Z]){n}(?![A-Z])", stem)
        ]
        said.add(found[0].lower() if found else "nonzero")
    return quality_rule(said.pop() if len(said) == 1 else "nonzero")


def _split_mask_band(
    stack: xr.DataArray, mask_band: int, rule: Any
) -> tuple[xr.DataArray, xr.DataArray]:
    """The stack without its 1-based ``mask_band``, and that band as invalid flags."""
    bands = stack.sizes.get("band", 1)
    if "band" not in stack.dims or mask_band > bands:
        raise InvalidArgumentError(
            f"--mask-band {mask_band} is not a band of the frames ({bands} band(s))"
        )
    if bands < 2:
        raise InvalidArgumentError(
            f"--mask-band {mask_band}: the frames need a band besides the mask band"
        )
    invalid = _decoded(stack.isel(band=mask_band - 1, drop=True), rule)
    return stack.drop_isel(band=mask_band - 1), invalid


def _decoded(layer: xr.DataArray, rule: Any) -> xr.DataArray:
    """``layer`` (lazy) as invalid flags under ``rule``."""
    import xarray as xr

    from dasksr.kernels.quality import decode_quality

    return xr.apply_ufunc(
        decode_quality, layer, kwargs={"rule": rule}, dask="parallelized", output_dtypes=[bool]
    )


def _mask_files(paths: list[str], stack: xr.DataArray, *, chunks: Any, rule: Any) -> xr.DataArray:
    """The mask rasters as ``(time, y, x)`` invalid flags aligned with the stack's frames."""
    import xarray as xr

    from dasksr.io import open_raster

    if len(paths) != stack.sizes["time"]:
        raise InvalidArgumentError(
            f"{len(paths)} mask(s) for {stack.sizes['time']} frames: give one --masks per frame"
        )
    squeezed = []
    for path, m in zip(paths, [open_raster(p, chunks=chunks) for p in paths], strict=True):
        if m.shape[-2:] != stack.shape[-2:]:
            raise InvalidArgumentError(
                f"mask {path} is {m.shape[-1]} x {m.shape[-2]} pixels but the frames are "
                f"{stack.shape[-1]} x {stack.shape[-2]}: give masks on the frames' grid"
            )
        if "band" in m.dims:
            if m.sizes["band"] != 1:
                raise InvalidArgumentError(
                    f"mask {path} has {m.sizes['band']} bands: give single-band masks"
                )
            m = m.squeeze("band", drop=True)
        squeezed.append(_decoded(m, rule))
    return xr.concat(squeezed, dim="time").assign_coords(time=stack["time"].values)
