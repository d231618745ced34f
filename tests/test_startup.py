"""A fast start: ``import dasksr`` and ``dasksr --help`` load no heavy module, and the ``sr``
accessor is there whichever of dasksr and xarray is imported first.

Each case runs in a fresh interpreter: the test process has long imported everything. The times
themselves are measured by ``benchmarks/startup.py``, not asserted here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules that the package, or ``dasksr --help``, must not import up front.
HEAVY = (
    "dask",
    "distributed",
    "numba",
    "numpy",
    "zarr",
    "onnxruntime",
    "matplotlib",
    "rasterio",
    "xarray",
    "rioxarray",
)

ACCESSOR_CHECK = (
    "import numpy as np; "
    "da = xr.DataArray(np.arange(16.0).reshape(4, 4), dims=('y', 'x')); "
    "out = da.sr.upscale(scale=2, method='nearest'); "
    "assert out.shape == (8, 8), out.shape; "
    "ds = da.to_dataset(name='v').sr.upscale(scale=2, method='nearest'); "
    "assert ds['v'].shape == (8, 8); "
    "assert xr.DataArray.sr.upscale.__doc__.startswith('Super-resolve'); "
    "print('ok')"
)


def python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def loaded(code: str) -> list[str]:
    out = python(f"{code}; import sys; print(' '.join(sorted(sys.modules)))")
    names = set(out.splitlines()[-1].split())
    return sorted(m for m in HEAVY if m in names)


def test_import_dasksr_loads_no_heavy_module() -> None:
    assert loaded("import dasksr") == []


def test_help_loads_no_heavy_module() -> None:
    code = (
        "import contextlib, io; from dasksr.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['--help']) == 0\n"
        "    assert main(['upscale', '--help']) == 0\n"
        "assert '--resolution' in out.getvalue()"
    )
    assert loaded(code) == []


def test_public_names_load_on_first_use() -> None:
    code = (
        "import dasksr; "
        "from dasksr import upscale, open_raster, to_zarr, psnr, DasksrError, Method; "
        "assert dasksr.upscale is upscale and callable(dasksr.to_geotiff); "
        "assert dasksr.cluster.connect and dasksr.demo and dasksr.data; "
        "assert set(dasksr.__all__) <= set(dir(dasksr)); "
        "print(sorted(n for n in dasksr.__all__ if not hasattr(dasksr, n)))"
    )
    assert python(code) == "[]"


def test_unknown_names_are_attribute_errors() -> None:
    code = "import dasksr\ntry:\n    dasksr.upscal\nexcept AttributeError as e:\n    print(e)"
    assert python(code) == "module 'dasksr' has no attribute 'upscal'"


@pytest.mark.parametrize(
    "imports",
    [
        "import dasksr; import xarray as xr",
        "import xarray as xr; import dasksr",
        "import dasksr; import rioxarray; import xarray as xr",
        "from dasksr import cli; import xarray as xr",
        "import dasksr; from xarray import DataArray; import xarray as xr",
        # An optional-dependency probe must not use up the hook before the real import.
        "import dasksr, importlib.util; importlib.util.find_spec('xarray'); import xarray as xr",
    ],
)
def test_accessor_is_registered_whatever_comes_first(imports: str) -> None:
    assert python(f"{imports}; {ACCESSOR_CHECK}") == "ok"


def test_xarray_import_does_not_load_the_api() -> None:
    # Registering the accessor when xarray is imported costs nothing more: Dask and the kernels
    # come with the first call.
    assert (
        "dask.array"
        not in python("import dasksr, xarray, sys; print(' '.join(sorted(sys.modules)))").split()
    )


def test_the_hook_leaves_the_import_system_as_it_found_it() -> None:
    # Counted by type: xarray's own import may add finders of other packages (six's, through a
    # backend plugin), which are not dasksr's to remove.
    code = (
        "import sys; ours = lambda: sum(type(f).__module__ == 'dasksr' for f in sys.meta_path); "
        "before = ours(); import dasksr; hooked = ours(); import xarray; "
        "print(hooked - before, ours() - before)"
    )
    assert python(code) == "1 0"


def test_a_small_raster_never_loads_numba() -> None:
    # Numba's import and cached-code load cost about 0.5 s: more than a 64 x 64 job itself.
    # The job's consistency figure (the summary line's) included.
    code = (
        "import numpy as np, sys, xarray as xr, dasksr; "
        "from dasksr.consistency import upscale_check; "
        "a = np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64); "
        "small = dasksr.upscale(a, scale=2, method='bicubic'); "
        "data = xr.DataArray(a, dims=('band', 'y', 'x')).chunk(); "
        "upscale_check(dasksr.upscale(data, scale=2, method='bicubic'), data, 'bicubic', 2)"
        ".rms().compute(); "
        "print('numba' in sys.modules); "
        "big = dasksr.upscale(np.tile(a, (1, 3, 3)), scale=2, method='bicubic'); "
        "print('numba' in sys.modules)"
    )
    assert python(code).splitlines() == ["False", "True"]


def test_the_startup_benchmark_runs(tmp_path: Path) -> None:
    # A smoke test of the parts that take seconds; the lead runs the others (benchmarks/startup.py).
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py"
    out = tmp_path / "startup.md"
    argv = [sys.executable, str(script), "--quick", "--runs", "1", "--parts", "import,help"]
    done = subprocess.run(
        [*argv, "--out", str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    for row in ("| import dasksr |", "| dasksr --help |", "| python -c pass |"):
        assert row in text


def test_the_startup_benchmark_needs_the_shared_data_for_the_real_scene(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py"
    argv = [
        sys.executable,
        str(script),
        "--runs",
        "1",
        "--parts",
        "small",
        "--workdir",
        str(tmp_path),
    ]
    env = {**os.environ, "DASKSR_DATA": str(tmp_path)}  # a folder without the bands
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("startup.py: error: the real-texture scene needs")
    assert len(done.stderr.splitlines()) == 1 and "--scene synthetic" in done.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.data
def test_the_startup_benchmark_judges_the_real_scene(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py"
    out = tmp_path / "startup.md"
    argv = [sys.executable, str(script), "--runs", "1", "--parts", "scene", "--size", "64"]
    argv += ["--scene", "real", "--workdir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    assert "### a 64 x 64 x 3 uint16 GeoTIFF (real-texture scene), x2 bicubic" in text
    assert "| dasksr to Zarr | " in text and "| dasksr to GeoTIFF | " in text
    assert (tmp_path / "work" / "real_64.tif").exists()
    targets = text.split("### Targets", 1)[1]
    if shutil.which("gdalwarp"):
        assert "(target >= 3.0x: " in text
        assert "| end to end Zarr throughput / gdalwarp, real-texture 64² scene | >= 3 |" in targets
    # Only what was measured is judged: no kernel row, no synthetic row.
    assert "kernel" not in targets and "synthetic" not in targets


def test_the_console_entry_keeps_status_and_output(tmp_path: Path) -> None:
    # run() skips the interpreter's teardown with os._exit: the streams must be flushed first and
    # the status kept, also when stdout is a pipe (block-buffered).
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "dasksr.cli", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    methods = cli("methods")
    assert methods.returncode == 0, methods.stderr
    assert methods.stdout.splitlines()[0].startswith("method")
    assert "nearest" in methods.stdout
    missing = cli("upscale", str(tmp_path / "missing.tif"), str(tmp_path / "out.tif"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("dasksr: error: input")
    assert missing.stdout == ""
