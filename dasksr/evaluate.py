"""The evaluation job behind ``dasksr evaluate``: the super-resolution literature's protocol.

For every ground-truth image: mod-crop to a multiple of the scale, make its low-resolution input
with MATLAB's ``imresize`` (or read the given one), super-resolve it with a registered method (the
output is rounded to uint8 for uint8 images), and measure PSNR and SSIM on the BT.601 Y channel
with ``scale`` pixels cropped from every border. The shipped networks (trained on Y, see
:func:`dasksr.models.evaluated_on_luma`) reconstruct the Y channel of RGB images, as published
tables of networks do.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dasksr.api import upscale
from dasksr.degrade import imresize, mod_crop
from dasksr.errors import DasksrError, InputError, OutputError
from dasksr.kernels.method import Method
from dasksr.methods import get_method
from dasksr.metrics import psnr, rgb2y, ssim
from dasksr.models import evaluated_on_luma

__all__ = ["evaluate_images", "format_table", "read_image", "write_json"]


def evaluate_images(
    hr: str | Sequence[str | os.PathLike[str]],
    *,
    scale: int,
    method: str | Method = "bicubic",
    lr: str | Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Evaluate ``method`` at ``scale`` on ground-truth images, as published tables do.

    Parameters
    ----------
    hr : str or sequence of paths
        The ground-truth (high-resolution) images: a glob pattern such as ``'Set5/*_HR.png'`` or
        a list of files. They are taken in sorted order.
    scale : int
        The super-resolution factor.
    method : str or Method
        Any registered method (see :func:`dasksr.list_methods`).
    lr : str or sequence of paths, optional
        Low-resolution inputs to use instead of ``imresize(hr, 1 / scale)``, paired with ``hr`` by
        sorted order; each must be exactly ``scale`` times smaller than its mod-cropped image.

    Returns
    -------
    dict
        ``{"method", "scale", "images": [{"name", "psnr", "ssim"}], "mean_psnr", "mean_ssim"}``;
        the means are over the images. ``name`` is the file name without extension and without a
        trailing ``_HR``.

    Raises
    ------
    InputError
        When a pattern matches no file, the counts of ``hr`` and ``lr`` differ, a file is not a
        readable image or a low-resolution image does not fit its ground truth.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> from dasksr import evaluate_images
    >>> folder = tempfile.mkdtemp()
    >>> ramp = np.add.outer(np.arange(48), np.arange(48)).astype(np.uint8) * 2
    >>> Image.fromarray(ramp).save(f"{folder}/ramp_HR.png")
    >>> result = evaluate_images(f"{folder}/*_HR.png", scale=2, method="bicubic")
    >>> result["images"][0]["name"], result["mean_psnr"] > 40
    ('ramp', True)
    """
    m = get_method(method)
    scale = m.check_scale(scale)
    hr_files = _files(hr, "hr")
    lr_files = None if lr is None else _files(lr, "lr")
    if lr_files is not None and len(lr_files) != len(hr_files):
        raise InputError(
            f"lr has {len(lr_files)} file(s) but hr has {len(hr_files)}: give one low-resolution "
            "image per ground-truth image (they are paired in sorted order)"
        )
    on_luma = evaluated_on_luma(m)
    images = []
    for i, hr_path in enumerate(hr_files):
        truth = mod_crop(read_image(hr_path), scale)
        if lr_files is None:
            small = imresize(truth, 1 / scale)
        else:
            small = read_image(lr_files[i])
            _check_pair(truth, small, scale, hr_path, lr_files[i])
        luma = on_luma and truth.ndim == 3 and truth.shape[0] == 3 and truth.dtype == np.uint8
        if luma:
            # The literature's protocol for networks trained on luma: reconstruct the Y channel of
            # the low-resolution image and compare it, rounded as a uint8 image, with the truth's.
            truth = np.asarray(rgb2y(truth))
            y = upscale(np.asarray(rgb2y(small), dtype=np.float32), scale=scale, method=m)
            restored = np.clip(np.rint(y), 0, 255)
        else:
            restored = upscale(small, scale=scale, method=m)
        peak = 255.0 if luma else None
        try:
            values = {
                "psnr": psnr(truth, restored, crop=scale, y_channel=not luma, data_range=peak),
                "ssim": ssim(truth, restored, crop=scale, y_channel=not luma, data_range=peak),
            }
        except DasksrError as exc:
            raise type(exc)(f"{hr_path}: {exc}") from None
        images.append({"name": _name(hr_path), **values})
    return {
        "method": m.name,
        "scale": scale,
        "images": images,
        "mean_psnr": float(np.mean([r["psnr"] for r in images])),
        "mean_ssim": float(np.mean([r["ssim"] for r in images])),
    }


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``(y, x)`` (grayscale) or ``(3, y, x)`` (RGB) pixels.

    Grayscale 8- and 16-bit images keep their values; every other mode (palette, RGBA, CMYK, ...)
    is converted to 8-bit RGB, dropping alpha.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from PIL import Image
    >>> path = tempfile.mkdtemp() + "/rgb.png"
    >>> Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(path)
    >>> read_image(path).shape
    (3, 4, 5)
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            if image.mode in ("1", "LA", "La"):
                image = image.convert("L")
            elif image.mode not in ("L", "I;16", "RGB"):
                image = image.convert("RGB")
            pixels = np.array(image)
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read image {str(path)!r} ({exc}): check the file") from None
    return np.moveaxis(pixels, -1, 0) if pixels.ndim == 3 else pixels


def format_table(result: dict[str, Any]) -> str:
    """The result of :func:`evaluate_images` as a text table: image, PSNR, SSIM, then the mean.

    Examples
    --------
    >>> print(format_table({"method": "bicubic", "scale": 2, "mean_psnr": 30.0, "mean_ssim": 0.9,
    ...                     "images": [{"name": "a", "psnr": 30.0, "ssim": 0.9}]}))
    image  PSNR (dB)    SSIM
    a        30.0000  0.9000
    mean     30.0000  0.9000
    """
    rows = [(r["name"], r["psnr"], r["ssim"]) for r in result["images"]]
    rows.append(("mean", result["mean_psnr"], result["mean_ssim"]))
    width = max(len("image"), *(len(name) for name, _, _ in rows))
    lines = [f"{'image':<{width}}  {'PSNR (dB)':>9}  {'SSIM':>6}"]
    lines += [f"{name:<{width}}  {p:>9.4f}  {s:>6.4f}" for name, p, s in rows]
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``result`` as JSON to ``path`` (through a temporary file, renamed when complete)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, target)
    except OSError as exc:
        raise OutputError(
            f"cannot write {str(path)!r} ({exc.strerror or exc}): choose a writable path"
        ) from None
    return target


def _files(pattern: str | Sequence[str | os.PathLike[str]], name: str) -> list[str]:
    if isinstance(pattern, str | os.PathLike):
        files = sorted(glob.glob(os.fspath(pattern)))
        if not files:
            raise InputError(
                f"{name}={os.fspath(pattern)!r} matches no file: check the pattern "
                "(quote it so that the shell does not expand it)"
            )
        return files
    files = sorted(os.fspath(p) for p in pattern)
    if not files:
        raise InputError(f"{name} is an empty list: give at least one image")
    return files


def _check_pair(truth: np.ndarray, small: np.ndarray, scale: int, hr: str, lr: str) -> None:
    expected = (*truth.shape[:-2], truth.shape[-2] // scale, truth.shape[-1] // scale)
    if small.shape != expected:
        raise InputError(
            f"low-resolution image {lr!r} has shape {small.shape}, but {hr!r} mod-cropped to "
            f"{truth.shape} needs {expected} at scale {scale}: check the pairing and the scale"
        )


def _name(path: str) -> str:
    stem = Path(path).stem
    return stem[: -len("_HR")] if stem.endswith("_HR") else stem
