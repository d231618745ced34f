"""The notebooks run: every code cell, in order, in one namespace, as Jupyter would.

The notebooks are stored without outputs; these tests execute them (matplotlib on the Agg backend,
in a temporary folder) so that the suite proves every cell still runs against the current API, with
the shared data and without it. The notebooks check their own claims with ``assert`` (chunked ==
whole, georeferencing, round trips).
"""

from __future__ import annotations

import json
import linecache
import tempfile
from pathlib import Path
from typing import Any

import matplotlib
import pytest

import dasksr.cluster
import dasksr.data

# rasterio composes affine transforms with `*`, which affine 3 deprecates (as in pyproject).
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning:rasterio")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "quickstart.ipynb"
SENTINEL2_NOTEBOOK = NOTEBOOKS / "sentinel2.ipynb"
SENTINEL2 = ("rasters", "sentinel2_l2a_29RKH_20200219")


def load_cells(path: Path) -> list[dict[str, Any]]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    return list(notebook["cells"])


def run_notebook(path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Execute the code cells of ``path`` with ``folder`` as the working folder.

    ``plt.show()`` saves each open figure as ``folder/figure-N.png`` (drawing it, so that plotting
    errors surface) and closes it. Returns the notebook's namespace, with ``_figures`` added. A
    notebook that starts a Dask cluster must close it: none may be left active when it ends.
    """
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))  # tempfile.mkdtemp() makes folders here
    figures: list[Path] = []

    def show(*args: Any, **kwargs: Any) -> None:
        for number in plt.get_fignums():
            target = folder / f"figure-{len(figures) + 1}.png"
            plt.figure(number).savefig(target, dpi=40)
            figures.append(target)
        plt.close("all")

    monkeypatch.setattr(plt, "show", show)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    code_cells = [c for c in load_cells(path) if c["cell_type"] == "code"]
    try:
        for index, cell in enumerate(code_cells):
            source = "".join(cell["source"])
            filename = f"<{path.name} code cell {index}>"
            # Tracebacks then show the failing cell's lines.
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            exec(compile(source, filename, "exec"), namespace)
    finally:
        plt.close("all")
    assert dasksr.cluster.active_client() is None, f"{path.name} left a Dask client running"
    namespace["_figures"] = figures
    return namespace


def shared_scene(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point DASKSR_DATA at the shared Sentinel-2 scene's data folder, or skip without it."""
    scene = dasksr.data.data_path(*SENTINEL2)  # found from the checkout, before any chdir
    if scene is None:
        pytest.skip("shared data absent: set DASKSR_DATA to run the notebooks on Sentinel-2")
    monkeypatch.setenv("DASKSR_DATA", str(scene.parents[1]))
    return scene


def hide_shared_data(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """A DASKSR_DATA that does not exist hides the shared data: the notebooks make a demo scene."""
    monkeypatch.setenv("DASKSR_DATA", str(folder / "no-shared-data"))


def check_outputs(namespace: dict[str, Any], folder: Path) -> None:
    assert [p.name for p in namespace["_figures"]] == [f"figure-{i}.png" for i in (1, 2, 3)]
    workdir = folder / "dasksr-quickstart"
    assert namespace["zarr_path"] == workdir / "scene_x4.zarr"
    assert namespace["zarr_path"].is_dir()
    assert namespace["tif_path"].is_file()
    assert not [p for p in workdir.iterdir() if "partial" in p.name]
    # The naive tiling really is wrong, and only next to the chunk borders.
    assert namespace["error"].max() > 0
    assert 0 < (namespace["error"] > 0).mean() < 0.05


@pytest.mark.parametrize("notebook", [NOTEBOOK, SENTINEL2_NOTEBOOK], ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(notebook: Path) -> None:
    cells = load_cells(notebook)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 10
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_quickstart_runs_on_the_demo_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_shared_data(monkeypatch, tmp_path)
    namespace = run_notebook(NOTEBOOK, tmp_path, monkeypatch)
    assert namespace["sentinel2"] is None
    assert namespace["source"] == Path("dasksr-quickstart") / "demo_scene.tif"
    assert namespace["NODATA"] == 0
    check_outputs(namespace, tmp_path)


@pytest.mark.slow
@pytest.mark.data
def test_quickstart_runs_on_sentinel2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = shared_scene(monkeypatch)
    namespace = run_notebook(NOTEBOOK, tmp_path, monkeypatch)
    assert namespace["sentinel2"] == scene
    assert namespace["scene"].sizes == {"band": 3, "y": 720, "x": 720}
    assert namespace["scene"].attrs["long_name"] == ("red", "green", "blue")
    check_outputs(namespace, tmp_path)


def check_sentinel2_outputs(namespace: dict[str, Any], folder: Path) -> None:
    """What notebooks/sentinel2.ipynb claims, checked from outside it."""
    assert [p.name for p in namespace["_figures"]] == [f"figure-{i}.png" for i in (1, 2, 3, 4)]
    methods = namespace["METHODS"]
    assert methods[:3] == ["nearest", "bicubic", "lanczos"]
    learned = {m.name for m in dasksr.list_methods()} & {"cnn", "cnn-sensor"}
    assert set(methods[3:]) == learned
    assert set(namespace["differences"]) == set(methods)
    assert all(d.max() == 0 for d in namespace["differences"].values())
    assert set(namespace["scores"]) == set(methods)
    assert namespace["scores"]["lanczos"][0] > namespace["scores"]["nearest"][0]
    # A new temporary folder (under ``folder`` here: run_notebook points tempfile there), never
    # one in the working folder, which is the checkout when a user runs it.
    workdir = namespace["WORKDIR"]
    assert workdir.parent == folder and workdir.name.startswith("dasksr-sentinel2-")
    assert not (folder / "dasksr-sentinel2").exists()
    assert namespace["zarr_path"] == (workdir / "sentinel2_x2.zarr").absolute()
    assert namespace["zarr_path"].is_dir() and namespace["tif_path"].is_file()
    assert not [p for p in workdir.iterdir() if "partial" in p.name]
    assert namespace["from_tif"].attrs["long_name"] == ("B02", "B03", "B04", "B08")
    assert namespace["elapsed"] < 180


@pytest.mark.slow
def test_sentinel2_notebook_runs_on_a_generated_scene(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_shared_data(monkeypatch, tmp_path)
    namespace = run_notebook(SENTINEL2_NOTEBOOK, tmp_path, monkeypatch)
    assert namespace["sentinel2"] is None
    assert [p.name for p in namespace["sources"]] == [
        f"demo_{band}.tif" for band in ("B02", "B03", "B04", "B08")
    ]
    assert namespace["scene"].sizes == {"band": 4, "y": 1024, "x": 1024}
    check_sentinel2_outputs(namespace, tmp_path)


@pytest.mark.slow
@pytest.mark.data
def test_sentinel2_notebook_runs_on_sentinel2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = shared_scene(monkeypatch)
    namespace = run_notebook(SENTINEL2_NOTEBOOK, tmp_path, monkeypatch)
    assert namespace["sentinel2"] == scene
    assert namespace["sources"] == [scene / f"{band}.tif" for band in ("B02", "B03", "B04", "B08")]
    assert namespace["scene"].sizes == {"band": 4, "y": 1098, "x": 1098}
    assert namespace["scene"].rio.crs.to_epsg() == 32629
    check_sentinel2_outputs(namespace, tmp_path)
