"""Simulated revisits for multi-frame super-resolution: shifted, blurred, noisy, cloudy frames."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from dasksr.degrade import degrade_sensor
from dasksr.errors import InvalidArgumentError
from dasksr.kernels.method import check_scale

__all__ = ["SimulatedStack", "simulate_stack"]


class SimulatedStack(NamedTuple):
    """What :func:`simulate_stack` returns."""

    #: The frames, ``(time, [band,] y, x)``, in the dtype of the scene.
    frames: xr.DataArray
    #: The true ``(dy, dx)`` of every frame in low-resolution pixels (frame 0 is ``(0, 0)``).
    shifts: np.ndarray
    #: Where each frame is clouded, ``(time, y, x)`` booleans, or None without clouds.
    masks: xr.DataArray | None


def simulate_stack(
    hr: Any,
    n: int,
    scale: int,
    *,
    sigma: float = 0.5,
    snr: float | None = None,
    max_shift: float = 1.0,
    clouds: float | None = None,
    cloud_frames: Any = None,
    cloud_brightness: float = 60.0,
    seed: int = 0,
) -> SimulatedStack:
    """Simulate ``n`` low-resolution acquisitions of the scene ``hr`` (a stack for ``fuse``).

    Each frame is :func:`dasksr.degrade_sensor` of ``hr`` (Gaussian PSF of ``sigma`` LR pixels,
    decimation by ``scale``, noise at ``snr`` dB) with its own subpixel shift, drawn uniformly in
    ``[-max_shift, max_shift]`` LR pixels on each axis. Frame 0 has no shift, so ``hr`` is the
    ground truth on its fine grid.

    Parameters
    ----------
    hr : array_like or xarray.DataArray
        The scene, ``(y, x)`` or ``(band, y, x)``; its size must be a multiple of ``scale``
        (see :func:`dasksr.mod_crop`).
    n : int
        Number of frames, at least 1.
    scale : int
        Decimation factor.
    sigma, snr
        As for :func:`dasksr.degrade_sensor`; every frame gets its own noise.
    max_shift : float
        Largest shift along each axis, in LR pixels.
    clouds : float, optional
        Fraction of the pixels of each clouded frame under bright smooth blobs, at least
        ``cloud_brightness`` above the scene (at their edges) and rising smoothly to 1.5 times
        that inside. Clouds of different frames are drawn independently, so they overlap in
        places.
    cloud_frames : sequence of int, optional
        The frames that get clouds (default: every frame but frame 0).
    cloud_brightness : float
        Height of the blobs in the scene's units (DN).
    seed : int
        Seed of the shifts, the noise and the clouds.

    Returns
    -------
    SimulatedStack
        ``(frames, shifts, masks)``: the frames as a DataArray ``(time, [band,] y, x)`` with
        ``shift_y``/``shift_x`` coordinates along ``time``, the true shifts ``(n, 2)``, and the
        cloud masks (True under a blob) or None.

    Examples
    --------
    >>> import numpy as np
    >>> from dasksr import simulate_stack
    >>> scene = np.random.default_rng(0).uniform(0, 100, (64, 64))
    >>> frames, shifts, masks = simulate_stack(scene, 4, 2, snr=40, seed=1)
    >>> frames.shape, shifts.shape, masks is None
    ((4, 32, 32), (4, 2), True)
    """
    scale = check_scale(scale, minimum=1)
    if not (isinstance(n, int) and n >= 1):
        raise InvalidArgumentError(f"n={n!r} must be a positive number of frames")
    if not (math.isfinite(max_shift) and max_shift >= 0):
        raise InvalidArgumentError(f"max_shift={max_shift!r} must be a non-negative number")
    if clouds is not None and not 0 < clouds < 1:
        raise InvalidArgumentError(f"clouds={clouds!r} must be a fraction between 0 and 1")
    template = hr if isinstance(hr, xr.DataArray) else None
    scene = np.asarray(hr.values if template is not None else hr)
    rng = np.random.default_rng([seed, 0])
    shifts = rng.uniform(-max_shift, max_shift, (n, 2))
    shifts[0] = 0.0
    frames = np.stack(
        [
            degrade_sensor(scene, scale, sigma=sigma, shift=tuple(d), snr=snr, seed=seed + k)
            for k, d in enumerate(shifts)
        ]
    )
    masks = None
    if clouds is not None:
        which = range(1, n) if cloud_frames is None else [int(k) for k in cloud_frames]
        masks = np.zeros((n, *frames.shape[-2:]), dtype=bool)
        for k in which:
            blob = _cloud(frames.shape[-2:], clouds, np.random.default_rng([seed, 1, k]))
            masks[k] = blob > 0
            frames[k] = _add(frames[k], cloud_brightness * blob)
    return SimulatedStack(_as_dataarray(frames, shifts, template, scale), shifts, _masks(masks))


def _cloud(shape: tuple[int, ...], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Blobs on ``fraction`` of the pixels: 1 at their edge, rising smoothly to 1.5 inside."""
    from scipy.ndimage import gaussian_filter

    size = max(shape) / 8
    field = gaussian_filter(rng.standard_normal(shape), size, mode="wrap")
    threshold = np.quantile(field, 1 - fraction)
    inside = field > threshold
    ramp = (field.max() - threshold) / 2 or 1.0
    t = np.clip((field - threshold) / ramp, 0, 1)
    return np.where(inside, 1 + 0.5 * t * t * (3 - 2 * t), 0.0)


def _add(frame: np.ndarray, cloud: np.ndarray) -> np.ndarray:
    values = frame.astype(np.float64) + cloud
    if frame.dtype.kind in "iu":
        info = np.iinfo(frame.dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(frame.dtype)


def _as_dataarray(
    frames: np.ndarray, shifts: np.ndarray, template: xr.DataArray | None, scale: int
) -> xr.DataArray:
    dims = ("time", "band", "y", "x") if frames.ndim == 4 else ("time", "y", "x")
    coords: dict[str, Any] = {
        "time": np.arange(frames.shape[0]),
        "shift_y": ("time", shifts[:, 0]),
        "shift_x": ("time", shifts[:, 1]),
    }
    if template is None:
        return xr.DataArray(frames, dims=dims, coords=coords, name="frames")
    ydim, xdim = template.dims[-2:]
    for dim, name in ((ydim, "y"), (xdim, "x")):
        if dim in template.coords:
            # A coarse pixel's centre is the mean of the centres of the fine pixels it covers.
            coords[name] = template[dim].values.reshape(-1, scale).mean(axis=1)
    if frames.ndim == 4 and template.dims[0] in template.coords:
        coords["band"] = template[template.dims[0]].values
    out = xr.DataArray(frames, dims=dims, coords=coords, name=template.name, attrs=template.attrs)
    import rioxarray  # noqa: F401  (registers the rio accessor)

    crs = template.rio.crs if "x" in coords else None
    if crs is not None:
        out = out.rio.write_crs(crs)
    return out


def _masks(masks: np.ndarray | None) -> xr.DataArray | None:
    if masks is None:
        return None
    return xr.DataArray(masks, dims=("time", "y", "x"), coords={"time": np.arange(len(masks))})
