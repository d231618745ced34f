#!/usr/bin/env python
"""Where a job's memory goes: resident memory beside what the dask worker holds, by task name.

``job`` runs a ``dasksr`` command in this process (the default embedded cluster is one
in-process worker) and samples every 0.25 s the process's RSS, the bytes its worker holds
(``distributed``'s own ``sizeof``, by task name), and the arrays at the root of the held values
that are views (``name*`` rows: bytes that dask does not count, kept alive by a view of them).
It prints the breakdown at the peak RSS and a timeline (``--trace`` adds the bytes that
``tracemalloc`` sees allocated; it makes the job about three times slower).

``block`` measures the peak bytes allocated by one GLP block of ``sharpen`` (1024 x 1024 fine
pixels, six coarse and four guide bands, x2), with ``tracemalloc``.

    python benchmarks/memory_probe.py job -- sharpen B05.tif ... --guide B02.tif ... out.zarr -m glp
    python benchmarks/memory_probe.py block
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
import tracemalloc
from typing import Any


def held_by_name(worker: Any) -> collections.Counter[str]:
    """Bytes the worker holds by task name, and (``name*``) the roots of the views among them."""
    from dask.sizeof import sizeof
    from dask.utils import key_split

    held: collections.Counter[str] = collections.Counter()
    roots: dict[int, tuple[str, int]] = {}
    for key, value in list(worker.data.items()):
        held[key_split(key)] += sizeof(value)
        root = value
        while getattr(root, "base", None) is not None and hasattr(root.base, "nbytes"):
            root = root.base
        if root is not value and hasattr(root, "nbytes"):
            roots[id(root)] = (key_split(key) + "*", int(root.nbytes))
    for name, size in roots.values():
        held[name] += size
    return held


def job(argv: list[str], trace: bool) -> None:
    import distributed
    import psutil

    from dasksr.cli import main

    if trace:
        tracemalloc.start(1)
    samples: list[tuple[float, int, int, int]] = []
    peak: tuple[int, list[tuple[str, int]], int] = (0, [], 0)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        process = psutil.Process()
        while not done.is_set():
            rss = process.memory_info().rss
            held: collections.Counter[str] = collections.Counter()
            for worker in list(distributed.Worker._instances):
                held.update(held_by_name(worker))
            counted = sum(v for k, v in held.items() if not k.endswith("*"))
            samples.append((time.perf_counter(), rss, counted, tracemalloc.get_traced_memory()[0]))
            if rss > peak[0]:
                peak = (rss, held.most_common(12), counted)
            time.sleep(0.25)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        status = main(argv)
    finally:
        done.set()
        watcher.join()
    gib = 2**30
    print(
        f"exit status {status}; peak RSS {peak[0] / gib:.2f} GiB, held by dask {peak[2] / gib:.2f}"
    )
    for name, size in peak[1]:
        print(f"  {size / 2**20:9.1f} MiB  {name}")
    step = max(1, len(samples) // 30)
    for t, rss, counted, traced in samples[::step]:
        line = f"  t={t - samples[0][0]:6.1f} s  rss {rss / gib:.2f}  held {counted / gib:.2f}"
        print(line + (f"  traced {traced / gib:.2f}" if trace else ""))


def block() -> None:
    import numpy as np

    import dasksr.guided as guided

    rng = np.random.default_rng(0)
    n = 1024
    guide = (1500 + rng.normal(size=(4, n, n)) * 300).clip(1, 65535).astype(np.uint16)
    coarse = (1800 + rng.normal(size=(6, n // 2, n // 2)) * 300).clip(1, 65535).astype(np.uint16)
    found = {}
    inner = guided.kernel.glp_block

    def measured(*args: Any, **kwargs: Any) -> Any:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        out = inner(*args, **kwargs)
        found["peak"] = tracemalloc.get_traced_memory()[1] - before
        return out

    guided.kernel.glp_block = measured
    tracemalloc.start()
    try:
        guided.sharpen_numpy(
            coarse,
            guide,
            ratio=2,
            names=["B05", "B06", "B07", "B8A", "B11", "B12"],
            guides=["B02", "B03", "B04", "B08"],
        )
    finally:
        guided.kernel.glp_block = inner
    print(f"one GLP block, 1024 x 1024 x 6 bands: peak {found['peak'] / 2**20:.0f} MiB allocated")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("job", "block"))
    ap.add_argument("--trace", action="store_true", help="job: also tracemalloc's bytes")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="job: the dasksr command, after --")
    args = ap.parse_args()
    if args.what == "block":
        block()
    else:
        job(args.args[1:] if args.args[:1] == ["--"] else args.args, args.trace)


if __name__ == "__main__":
    sys.exit(main())
