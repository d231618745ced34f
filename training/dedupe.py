"""Find the training and validation images that are evaluation images; write ``excluded.json``.

Every image file that training or validation reads (``data.image_lists``: T91, BSDS200,
BSDS500-test200 and the AID tiles, before exclusion) is compared with every high-resolution image
of Set5 and Set14 (``data.BENCHMARKS``) by ``data.similarity``: the correlation of 32x32 grey
detail thumbnails (the image minus its local mean), of the whole image and of its centred square,
under the 8 rotations and flips. Pairs scoring ``data.SAME_PICTURE`` or more are the same picture
(Set5's ``woman`` is BSDS200 ``302003`` turned upright and reduced: 0.94); ``data.split`` then
leaves them out of both splits. The file also records the highest score that was kept, the
margin of the rule.

Example::

    python training/dedupe.py          # rewrites training/excluded.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# A sibling of this script: `python training/dedupe.py` puts its folder first on sys.path.
import data as datasets
import numpy as np

#: The evaluation images' names, by index (the shared MANIFEST's table).
NAMES = {
    "Set5": ("baby", "bird", "butterfly", "head", "woman"),
    "Set14": (
        "baboon",
        "barbara",
        "bridge",
        "coastguard",
        "comic",
        "face",
        "flowers",
        "foreman",
        "lenna",
        "man",
        "monarch",
        "pepper",
        "ppt3",
        "zebra",
    ),
}
#: Evaluation sets that the shared data does not hold, so that no image can be compared with them.
NOT_CHECKED = {
    "BSD100": "not in the shared data (kept out on purpose as a clean test set). It is the BSDS500 "
    "'val' split (the BSDS300 test set); BSDS200 is the 'train' split and BSDS500-test200 the "
    "'test' split, which the BSDS500 release keeps disjoint from it by image identifier",
    "Urban100": "not in the shared data: no image of it can be compared here",
}


def benchmark_name(path: str) -> tuple[str, str]:
    """``('Set5', 'woman')`` for ``.../Set5/image_SRF_2/img_005_SRF_2_HR.png``."""
    parts = Path(path).parts
    index = int(parts[-1].split("_")[1])
    return parts[-3], NAMES[parts[-3]][index - 1]


def find(lists: dict[str, list[str]]) -> dict:
    """The pairs at or above the rule's threshold and the best pair below it."""
    bench = datasets._files(datasets.BENCHMARKS)
    files = [(name, f) for name, part in lists.items() for f in part]
    b = np.stack([datasets.fingerprints(f) for f in bench])
    t = np.stack([datasets.fingerprints(f) for _, f in files])
    scores, orientation = datasets.similarity(b, t)

    def entry(i: int, j: int) -> dict:
        set_name, name = benchmark_name(bench[i])
        return {
            "image": datasets.relative(files[j][1]),
            "list": files[j][0],
            "benchmark": set_name,
            "name": name,
            "benchmark_file": datasets.relative(bench[i]),
            "score": round(float(scores[i, j]), 3),
            "orientation": datasets.ORIENTATIONS[orientation[i, j]],
        }

    same = scores >= datasets.SAME_PICTURE
    kept = np.where(same, -np.inf, scores)
    return {
        "excluded": [entry(i, j) for i, j in np.argwhere(same)],
        "highest_kept": entry(*np.unravel_index(np.argmax(kept), kept.shape)),
        "compared": int(scores.size),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=datasets.EXCLUDED)
    args = ap.parse_args(argv)
    result = find(datasets.image_lists(exclude=False))
    record = {
        "rule": (
            f"an image is left out of training and validation when the Pearson correlation of "
            f"its {datasets.THUMBNAIL}x{datasets.THUMBNAIL} grey detail thumbnail (box-reduced, "
            f"minus its 5x5 local mean) with a benchmark image's reaches {datasets.SAME_PICTURE}, "
            f"the best over the whole image and its centred square and over the 8 rotations and "
            f"flips of the benchmark image (data.fingerprints, data.similarity)"
        ),
        "threshold": datasets.SAME_PICTURE,
        "benchmarks": list(datasets.BENCHMARKS),
        "lists": {k: len(v) for k, v in datasets.image_lists(exclude=False).items()},
        "pairs_compared": result["compared"],
        "excluded": sorted(result["excluded"], key=lambda e: (e["image"], e["benchmark_file"])),
        "highest_kept": result["highest_kept"],
        "not_checked": NOT_CHECKED,
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["excluded"], indent=1))
    print("highest kept:", json.dumps(record["highest_kept"]))


if __name__ == "__main__":
    main()
