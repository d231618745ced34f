"""The quickstart notebook runs: every code cell, in order, in one namespace, as Jupyter would.

The notebook is stored without outputs; these tests execute it (matplotlib on the Agg backend, in a
temporary folder) so that the suite proves every cell still runs against the current API. The
notebook checks its own claims with ``assert`` (chunked == whole, georeferencing, round trips).
"""

from __future__ import annotations

import json
import linecache
from pathlib import Path
from typing import Any

import matplotlib
import pytest

import dasksr.data

# rasterio composes affine transforms with `*`, which affine 3 deprecates (as in pyproject).
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning:rasterio")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"
SENTINEL2 = ("rasters", "sentinel2_l2a_29RKH_20200219")


def load_cells(path: Path) -> list[dict[str, Any]]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    return list(notebook["cells"])


def run_notebook(path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Execute the code cells of ``path`` with ``folder`` as the working folder.

    ``plt.show()`` saves each open figure as ``folder/figure-N.png`` (drawing it, so that plotting
    errors surface) and closes it. Returns the notebook's namespace, with ``_figures`` added.
    """
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(folder)
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
    namespace["_figures"] = figures
    return namespace


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


def test_notebook_is_stored_without_outputs() -> None:
    cells = load_cells(NOTEBOOK)
    code = [c for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 10
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.mark.slow
def test_quickstart_runs_on_the_demo_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A DASKSR_DATA that does not exist hides the shared data: the notebook makes the demo scene.
    monkeypatch.setenv("DASKSR_DATA", str(tmp_path / "no-shared-data"))
    namespace = run_notebook(NOTEBOOK, tmp_path, monkeypatch)
    assert namespace["sentinel2"] is None
    assert namespace["source"] == Path("dasksr-quickstart") / "demo_scene.tif"
    assert namespace["NODATA"] == 0
    check_outputs(namespace, tmp_path)


@pytest.mark.slow
@pytest.mark.data
def test_quickstart_runs_on_sentinel2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = dasksr.data.data_path(*SENTINEL2)  # found from the checkout, before the chdir
    if scene is None:
        pytest.skip("shared data absent: set DASKSR_DATA to run the notebook on Sentinel-2")
    monkeypatch.setenv("DASKSR_DATA", str(scene.parents[1]))
    namespace = run_notebook(NOTEBOOK, tmp_path, monkeypatch)
    assert namespace["sentinel2"] == scene
    assert namespace["scene"].sizes == {"band": 3, "y": 720, "x": 720}
    assert namespace["scene"].attrs["long_name"] == ("red", "green", "blue")
    check_outputs(namespace, tmp_path)
