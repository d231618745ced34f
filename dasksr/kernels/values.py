"""Value rules shared by every kernel: working precision, rounding, clipping and nodata."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "cast",
    "finalize",
    "integer_range",
    "invalid_mask",
    "keep_off_nodata",
    "nodata_fits",
    "work_dtype",
]


def work_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """Floating-point type a kernel computes in for input ``dtype``.

    float32 holds every 8- and 16-bit integer exactly; wider integers and float64 use float64.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize > 2):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def invalid_mask(block: Any, nodata: float | None) -> Any | None:
    """Boolean mask of invalid pixels in ``block``, or None when every pixel is valid."""
    xp = _namespace(block)
    mask = None
    if block.dtype.kind == "f":
        mask = ~xp.isfinite(block)
    if nodata is not None and not np.isnan(nodata):
        eq = block == block.dtype.type(nodata)
        mask = eq if mask is None else mask | eq
    if mask is None or not bool(mask.any()):
        return None
    return mask


def nodata_fits(nodata: float, dtype: np.dtype[Any]) -> bool:
    """True when ``nodata`` can be stored in ``dtype``: an integer within its range for integer
    dtypes; for floating-point ones NaN, an infinity or a finite value within its range."""
    dtype = np.dtype(dtype)
    value = float(nodata)
    if dtype.kind in "iu":
        if not np.isfinite(value) or not value.is_integer():
            return False
        info = np.iinfo(dtype)
        return int(info.min) <= int(value) <= int(info.max)
    return not np.isfinite(value) or abs(value) <= float(np.finfo(dtype).max)


def keep_off_nodata(values: Any, nodata: float | None, invalid: Any | None = None) -> Any:
    """Move valid floating-point ``values`` that equal ``nodata`` one step off it, in place.

    An interpolated value can land exactly on the nodata value; a reader would then take a valid
    pixel for a hole. It becomes the next representable value (``numpy.nextafter``) towards
    +inf (towards -inf when nodata is the dtype's largest value). ``invalid`` marks the pixels
    that are nodata and stay so. Integer values are handled by :func:`finalize`.
    """
    if nodata is None or values.dtype.kind != "f" or not np.isfinite(nodata):
        return values
    target = values.dtype.type(nodata)
    clash = values == target
    if invalid is not None:
        clash &= ~invalid
    if bool(clash.any()):
        away = -np.inf if target == np.finfo(values.dtype).max else np.inf
        values[clash] = np.nextafter(target, values.dtype.type(away))
    return values


def integer_range(dtype: np.dtype[Any], nodata: float | None) -> tuple[float, float, float | None]:
    """``(low, high, inner)``: the clip range of valid values of integer ``dtype``.

    Nodata at an end of the range (0 for unsigned data, the minimum, the maximum) is kept out of
    reach by the clip itself; a nodata value inside the range is returned as ``inner`` and needs
    its own pass (see :func:`finalize`).
    """
    info = np.iinfo(dtype)
    low, high, inner = float(info.min), float(info.max), None
    if nodata is not None and not np.isnan(nodata) and info.min <= nodata <= info.max:
        if nodata == info.min:
            low += 1
        elif nodata == info.max:
            high -= 1
        else:
            inner = float(nodata)
    return low, high, inner


def finalize(
    values: Any,
    dtype: np.dtype[Any],
    nodata: float | None,
    invalid: Any | None,
    out: Any | None = None,
) -> Any:
    """Turn working-precision ``values`` into ``dtype``: round and clip integers, never wrap.

    ``invalid`` marks fine pixels that are nodata. A valid integer pixel that would round to the
    nodata value is moved one step towards the inside of the dtype's range, so that it stays valid;
    a valid floating-point pixel equal to nodata is moved off it by :func:`keep_off_nodata`.
    ``values`` is used as scratch space; the result is written into ``out`` when given.
    """
    xp = _namespace(values)
    dtype = np.dtype(dtype)
    if out is None:
        out = xp.empty(values.shape, dtype=dtype)
    if dtype.kind in "iu":
        low, high, inner = integer_range(dtype, nodata)
        if values.dtype.kind == "f":
            # The bounds as the working precision holds them, never outside the integer range:
            # float32 rounds 2**32 - 1 up to 2**32, which would wrap to 0 in the cast.
            info = np.iinfo(dtype)
            exact = (max(int(low), int(info.min)), min(int(high), int(info.max)))
            low = _inside(exact[0], values.dtype, exact[1])
            high = _inside(exact[1], values.dtype, exact[0])
        xp.rint(values, out=values)
        xp.clip(values, low, high, out=values)
        if inner is not None:
            clash = values == inner
            if invalid is not None:
                clash &= ~invalid
            values[clash] = inner + 1
        xp.copyto(out, values, casting="unsafe")
    else:
        xp.copyto(out, values, casting="unsafe")
        keep_off_nodata(out, nodata, invalid)
    if invalid is not None:
        out[invalid] = (np.nan if dtype.kind == "f" else 0) if nodata is None else nodata
    return out


def _inside(bound: int, work: np.dtype[Any], toward: int) -> Any:
    """``bound`` in the float dtype ``work``, stepped toward ``toward`` if rounding moved it out
    (both exact Python ints: even float64 rounds 2**63 - 1 up)."""
    value = work.type(bound)
    while (float(value) > bound) if toward < bound else (float(value) < bound):
        value = np.nextafter(value, work.type(toward))
    return value


def cast(values: Any, dtype: Any, nodata: float | None = None) -> Any:
    """``values`` in ``dtype``: integers rounded and clipped (never wrapped), NaN to ``nodata``."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or values.dtype.kind != "f":
        return values.astype(dtype)
    invalid = invalid_mask(values, nodata)
    work = values.astype(work_dtype(values.dtype), copy=True)
    if invalid is not None:
        work[invalid] = 0
    return finalize(work, dtype, nodata, invalid)


def _namespace(array: Any) -> Any:
    from dasksr.backend import array_namespace

    return array_namespace(array)
