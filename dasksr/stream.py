"""A write computed strip of rows by strip of rows, so that the scene never sits in memory whole.

A write is one dask graph: a task per output block that writes it, and often more made from the
same blocks (the consistency residual of `dasksr.consistency`, its raster and its RMS). Handed to
the scheduler in one piece, such a graph held most of a scene at once: input blocks waited for
their neighbours' halos, output blocks for the residual that degrades them.

`compute` cuts the graph into strips of the output's rows of blocks (a row over `STRIP_BYTES` cut
again into groups of its columns) and computes them one after the other on the same scheduler
(`plan_strips`):

- a task that reads the output's blocks runs once, in the strip of the last output row it reads:
  an output block's write in its own strip, a residual block that straddles two strips in the
  second, the RMS's final sum in the last. What a later strip reads of an earlier one (a halo's
  rows, a residual's partial sums, a write's one-byte result) is kept, as a future on a cluster
  or in memory on the local scheduler, and given to it;
- upstream of the output, an input block is read once, in the first strip that needs it, and
  kept while later strips need it (a strip needs the first rows of the next one's input for its
  halo); a halo's edge cut from an input block is cut once, where the block is, and kept. The
  rest upstream (the inputs cut into the blocks' chunks, extended, masked: copies) runs again in
  every strip that needs it, rather than kept whole for the next strip;
- what is kept is `compact`: a slice kept as a view would keep its whole block alive, out of
  sight of dask's memory accounting (on a Sentinel-2 tile's `sharpen`, 0.7 GiB of blocks).

The writers (`dasksr.io`) and `dasksr.guided`'s pass over the scene for GLP's regression
statistics are computed this way. The results are those of one computation, bit for bit: the
same tasks on the same values. The memory freed by a strip is handed back to the system before
the next (`trim_memory`), so that the process does not keep the footprint of every strip.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import dask.array as da
from dask._task_spec import DataNode, GraphNode, Task, convert_legacy_graph
from dask.base import collections_to_expr

from dasksr.cluster import _quiet_abandoned_gathers, active_client
from dasksr.cluster import compute as cluster_compute

__all__ = [
    "STRIP_BYTES",
    "StripPlan",
    "compute",
    "plan_strips",
    "strip_shape",
    "trim_memory",
]

#: The output bytes that one strip holds at most (at least one block). A whole Sentinel-2 tile's
#: six 20 m bands at 10 m in uint16 are 1.45 GB: 135 MB a row of 1024 x 1024 blocks, so its
#: strips are rows cut in two groups of columns (6 and 5 blocks). What a strip holds besides its
#: output (its inputs and their halos, the copies cut from them) is several times that. Smaller
#: strips hold less but wait more: each strip ends when its last block is done.
STRIP_BYTES = 128 * 2**20
#: The rows (or columns) of an input block up to which a slice of it is kept for a later strip
#: rather than the block computed again there: halos are a few to a few tens of pixels.
THIN = 128


@dataclass(frozen=True)
class StripPlan:
    """Which tasks of a graph run in which strip, and what each strip keeps for the later ones.

    ``strips[i]`` are the keys computed in strip ``i`` (in an order where each follows its
    dependencies); ``kept[i]`` those of them that a later strip reads; ``last[k]`` the last strip
    that reads the kept key ``k``; ``outputs`` the keys of the collections, in their order;
    ``recomputed`` how many tasks run in more than one strip (copies of the inputs at the
    strips' edges; never a read).
    """

    graph: dict[Any, GraphNode]
    strips: list[list[Any]]
    kept: list[set[Any]]
    last: dict[Any, int]
    outputs: list[Any]
    recomputed: int

    @cached_property
    def output_set(self) -> frozenset[Any]:
        """The outputs' keys, as a set."""
        return frozenset(self.outputs)

    def needs(self, strip: int) -> set[Any]:
        """The keys computed in earlier strips that strip ``strip`` reads."""
        own = set(self.strips[strip])
        return {d for k in own for d in self.graph[k].dependencies if d not in own}

    def wanted(self, strip: int) -> list[Any]:
        """The keys whose values strip ``strip`` hands on: kept ones and outputs."""
        outputs = self.output_set.intersection(self.strips[strip])
        return sorted(self.kept[strip] | outputs, key=str)


def strip_shape(
    anchors: Sequence[da.Array],
    strip_bytes: int | None = None,
    axis: int = -2,
    row_bytes: float | None = None,
) -> tuple[int, int | None] | None:
    """The blocks of one strip, ``(rows, columns)``: as many rows of the anchors' blocks as
    ``strip_bytes`` (default `STRIP_BYTES`) holds (``row_bytes`` a row of them, when given), at
    least one; when one row is more than that, a row cut into groups of about equal numbers of
    columns of blocks (``columns``; None for whole rows). None when the anchors fit in one strip.
    """
    budget = STRIP_BYTES if strip_bytes is None else strip_bytes
    if row_bytes is None:
        row_bytes = sum(a.nbytes / max(a.shape[axis], 1) * max(a.chunks[axis]) for a in anchors)
    rows = max(1, int(budget // row_bytes)) if row_bytes else 1
    columns = None
    across = max((a.numblocks[-1] for a in anchors if a.ndim >= 2), default=1)
    if row_bytes > budget and axis == -2 and across > 1:  # rows of (.., y, x) cut in columns
        per = max(1, int(budget // (row_bytes / across)))
        groups = -(-across // per)
        columns = -(-across // groups) if groups > 1 else None
    if any(a.ndim >= 2 and a.numblocks[axis % a.ndim] > rows for a in anchors) or columns:
        return rows, columns
    return None


def plan_strips(
    collections: Sequence[Any],
    anchors: Sequence[da.Array],
    rows: int,
    axis: int = -2,
    columns: int | None = None,
) -> StripPlan | None:
    """The `StripPlan` of computing ``collections`` (Delayed objects) in strips of ``rows`` rows of
    the blocks of ``anchors`` (the output's dask arrays, ``axis`` their rows), each row cut into
    groups of ``columns`` columns of blocks when given (the strips in row-major order), or None
    when the graph holds none of the anchors' blocks (nothing tells the strips apart)."""
    outputs = [c.key for c in collections]
    expression = collections_to_expr(list(collections), optimize_graph=False)
    graph = _ancestors(convert_legacy_graph(dict(expression.__dask_graph__())), outputs)
    dependencies = {k: frozenset(node.dependencies) for k, node in graph.items()}
    anchor_strip = {}
    across = max((a.numblocks[-1] for a in anchors if a.ndim >= 2), default=1)
    groups = -(-across // columns) if columns else 1
    for array in anchors:
        position = 1 + axis % array.ndim
        for key in _flat(array.__dask_keys__()):
            if key in graph:
                group = key[array.ndim] // columns if columns else 0
                anchor_strip[key] = key[position] // rows * groups + group
    if not anchor_strip:
        return None
    order = _topological(dependencies)
    strip: dict[Any, int] = {}
    for key in order:  # downstream of the output's blocks: the strip of the last row read
        found = [strip[d] for d in dependencies[key] if d in strip]
        if key in anchor_strip:
            found.append(anchor_strip[key])
        if found:
            strip[key] = max(found)
    downstream = set(strip)
    first: dict[Any, int] = {}  # upstream: the first strip that reads it
    users = _users(dependencies)
    for key in reversed(order):
        if key not in downstream:
            first[key] = min((strip.get(u, first.get(u, 0)) for u in users[key]), default=0)
    for key in order:
        if key in downstream:
            continue
        if not dependencies[key]:  # an input block read: once, kept for the later strips
            strip[key] = first[key]
        # A halo's edge cut from an input block is cut in the strip that reads the block and
        # kept for the later strips, instead of the block cut again there.
        elif _is_thin_slice(graph[key]):
            earliest = max(strip.get(d, first.get(d, 0)) for d in dependencies[key])
            if earliest < first[key]:
                strip[key] = earliest
    count = max(strip.values()) + 1
    strips: list[list[Any]] = []
    loose = [k for k in outputs if k not in strip]  # outputs that read no output block
    for i in range(count):
        own = {k for k, b in strip.items() if b == i}
        starts = [d for k in own for d in dependencies[k] if d not in strip]
        inputs = _upstream(dependencies, starts + (loose if i == 0 else []), strip)
        strips.append([k for k in order if k in own or k in inputs])
    kept: list[set[Any]] = [set() for _ in range(count)]
    last: dict[Any, int] = {}
    for i, keys in enumerate(strips):
        own = set(keys)
        for d in {d for k in keys for d in dependencies[k] if d not in own}:
            kept[strip[d]].add(d)
            last[d] = max(last.get(d, 0), i)
    recomputed = sum(len(b) for b in strips) - len(graph)
    for key in set().union(*kept):
        graph[key] = _compacted(graph[key])
    return StripPlan(graph, strips, kept, last, outputs, recomputed)


def compute(
    collections: Sequence[Any],
    anchors: Sequence[da.Array],
    *,
    strip_bytes: int | None = None,
    progress: bool = False,
    axis: int = -2,
    row_bytes: float | None = None,
) -> list[Any]:
    """Compute ``collections`` (Delayed objects) on the active scheduler, strip by strip of the
    rows of ``anchors``' blocks (`plan_strips`), each strip about ``strip_bytes`` (default
    `STRIP_BYTES`) of the anchors (``row_bytes`` a row of their blocks, when given: a pass
    whose results are small but whose blocks are not); their results, in order, as
    `dasksr.cluster.compute` gives.

    One strip (a small output), or a graph that holds no anchor block, is one computation.
    """
    shape = strip_shape(anchors, strip_bytes, axis, row_bytes)
    plan = None if shape is None else plan_strips(collections, anchors, shape[0], axis, shape[1])
    if plan is None or len(plan.strips) < 2:
        return cluster_compute(collections, progress=progress)
    bar = _Bar(sum(len(b) for b in plan.strips)) if progress else None
    client = active_client()
    try:
        values = _on_local(plan, bar) if client is None else _on_cluster(client, plan, bar)
    finally:
        if bar is not None:
            bar.close()
    return [values[k] for k in plan.outputs]


def trim_memory() -> None:
    """Hand the memory that this process freed back to the system, where the C library can
    (glibc's ``malloc_trim``; elsewhere nothing). Freed block-sized arrays otherwise stay in the
    allocator's arenas, and the process keeps the footprint of its largest strip."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or name is None:
        return
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _on_local(plan: StripPlan, bar: _Bar | None) -> dict[Any, Any]:
    """The strips on the local scheduler that dask is set to use; the values handed on."""
    from contextlib import nullcontext

    from dask.base import get_scheduler
    from dask.callbacks import Callback
    from dask.threaded import get as threaded_get

    schedule = get_scheduler() or threaded_get  # none set: dask's default for these graphs
    held: dict[Any, Any] = {}
    found: dict[Any, Any] = {}
    for i, keys in enumerate(plan.strips):
        trim_memory()
        graph: dict[Any, Any] = {k: plan.graph[k] for k in keys}
        graph.update({k: DataNode(k, held[k]) for k in plan.needs(i)})
        wanted = plan.wanted(i)
        counting = Callback(posttask=lambda *_: bar.advance(1)) if bar else nullcontext()
        with counting:
            values = schedule(graph, wanted)
        _hand_on(plan, i, dict(zip(wanted, values, strict=True)), held, found)
        del values, graph
    return found


def _on_cluster(client: Any, plan: StripPlan, bar: _Bar | None) -> dict[Any, Any]:
    """The strips on a distributed client: each strip's graph goes with the futures of what it
    reads from earlier strips. The next strip goes as soon as the current one is down to its
    last results, one per worker thread: otherwise the cores would idle while the last blocks of
    each strip finish. Only that tail overlaps the next strip, so a worker still holds about one
    strip's blocks at once."""
    held: dict[Any, Any] = {}
    found: dict[Any, Any] = {}
    threads = max(1, sum(client.nthreads().values()))
    tail: _Running | None = None  # the earlier strip, down to its last results
    current: _Running | None = None
    try:
        for i, keys in enumerate(plan.strips):
            client.run(trim_memory)
            graph: dict[Any, Any] = {k: plan.graph[k] for k in keys}
            graph.update({k: held[k] for k in plan.needs(i)})
            wanted = plan.wanted(i)
            futures = client.get(graph, wanted, sync=False)
            _hand_on(plan, i, dict(zip(wanted, futures, strict=True)), held, found)
            current = _Running(futures, len(keys) / len(wanted), bar)
            if tail is not None:
                tail.wait(0)
            current.wait(0 if i == len(plan.strips) - 1 else threads)
            tail, current = current, None
        done = client.gather(list(found.values()))
    except KeyboardInterrupt:
        _quiet_abandoned_gathers()
        running = [f for r in (tail, current) if r is not None for f in r.futures]
        client.cancel([*running, *held.values(), *found.values()])
        raise
    return dict(zip(found, done, strict=True))


class _Running:
    """A strip's submitted futures, waited on as they finish; each worth ``share`` of ``bar``."""

    def __init__(self, futures: list[Any], share: float, bar: _Bar | None) -> None:
        from distributed import as_completed

        self.futures, self.share, self.bar = futures, share, bar
        self.results = as_completed(futures)
        self.left = len(futures)

    def wait(self, left: int) -> None:
        """Until at most ``left`` futures are still running; the first error is raised."""
        while self.left > left:
            future = next(self.results)
            self.left -= 1
            if future.status == "error":
                future.result()  # raises the task's error
            if self.bar is not None:
                self.bar.advance(self.share)
        if not self.left:
            self.futures = []


def _hand_on(
    plan: StripPlan, strip: int, values: dict[Any, Any], held: dict[Any, Any], found: dict[Any, Any]
) -> None:
    """Keep the values (or futures) of strip ``strip`` that later strips read in ``held``, and
    the outputs' in ``found``; drop from ``held`` what no later strip reads."""
    for key, value in values.items():
        if key in plan.kept[strip]:
            held[key] = value
        if key in plan.output_set:
            found[key] = value
    for key in [k for k in held if plan.last[k] <= strip]:
        del held[key]


class _Bar:
    """A text progress bar on stderr over all the strips, drawn like dask's
    (``[####    ] |  50% Completed | 1.2s``)."""

    def __init__(self, total: float, width: int = 40) -> None:
        self.total, self.width, self.done = max(total, 1.0), width, 0.0
        self.start = self.shown = time.perf_counter()
        self._draw()

    def advance(self, amount: float) -> None:
        self.done += amount
        now = time.perf_counter()
        if now - self.shown >= 0.1:
            self.shown = now
            self._draw()

    def close(self) -> None:
        self._draw()
        print(file=sys.stderr, flush=True)

    def _draw(self) -> None:
        share = min(self.done / self.total, 1.0)
        elapsed = time.perf_counter() - self.start
        line = f"[{'#' * int(self.width * share):<{self.width}}] | {share:4.0%} Completed"
        print(f"\r{line} | {elapsed:.1f}s", end="", file=sys.stderr, flush=True)


def _compacted(node: GraphNode) -> GraphNode:
    """``node``, its value made `compact`: what a strip keeps for a later one (a halo's edge cut
    from an input block, most often) must not keep the whole block alive as a view of it."""
    return Task(node.key, compact, node) if isinstance(node, Task) else node


def compact(value: Any) -> Any:
    """``value``, copied when it is a view of a larger array (its own bytes only), else itself."""
    root = value
    while getattr(root, "base", None) is not None and hasattr(root.base, "nbytes"):
        root = root.base
    if root is not value and getattr(value, "nbytes", root.nbytes) < root.nbytes:
        return value.copy()
    return value


def _is_thin_slice(node: GraphNode) -> bool:
    """Whether ``node`` cuts at most `THIN` rows or columns of a block (``getitem`` with a
    bounded slice on one of the last two axes): a halo's edge, as `map_overlap` cuts them."""
    import operator

    from dask.array.chunk import getitem

    if getattr(node, "func", None) not in (operator.getitem, getitem):
        return False
    index = getattr(node, "args", ())[1:2]
    if not index or not isinstance(index[0], tuple) or len(index[0]) < 2:
        return False
    for part in index[0][-2:]:
        if isinstance(part, slice) and part.step in (None, 1):
            start, stop = part.start, part.stop
            if isinstance(start, int) and start < 0 and stop is None and -start <= THIN:
                return True
            if (
                isinstance(stop, int)
                and stop >= 0
                and (start or 0) >= 0
                and stop - (start or 0) <= THIN
            ):
                return True
    return False


def _flat(keys: Any) -> Iterable[Any]:
    if isinstance(keys, list):
        for k in keys:
            yield from _flat(k)
    else:
        yield keys


def _ancestors(graph: dict[Any, GraphNode], keys: Iterable[Any]) -> dict[Any, GraphNode]:
    """The part of ``graph`` that ``keys`` need, themselves included."""
    dependencies = {k: frozenset(node.dependencies) for k, node in graph.items()}
    return {k: graph[k] for k in _upstream(dependencies, keys, ())}


def _upstream(
    dependencies: dict[Any, frozenset[Any]], keys: Iterable[Any], outside: Container[Any]
) -> set[Any]:
    """``keys`` and their ancestors, without crossing into the keys ``outside``."""
    seen: set[Any] = set()
    stack = [k for k in keys if k not in outside]
    while stack:
        key = stack.pop()
        if key not in seen:
            seen.add(key)
            stack.extend(d for d in dependencies[key] if d not in seen and d not in outside)
    return seen


def _topological(dependencies: dict[Any, frozenset[Any]]) -> list[Any]:
    """The keys, each after its dependencies (Kahn's algorithm)."""
    waiting = {k: len(d) for k, d in dependencies.items()}
    users = _users(dependencies)
    ready = [k for k, n in waiting.items() if n == 0]
    order = []
    while ready:
        key = ready.pop()
        order.append(key)
        for user in users[key]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return order


def _users(dependencies: dict[Any, frozenset[Any]]) -> dict[Any, list[Any]]:
    """The keys that read each key."""
    users: dict[Any, list[Any]] = {k: [] for k in dependencies}
    for key, deps in dependencies.items():
        for d in deps:
            users[d].append(key)
    return users
