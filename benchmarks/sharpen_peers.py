#!/usr/bin/env python
"""Peers of the pan-sharpening / Sentinel-2 band-sharpening benchmark: GDAL's weighted Brovey and
s2super, for ``benchmarks/sharpen.py``.

A library, not a script: ``python benchmarks/sharpen.py`` has this folder first on ``sys.path``,
so it imports ``from sharpen_peers import gdal_brovey, s2super_status, run_s2super`` (as
``cnn_speed.py`` imports ``speed``); the tests load it with ``load_script``.

GDAL weighted Brovey (:func:`gdal_brovey`)
------------------------------------------
``gdal_pansharpen.py`` needs GDAL's Python bindings; all it does is write a VRT with
``<VRTDataset subClass="VRTPansharpenedDataset">`` and translate it. :func:`gdal_brovey` writes the
same VRT (``<PansharpeningOptions>``: ``Algorithm`` WeightedBrovey, ``Weights``, ``Resampling``,
``NumThreads``, ``NoData``, ``SpatialExtentAdjustment``, one ``<PanchroBand>``, one
``<SpectralBand>`` per input band; GDAL's element is ``PanchroBand``, ``PanchromaticBand`` is
rejected with "PanchroBand missing") and runs the ``gdal_translate`` command-line tool on it. GDAL
computes, per pixel, ``pseudo = sum_k w_k * ms_up_k`` and ``out_b = ms_up_b * pan / pseudo``, with
``ms_up`` the spectral bands resampled (cubic by default) to the pan's grid; the output has the
spectral bands' data type (rounded and clamped for integer types). Default weights are 1/n, as
``gdal_pansharpen.py`` (and GDAL itself) use when none are given. ``gdal_translate`` comes from the
system (Debian 12: ``apt-get install gdal-bin``, GDAL 3.6.2), not from the project's environment.

The output is always on the pan's grid (same transform and size) here: ``SpatialExtentAdjustment``
is ``None`` by default (``NoneWithoutWarning`` when ``warn_extent=False``). With ``Union`` (GDAL's
default) or ``Intersection`` GDAL changes the output extent whenever an MS corner is more than one
MS pixel away from the pan's, so the output would no longer be the pan's grid.

What GDAL does with the MS geotransform depends on its version (checked on generated rasters with
an MS ramp shifted by 5 m and 10 m against a 10 m pan / 20 m MS pair):

- GDAL >= 3.7 (OSGeo/gdal PR 7373) maps pan pixels to MS pixels through the two geotransforms, so
  the resampling honours any sub-pixel offset (the Landsat pan's half-pixel offset, the one 10 m
  column between Sentinel-2's 10 m and 20 m crops). Checked with rasterio's GDAL 3.10.3.
- GDAL 3.6 and older (Debian 12's ``gdal-bin``, 3.6.2, the one installed here) ignore an offset of
  up to one MS pixel: the MS raster is stretched over the pan's extent by the size ratio alone, as
  if the two origins coincided. ``None`` and ``NoneWithoutWarning`` keep ignoring larger offsets
  too (``None`` warns "Georeferencing of top-left corner of pan dataset and ... do not match");
  ``Union``/``Intersection`` shift the MS by whole MS pixels only.

So with GDAL < 3.7 the caller must give MS rasters whose extent is the pan's (crop both to a common
extent first); :func:`gdal_brovey` warns (:class:`MisregistrationWarning`) when the grids are offset
and the installed ``gdal_translate`` would ignore it. :func:`gdal_version` and
:func:`gdal_honours_ms_geotransform` tell which case applies.

s2super (:func:`run_s2super`)
-----------------------------
s2super 1.2.30 (PyPI) ships a TensorFlow/Keras SavedModel (33 MB of weights, ``s2super/s2super_v5``,
inputs ``[(N, 64, 64, 1) unsharp band, (N, 64, 64, 3) RGB]``, output ``(N, 64, 64, 2)`` prediction
and confidence) that sharpens Sentinel-2's 20 m bands with the 10 m B02, B03, B04. ``pip install
s2super`` alone does not give a working install: its dependency ``buteo`` imports GDAL's Python
bindings (``osgeo``) without declaring them, and they build only against GDAL's headers; TensorFlow
>= 2.16 brings Keras 3, whose ``load_model`` does not read Keras 2 SavedModel directories (not
re-run here); and ``buteo`` >= 0.8 no longer has the ``get_patches``/``patches_to_array`` it calls
(0.7.70 has). It runs in its own benchmark-only virtual environment, never in the project's (nothing
is downloaded when the benchmark runs)::

    apt-get install -y gdal-bin libgdal-dev              # Debian 12: GDAL 3.6.2
    python3.11 -m venv /work/s2super-venv
    /work/s2super-venv/bin/pip install --upgrade pip setuptools wheel
    /work/s2super-venv/bin/pip install tensorflow-cpu==2.15.1     # Keras 2.15, numpy 1.26.4
    /work/s2super-venv/bin/pip install --no-build-isolation GDAL==3.6.2   # = gdal-config --version
    /work/s2super-venv/bin/pip install --no-deps s2super==1.2.30 buteo==0.7.70
    /work/s2super-venv/bin/pip install numba==0.68.1 psutil==7.2.2

``$S2SUPER_PYTHON`` names another interpreter than ``/work/s2super-venv/bin/python``.

Input conventions (from ``s2super/super_sample.py``, ``super_sample(data, indices=...)``):

- ``data`` is one ``(H, W, C)`` array on the 10 m grid (bands last). The 20 m bands must already be
  resampled to 10 m: s2super's own ``.SAFE`` reader does it with GDAL bilinear
  (``buteo.resample_array(..., resample_alg="bilinear")``), and so does the worker here.
- ``indices`` maps band names to channels; the default is B02, B03, B04, B08 (channels 0-3), then
  B05, B06, B07, B8A, B11, B12 (4-9). B02, B03, B04 are required (the RGB guide); B08 only to refit.
- Values are Sentinel-2 L2A reflectance digital numbers (reflectance x 10000): with
  ``normalise=True`` it divides by 10000 and returns ``rint(x * 10000)`` as uint16. The model was
  trained on L2A; the shared scene is L1C (top of atmosphere), which it accepts but was not trained
  on.
- ``fit_data=True`` (its default) first refits the model for 5 epochs on the image itself (B08 as
  the target); :func:`run_s2super` uses the README's ``fit_data=False`` and ``method="fast"``
  (3 patch offsets, weighted mean) unless told otherwise. The 10 m bands are returned unchanged.

Cost: every 20 m band is predicted over 64 x 64 patches at 6 patch offsets (3 + 3 border ones).
One run on the shared scene's six 20 m bands (973 x 967) with B02, B03, B04, B08 at 10 m
(1946 x 1934), ``threads=2``, took 1999 s wall (model load about 12 s of it; about 1.2e-4 s per
10 m pixel and band) on a 2-core machine shared with other jobs, with a peak of about 4.5 GB
resident; the 2 x 2 means of its outputs correlate with the 20 m inputs at 0.99998.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

RESAMPLING = {
    "nearest": "Nearest",
    "bilinear": "Bilinear",
    "cubic": "Cubic",
    "cubicspline": "CubicSpline",
    "lanczos": "Lanczos",
    "average": "Average",
}
EXTENT_ADJUSTMENTS = ("Union", "Intersection", "None", "NoneWithoutWarning")


class MisregistrationWarning(UserWarning):
    """The MS grid is offset from the pan's and this GDAL ignores the offset."""


# --------------------------------------------------------------------------------------------
# GDAL weighted Brovey
# --------------------------------------------------------------------------------------------


@functools.cache
def gdal_version() -> tuple[int, int, int] | None:
    """The version of the ``gdal_translate`` on PATH, or None when there is none."""
    exe = shutil.which("gdal_translate")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"GDAL (\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the version of {exe}: {out.strip()!r}")
    return (int(match[1]), int(match[2]), int(match[3]))


def gdal_honours_ms_geotransform() -> bool:
    """Whether the installed GDAL resamples the MS through its geotransform (GDAL >= 3.7), so a
    sub-pixel offset between the pan and MS grids is honoured, rather than ignored."""
    version = gdal_version()
    return version is not None and version >= (3, 7, 0)


def _spectral_sources(ms_paths: str | Path | Sequence[str | Path]) -> list[tuple[Path, int]]:
    """(file, band) of every input spectral band: each band of one file, or band 1 of each file."""
    import rasterio

    paths = [ms_paths] if isinstance(ms_paths, (str, Path)) else list(ms_paths)
    if not paths:
        raise ValueError("no multispectral input")
    sources: list[tuple[Path, int]] = []
    for path in paths:
        path = Path(path).resolve()
        with rasterio.open(path) as src:
            count = src.count
        if len(paths) > 1 and count != 1:
            raise ValueError(f"{path} has {count} bands: give one multi-band file or 1-band files")
        sources.extend((path, band) for band in range(1, count + 1))
    return sources


def _check_registration(pan: Path, ms: Path) -> None:
    """Warn when the MS grid is offset from the pan's and this GDAL would ignore it."""
    import rasterio

    with rasterio.open(pan) as p, rasterio.open(ms) as m:
        pt, mt, psize = p.transform, m.transform, (p.width, p.height)
        msize = (m.width, m.height)
    tol = 1e-6 * abs(pt.a)
    pan_extent = (pt.c, pt.f, pt.c + psize[0] * pt.a, pt.f + psize[1] * pt.e)
    ms_extent = (mt.c, mt.f, mt.c + msize[0] * mt.a, mt.f + msize[1] * mt.e)
    if all(abs(a - b) <= tol for a, b in zip(pan_extent, ms_extent, strict=True)):
        return
    if gdal_honours_ms_geotransform():
        return
    warnings.warn(
        f"pan extent {pan_extent} != MS extent {ms_extent}: GDAL {gdal_version()} stretches the "
        "MS over the pan's extent and ignores the offset (GDAL >= 3.7 honours it); crop both to "
        "a common extent first",
        MisregistrationWarning,
        stacklevel=3,
    )


def brovey_vrt(
    pan_path: str | Path,
    ms_paths: str | Path | Sequence[str | Path],
    *,
    weights: Sequence[float] | None = None,
    nodata: float | str | None = None,
    threads: int = 1,
    resampling: str = "cubic",
    spectral_bands: Sequence[int] | None = None,
    spatial_extent_adjustment: str = "None",
) -> str:
    """The ``VRTPansharpenedDataset`` XML that ``gdal_pansharpen.py`` would write.

    ``spectral_bands``: 1-based indices of the input spectral bands to output, in output order
    (``gdal_pansharpen.py -b``); all of them by default. Every input band enters the pseudo-pan.
    ``nodata``: a value, or ``"None"`` to disable the nodata inherited from the pan.
    """
    sources = _spectral_sources(ms_paths)
    n = len(sources)
    if weights is None:
        weights = [1.0 / n] * n
    if len(weights) != n:
        raise ValueError(f"{len(weights)} weights for {n} spectral bands")
    if any(w < 0 for w in weights):
        raise ValueError("negative weights")
    outputs = list(range(1, n + 1)) if spectral_bands is None else list(spectral_bands)
    if not outputs or any(not 1 <= b <= n for b in outputs) or len(set(outputs)) != len(outputs):
        raise ValueError(f"spectral_bands must be distinct indices in 1..{n}, got {outputs}")
    if resampling.lower() not in RESAMPLING:
        raise ValueError(f"resampling must be one of {sorted(RESAMPLING)}, got {resampling!r}")
    if spatial_extent_adjustment not in EXTENT_ADJUSTMENTS:
        raise ValueError(f"spatial_extent_adjustment must be one of {EXTENT_ADJUSTMENTS}")
    if threads < 1:
        raise ValueError("threads must be >= 1")

    lines = [
        '<VRTDataset subClass="VRTPansharpenedDataset">',
        "  <PansharpeningOptions>",
        "    <Algorithm>WeightedBrovey</Algorithm>",
        "    <AlgorithmOptions>",
        f"      <Weights>{','.join(repr(float(w)) for w in weights)}</Weights>",
        "    </AlgorithmOptions>",
        f"    <Resampling>{RESAMPLING[resampling.lower()]}</Resampling>",
        f"    <NumThreads>{int(threads)}</NumThreads>",
    ]
    if nodata is not None:
        lines.append(f"    <NoData>{escape(str(nodata))}</NoData>")
    lines += [
        f"    <SpatialExtentAdjustment>{spatial_extent_adjustment}</SpatialExtentAdjustment>",
        "    <PanchroBand>",
        '      <SourceFilename relativeToVRT="0">'
        f"{escape(str(Path(pan_path).resolve()))}</SourceFilename>",
        "      <SourceBand>1</SourceBand>",
        "    </PanchroBand>",
    ]
    for i, (path, band) in enumerate(sources, start=1):
        dst = f' dstBand="{outputs.index(i) + 1}"' if i in outputs else ""
        lines += [
            f"    <SpectralBand{dst}>",
            f'      <SourceFilename relativeToVRT="0">{escape(str(path))}</SourceFilename>',
            f"      <SourceBand>{band}</SourceBand>",
            "    </SpectralBand>",
        ]
    lines += ["  </PansharpeningOptions>", "</VRTDataset>", ""]
    return "\n".join(lines)


def gdal_brovey(
    pan_path: str | Path,
    ms_paths: str | Path | Sequence[str | Path],
    out_path: str | Path,
    *,
    weights: Sequence[float] | None = None,
    nodata: float | str | None = None,
    threads: int = 1,
    resampling: str = "cubic",
    spectral_bands: Sequence[int] | None = None,
    creation_options: Sequence[str] | None = None,
    warn_extent: bool = True,
    vrt_path: str | Path | None = None,
) -> float:
    """GDAL's weighted Brovey pan-sharpening of ``ms_paths`` by ``pan_path`` into a tiled GeoTIFF.

    ``ms_paths``: one multi-band file (one spectral band per band) or several one-band files on
    one grid. Writes the pansharpened VRT (kept at ``vrt_path`` if given, else a temporary file)
    and runs ``gdal_translate -q -of GTiff -co TILED=YES [-co creation_options...]`` on it with
    ``GDAL_NUM_THREADS=threads`` (and ``<NumThreads>threads</NumThreads>`` in the VRT). The output
    is on the pan's grid (``SpatialExtentAdjustment`` None; NoneWithoutWarning when
    ``warn_extent`` is False). Returns the wall seconds of the ``gdal_translate`` process,
    process start included. See the module docstring for the MS geotransform caveat.
    """
    exe = shutil.which("gdal_translate")
    if exe is None:
        raise RuntimeError("gdal_translate is not on PATH (Debian: apt-get install gdal-bin)")
    sources = _spectral_sources(ms_paths)
    if warn_extent:
        _check_registration(Path(pan_path), sources[0][0])
    xml = brovey_vrt(
        pan_path,
        ms_paths,
        weights=weights,
        nodata=nodata,
        threads=threads,
        resampling=resampling,
        spectral_bands=spectral_bands,
        spatial_extent_adjustment="None" if warn_extent else "NoneWithoutWarning",
    )
    out_path = Path(out_path)
    cmd = [exe, "-q", "-of", "GTiff", "-co", "TILED=YES"]
    for option in creation_options or ():
        cmd += ["-co", option]
    env = {**os.environ, "GDAL_NUM_THREADS": str(int(threads))}
    with tempfile.TemporaryDirectory(prefix="gdal_brovey_") as tmp:
        vrt = Path(vrt_path) if vrt_path is not None else Path(tmp) / "pansharpen.vrt"
        vrt.write_text(xml)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*cmd, str(vrt), str(out_path)], capture_output=True, text=True, env=env
        )
        seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"gdal_translate failed ({proc.returncode}): {proc.stderr.strip()}")
    if proc.stderr.strip():
        warnings.warn(f"gdal_translate: {proc.stderr.strip()}", RuntimeWarning, stacklevel=2)
    return seconds


# --------------------------------------------------------------------------------------------
# s2super
# --------------------------------------------------------------------------------------------

S2SUPER_VENV = Path("/work/s2super-venv")
S2SUPER_10M = ("B02", "B03", "B04", "B08")
S2SUPER_20M = ("B05", "B06", "B07", "B8A", "B11", "B12")
#: s2super's default ``indices``: the 10 m bands first, then the 20 m ones.
S2SUPER_INDICES = {b: i for i, b in enumerate(S2SUPER_10M + S2SUPER_20M)}

_PROBE = """\
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import buteo, s2super, tensorflow as tf
from importlib.metadata import version
if {load}:
    s2super.get_s2super_model()
print("s2super", version("s2super"), "tensorflow", tf.__version__, "buteo", version("buteo"))
"""

#: Run by the s2super interpreter: ``worker.py DIR``; reads DIR/args.json and DIR/<band>.npy,
#: writes DIR/out_<band>.npy.
_WORKER = """\
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
d = sys.argv[1]
args = json.load(open(os.path.join(d, "args.json")))
if args["threads"]:
    os.environ["OMP_NUM_THREADS"] = str(args["threads"])
    os.environ["NUMBA_NUM_THREADS"] = str(args["threads"])
import numpy as np
import tensorflow as tf
import buteo as beo
from s2super import super_sample
if args["threads"]:
    tf.config.threading.set_intra_op_parallelism_threads(args["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(args["threads"])
present = args["present"]
shape = None
channels = []
for band in present:
    arr = np.load(os.path.join(d, band + ".npy"))
    if band in args["bands_10m"]:
        shape = arr.shape
    channels.append(arr)
for i, band in enumerate(present):
    if band in args["bands_20m"]:  # s2super's own .SAFE path: GDAL bilinear to the 10 m grid
        up = beo.resample_array(channels[i][:, :, None], shape, resample_alg="bilinear")
        channels[i] = up.reshape(shape)
data = np.stack(channels, axis=-1)
indices = {b: i for i, b in enumerate(present)}
out = super_sample(data, indices=indices, fit_data=args["fit_data"], method=args["method"],
                   verbose=False)
for band in args["bands_20m"]:
    np.save(os.path.join(d, "out_" + band + ".npy"), out[:, :, indices[band]])
"""


def s2super_python() -> Path:
    """The interpreter of the s2super venv (``$S2SUPER_PYTHON`` or /work/s2super-venv)."""
    return Path(os.environ.get("S2SUPER_PYTHON", S2SUPER_VENV / "bin" / "python"))


@functools.cache
def s2super_status(load_model: bool = True) -> str:
    """The string "available", or the one-line reason why s2super cannot run here.

    Imports s2super, TensorFlow and buteo in the s2super venv and (``load_model``) loads the
    model, in a subprocess (about 15 s; cached per process)."""
    python = s2super_python()
    if not python.exists():
        return (
            f"no s2super environment: {python} does not exist "
            "(create it with the commands in benchmarks/sharpen_peers.py's docstring)"
        )
    proc = subprocess.run(
        [str(python), "-c", _PROBE.format(load=bool(load_model))],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return f"s2super does not load in {python}: {lines[-1] if lines else proc.returncode}"
    return "available"


def run_s2super(
    bands_10m: Mapping[str, np.ndarray],
    bands_20m: Mapping[str, np.ndarray],
    *,
    fit_data: bool = False,
    method: str = "fast",
    threads: int | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """s2super's sharpening of the 20 m bands to 10 m, in the s2super venv.

    ``bands_10m``: B02, B03, B04 (and B08, needed only with ``fit_data``), each ``(H, W)``;
    ``bands_20m``: any of B05, B06, B07, B8A, B11, B12, each ``(H / 2, W / 2)`` on the same grid
    (20 m pixel (i, j) covers 10 m pixels 2i..2i+1, 2j..2j+1). Values: reflectance x 10000
    (Sentinel-2 digital numbers). The 20 m bands are bilinearly upsampled to 10 m (GDAL, as
    s2super's own reader does) and sharpened by ``super_sample(..., fit_data, method)``.

    Returns ``({band: uint16 (H, W)} for the 20 m bands, wall seconds)``, the seconds of the
    worker process from its start (TensorFlow import and model load included) to its exit. Raises
    RuntimeError with :func:`s2super_status`'s reason when s2super cannot run.
    """
    status = s2super_status()
    if status != "available":
        raise RuntimeError(status)
    missing = [b for b in ("B02", "B03", "B04") if b not in bands_10m]
    if fit_data and "B08" not in bands_10m:
        missing.append("B08")
    if missing:
        raise ValueError(f"s2super needs the 10 m bands {missing}")
    unknown = set(bands_10m) - set(S2SUPER_10M) | set(bands_20m) - set(S2SUPER_20M)
    if unknown:
        raise ValueError(f"bands s2super does not know: {sorted(unknown)}")
    if not bands_20m:
        raise ValueError("no 20 m band to sharpen")
    if method not in ("fast", "accurate"):
        raise ValueError("method must be 'fast' or 'accurate'")
    shape = np.shape(next(iter(bands_10m.values())))
    for band, arr in bands_10m.items():
        if np.shape(arr) != shape:
            raise ValueError(f"{band}: shape {np.shape(arr)} != {shape}")
    for band, arr in bands_20m.items():
        if tuple(2 * s for s in np.shape(arr)) != tuple(shape):
            raise ValueError(f"{band}: 20 m shape {np.shape(arr)} is not half of {shape}")
    if min(shape) < 64:
        raise ValueError("s2super needs at least 64 x 64 pixels at 10 m")

    import json

    present = [b for b in S2SUPER_10M if b in bands_10m] + [
        b for b in S2SUPER_20M if b in bands_20m
    ]
    with tempfile.TemporaryDirectory(prefix="s2super_") as tmp:
        d = Path(tmp)
        for band, arr in {**bands_10m, **bands_20m}.items():
            np.save(d / f"{band}.npy", np.asarray(arr, dtype=np.float32))
        (d / "args.json").write_text(
            json.dumps(
                {
                    "present": present,
                    "bands_10m": list(bands_10m),
                    "bands_20m": list(bands_20m),
                    "fit_data": fit_data,
                    "method": method,
                    "threads": threads,
                }
            )
        )
        (d / "worker.py").write_text(_WORKER)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(s2super_python()), str(d / "worker.py"), str(d)], capture_output=True, text=True
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            why = "killed by signal" if proc.returncode < 0 else "exit status"
            last = f": {lines[-1]}" if lines else ""
            raise RuntimeError(f"s2super failed ({why} {abs(proc.returncode)}){last}")
        out = {band: np.load(d / f"out_{band}.npy") for band in bands_20m}
    return out, seconds


if __name__ == "__main__":  # pragma: no cover - a quick look: python benchmarks/sharpen_peers.py
    print(
        "gdal_translate:",
        gdal_version(),
        "honours MS geotransform:",
        gdal_honours_ms_geotransform(),
    )
    print("s2super:", s2super_status())
    sys.exit(0)
