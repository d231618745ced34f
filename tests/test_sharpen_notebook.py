"""notebooks/sentinel2_bands.ipynb runs on the native Sentinel-2 scene, and its claims hold."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_notebook import NOTEBOOKS, run_notebook  # the same folder (pytest puts it on the path)

import dasksr.data

pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning:rasterio")

NOTEBOOK = NOTEBOOKS / "sentinel2_bands.ipynb"
SCENE = ("rasters", "sentinel2_l1c_18SVG_20160112_native")


@pytest.mark.data
def test_every_band_at_10_m(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = dasksr.data.data_path(*SCENE)
    if scene is None:
        pytest.skip("shared data absent: set DASKSR_DATA to run the notebook")
    monkeypatch.setenv("DASKSR_DATA", str(scene.parents[1]))
    namespace = run_notebook(NOTEBOOK, tmp_path, monkeypatch)
    stack = namespace["back"]
    assert list(stack.band.values) == [
        "B02",
        "B03",
        "B04",
        "B08",
        "B05",
        "B06",
        "B07",
        "B8A",
        "B11",
        "B12",
        "B01",
        "B09",
    ]
    assert tuple(stack.attrs["long_name"][4:10]) == ("B05", "B06", "B07", "B8A", "B11", "B12")
    assert len(namespace["_figures"]) == 1
    # The sharpened index has the guide's detail: more high-frequency energy than bicubic's.
    import numpy as np

    window = namespace["window"]
    ndre = namespace["ndre"]
    before = ndre(namespace["before"]).isel(window).values
    after = ndre(namespace["sharp"]).isel(window).values
    assert np.abs(np.diff(after, axis=1)).mean() > 1.3 * np.abs(np.diff(before, axis=1)).mean()
