"""The cluster guide's time estimate for a full Sentinel-2 tile, from measured per-task costs.

Reads the measured throughputs from docs/benchmarks.md (the end-to-end rows of the 4x scene, and
the kernel rows for the methods that were not run end to end), turns them into a cost per output
megapixel per core and a cost per task, and prints the estimate table of docs/cluster.md.
``--write`` replaces the table in docs/cluster.md (between its ``estimate`` markers);
tests/test_docs.py checks that the page is up to date with docs/benchmarks.md.

    python docs/figures/cluster_estimate.py           # print the table
    python docs/figures/cluster_estimate.py --write   # and put it into docs/cluster.md
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
BENCHMARKS = DOCS / "benchmarks.md"
CLUSTER = DOCS / "cluster.md"
START, END = "<!-- estimate:start -->", "<!-- estimate:end -->"

#: A full Sentinel-2 tile: 10980 x 10980 pixels at 10 m, 4 bands (B02, B03, B04, B08), x2.
TILE, BANDS, SCALE = 10980, 4, 2
#: dasksr's default input chunk edge (dasksr.io.read.DEFAULT_CHUNK), all bands in one chunk.
CHUNK = 1024
#: Cores of the machine the benchmarks ran on (docs/benchmarks.md, "Machine").
MEASURED_CORES = 2
#: Workers in the table, each with the measured machine's cores (1 worker = that machine).
WORKERS = (1, 4, 16, 64)


@dataclass(frozen=True)
class Cost:
    method: str
    output: str
    ms_per_mpix: float  # core-milliseconds per output megapixel
    source: str  # where the figure comes from
    scales: bool  # whether more workers make it faster


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """The rows of the first Markdown table after ``heading``, keyed by their first cell."""
    start = text.find(heading)
    if start < 0:
        raise SystemExit(f"{BENCHMARKS}: no section {heading!r}; update this script")
    rows: dict[str, list[str]] = {}
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
        elif rows:
            break
    return rows


def number(rows: dict[str, list[str]], row: str, column: int) -> float:
    try:
        return float(rows[row][column])
    except (KeyError, IndexError, ValueError):
        raise SystemExit(f"{BENCHMARKS}: no number in row {row!r}, column {column}") from None


def measured_costs(text: str) -> list[Cost]:
    e2e = table_rows(text, "### End to end, 4x scene")
    kernel = table_rows(text, "### Kernel")
    in_process = 5  # column: the write time the dasksr command reports itself (MPix/s)

    def per_core(mpix_per_s: float) -> float:
        return 1000.0 * MEASURED_CORES / mpix_per_s

    nearest = per_core(number(e2e, "dasksr nearest -> Zarr", in_process))
    bicubic = per_core(number(e2e, "dasksr bicubic -> Zarr", in_process))
    tiff = per_core(number(e2e, "dasksr bicubic -> GeoTIFF", in_process))
    # Lanczos was not run end to end: bicubic's end-to-end cost plus the difference of the two
    # single-thread kernels (column 2: output MPix/s).
    extra = 1000.0 / number(kernel, "dasksr lanczos", 2) - 1000.0 / number(
        kernel, "dasksr bicubic", 2
    )
    return [
        Cost("nearest", "Zarr", nearest, "measured end to end", True),
        Cost("bilinear", "Zarr", bicubic, "bicubic's cost (an upper bound: not measured)", True),
        Cost("bicubic", "Zarr", bicubic, "measured end to end", True),
        Cost("lanczos", "Zarr", bicubic + extra, "bicubic + kernel difference", True),
        Cost("bicubic", "GeoTIFF", tiff, "measured end to end; one writer", False),
    ]


def estimate(text: str) -> str:
    output_mpix = BANDS * (TILE * SCALE) ** 2 / 1e6
    per_side = math.ceil(TILE / CHUNK)
    tasks = per_side**2
    task_mpix = BANDS * (CHUNK * SCALE) ** 2 / 1e6
    lines = [
        f"Output: {BANDS} x {TILE * SCALE} x {TILE * SCALE} = {output_mpix:,.0f} MPix; "
        f"{tasks} tasks of {CHUNK} x {CHUNK} input pixels ({task_mpix:.1f} output MPix each, "
        f"the edge tasks smaller).",
        "",
        "| method | output | core-ms per output MPix | one task, s | "
        + " | ".join(f"{n} worker{'s' * (n > 1)}, s" for n in WORKERS)
        + " | from |",
        "|---|---|---|---|" + "---|" * len(WORKERS) + "---|",
    ]
    for cost in measured_costs(text):
        task_s = task_mpix * cost.ms_per_mpix / 1000.0
        if cost.scales:
            # Waves of full-size tasks: each core runs ceil(tasks / cores) of them in a row.
            times = [math.ceil(tasks / (n * MEASURED_CORES)) * task_s for n in WORKERS]
        else:
            # Writes go through one file under a lock: the measured rate, whatever the cluster.
            times = [output_mpix * cost.ms_per_mpix / 1000.0 / MEASURED_CORES] * len(WORKERS)
        lines.append(
            f"| `{cost.method}` | {cost.output} | {cost.ms_per_mpix:.1f} | {task_s:.2f} | "
            + " | ".join(f"{t:,.0f}" if t >= 10 else f"{t:.1f}" for t in times)
            + f" | {cost.source} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update {CLUSTER.name}")
    args = parser.parse_args()
    table = estimate(BENCHMARKS.read_text(encoding="utf-8"))
    print(table)
    if args.write:
        page = CLUSTER.read_text(encoding="utf-8")
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        if not pattern.search(page):
            raise SystemExit(f"{CLUSTER}: no {START} ... {END} markers")
        CLUSTER.write_text(
            pattern.sub(lambda _: f"{START}\n{table}\n{END}", page), encoding="utf-8"
        )
        print(f"updated {CLUSTER}")


if __name__ == "__main__":
    main()
