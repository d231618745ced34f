"""No evaluation image is a training or validation image of the learned models.

The lists are ``training/data.py``'s, the very ones ``train.py`` reads; the similarity is
recomputed here from the image files (``data.fingerprints``, ``data.similarity``), and the pairs
``training/excluded.json`` records must still be found by it.
"""

from __future__ import annotations

import json
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from dasksr.data import data_path

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def data(load_script) -> ModuleType:
    if data_path("sr-benchmarks", "Set5") is None:
        pytest.skip("sr-benchmarks not found (set DASKSR_DATA)")
    return load_script("training/data.py")


def _fingerprints(data: ModuleType, files: list[str]) -> np.ndarray:
    return np.stack([data.fingerprints(f) for f in files])


def test_no_benchmark_image_is_trained_or_validated_on(data):
    lists = data.image_lists()
    files = [f for part in lists.values() for f in part]
    bench = data._files(data.BENCHMARKS)
    assert len(bench) == 5 + 14 and len(files) > 1000
    scores, _ = data.similarity(_fingerprints(data, bench), _fingerprints(data, files))
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    assert scores[i, j] < data.SAME_PICTURE, (
        f"{files[j]} is {bench[i]} (similarity {scores[i, j]:.3f}): run training/dedupe.py"
    )
    # The lists are the full splits less exactly the excluded images, in both parts.
    full = data.image_lists(exclude=False)
    for name, part in full.items():
        dropped = [f for f in part if data.relative(f) in data.excluded()]
        assert [f for f in part if f not in dropped] == lists[name]


def test_recorded_pairs_are_found_again(data):
    record = json.loads(data.EXCLUDED.read_text())
    assert record["threshold"] == data.SAME_PICTURE
    assert any(e["name"] == "woman" for e in record["excluded"])  # BSDS200 302003, turned
    root = data_path("sr-benchmarks")
    for e in record["excluded"]:
        ours = data.fingerprints(str(root / e["image"]))[None]
        theirs = data.fingerprints(str(root / e["benchmark_file"]))[None]
        score, orientation = data.similarity(theirs, ours)
        assert score[0, 0] >= data.SAME_PICTURE and abs(score[0, 0] - e["score"]) < 0.01
        assert data.ORIENTATIONS[orientation[0, 0]] == e["orientation"]
        assert data.relative(str(root / e["image"])) in data.excluded()


def test_rule_finds_a_turned_reduced_recompressed_copy(data, tmp_path):
    """A benchmark image flipped, turned, reduced to 70 % and saved as JPEG is the same picture;
    another benchmark image is not."""
    bench = data._files(data.BENCHMARKS)
    image = Image.open(bench[-1]).transpose(Image.Transpose.ROTATE_90)
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.resize(
        (int(image.width * 0.7), int(image.height * 0.7)), Image.Resampling.LANCZOS
    )
    copy = tmp_path / "copy.jpg"
    image.save(copy, quality=75)
    scores, _ = data.similarity(_fingerprints(data, bench), data.fingerprints(str(copy))[None])
    assert scores[-1, 0] >= data.SAME_PICTURE
    assert scores[:-1, 0].max() < data.SAME_PICTURE
