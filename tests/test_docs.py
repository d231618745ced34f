"""The documentation site builds with ``mkdocs build --strict``, and its computed parts are current.

The build needs the ``docs`` extra (MkDocs, Material, mkdocstrings) and is skipped without it; the
other checks need only the ``test`` extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import dasksr

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.slow
def test_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip(
        "mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'"
    )
    pytest.importorskip("mkdocstrings", reason="the docs extra is not installed")
    pytest.importorskip("material", reason="the docs extra is not installed")
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    # mkdocstrings rendered the docstrings, not just the page's own text.
    assert "Super-resolve the last two (spatial) axes" in api
    assert (site / "figures" / "seamless.png").is_file()
    assert not list(site.rglob("*.py"))  # the figure scripts stay out of the site


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.name for p in DOCS.glob("*.md")}
    listed = set(re.findall(r"^\s*- [^:#\n]+: ([\w./-]+\.md)\s*$", nav, flags=re.M))
    assert pages == listed


def test_api_reference_covers_the_public_api() -> None:
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: dasksr\.(\w+)\s*$", page, flags=re.M))
    assert documented == set(dasksr.__all__)


def test_cluster_estimate_is_current(load_script: Callable[[str], ModuleType]) -> None:
    """docs/cluster.md's table is what the script computes from docs/benchmarks.md today."""
    estimate = load_script("docs/figures/cluster_estimate.py")
    page = (DOCS / "cluster.md").read_text(encoding="utf-8")
    between = page.split(estimate.START, 1)[1].split(estimate.END, 1)[0].strip()
    table = estimate.estimate((DOCS / "benchmarks.md").read_text(encoding="utf-8"))
    assert between == table, "run: python docs/figures/cluster_estimate.py --write"
    assert "| `bicubic` | Zarr |" in table and "121 tasks" in table


def test_seamless_figure_computation(load_script: Callable[[str], ModuleType]) -> None:
    """The figure's numbers: zero difference chunked, and seams for the naive tiling."""
    seamless = load_script("docs/figures/seamless.py")
    seams = seamless.compute(size=96, chunk=29, scale=3, method="bicubic")
    assert seams.fine.shape == (3, 288, 288)
    assert seams.chunked_error.max() == 0
    assert seams.naive_error.max() > 0
    assert list(seams.borders_x) == [87, 174, 261]
    # Every naive error lies within halo * scale fine pixels of a chunk border.
    reach = dasksr.get_method("bicubic").halo(3) * 3

    def near(positions: np.ndarray, borders: np.ndarray) -> np.ndarray:
        centres = positions[:, None] + 0.5
        return np.abs(centres - borders[None, :]).min(axis=1) <= reach

    rows, cols = seams.naive_error.nonzero()
    assert (near(rows, seams.borders_y) | near(cols, seams.borders_x)).all()


def test_readme_links_and_picture() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert "docs/figures/before_after.png" in local
    assert "notebooks/sentinel2.ipynb" in local and "notebooks/quickstart.ipynb" in local
    assert [t for t in local if not (ROOT / t).exists()] == []
    assert (ROOT / "docs/figures/before_after.png").stat().st_size < 300 * 1024


@pytest.mark.data
def test_before_after_picture_panels(load_script: Callable[[str], ModuleType]) -> None:
    """The README picture's panels: the window, and each method's fine pixels over it."""
    import rasterio

    folder = dasksr.data.data_path("rasters", "sentinel2_l2a_29RKH_20200219")
    if folder is None:
        pytest.skip("shared data absent: set DASKSR_DATA")
    before_after = load_script("docs/figures/before_after.py")
    shown, _ = before_after.panels(2)
    assert list(shown)[:3] == ["input (100 m pixels)", "bicubic x2", "lanczos x2"]
    rgb = []
    for band in ("B04", "B03", "B02"):
        with rasterio.open(folder / f"{band}.tif") as src:
            rgb.append(src.read(1))
    scene = np.stack(rgb)
    rows, cols = before_after.WINDOW["y"], before_after.WINDOW["x"]
    assert np.array_equal(shown["input (100 m pixels)"], scene[:, rows, cols])
    # The lazily upscaled window is the whole scene's result, cut at the window.
    whole = dasksr.upscale(scene, scale=2, method="lanczos", nodata=0)
    fine = (slice(rows.start * 2, rows.stop * 2), slice(cols.start * 2, cols.stop * 2))
    assert np.array_equal(shown["lanczos x2"], whole[:, fine[0], fine[1]])
