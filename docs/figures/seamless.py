"""Make docs/figures/seamless.png: the seamless contract, computed.

The demo scene (``dasksr.demo.make_scene``, made in code) is upscaled in chunks that divide nothing
evenly, and as one NumPy image. The figure shows the chunked result with the chunk borders drawn
over it, the map of ``|chunked - whole|`` (every pixel 0: the script asserts it), and for contrast
the same difference for a naive tiling that upscales each chunk on its own.

    python docs/figures/seamless.py            # writes docs/figures/seamless.png
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

import dasksr
import dasksr.demo

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Seams:
    """One computation of the contract: the results, their differences and the chunk borders."""

    fine: np.ndarray  # (band, y, x), the chunked result
    chunked_error: np.ndarray  # (y, x), max over bands of |chunked - whole|
    naive_error: np.ndarray  # (y, x), max over bands of |naive tiles - whole|
    borders_y: np.ndarray  # fine-pixel positions of the chunk borders
    borders_x: np.ndarray


def compute(size: int = 240, chunk: int = 53, scale: int = 4, method: str = "lanczos") -> Seams:
    """Upscale the demo scene chunked, whole and naively tiled; return the differences."""
    scene = dasksr.demo.make_scene(size, bands=3, seed=1)
    lazy = da.from_array(scene, chunks=(3, chunk, chunk))
    fine = np.asarray(dasksr.upscale(lazy, scale=scale, method=method, nodata=0).compute())
    whole = dasksr.upscale(scene, scale=scale, method=method, nodata=0)

    def alone(block: np.ndarray) -> np.ndarray:
        return dasksr.upscale(block, scale=scale, method=method, nodata=0)

    out_chunks = (lazy.chunks[0], *(tuple(n * scale for n in c) for c in lazy.chunks[1:]))
    naive = lazy.map_blocks(alone, chunks=out_chunks, dtype=scene.dtype).compute()

    def error(a: np.ndarray) -> np.ndarray:
        return np.abs(a.astype(np.int64) - whole).max(axis=0)

    return Seams(
        fine=fine,
        chunked_error=error(fine),
        naive_error=error(naive),
        borders_y=np.cumsum(lazy.chunks[1])[:-1] * scale,
        borders_x=np.cumsum(lazy.chunks[2])[:-1] * scale,
    )


def draw(seams: Seams, path: Path, *, scale: int, method: str, chunk: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    valid = seams.fine[0] > 0
    low, high = np.percentile(seams.fine[:, valid], [2, 98], axis=1)
    rgb = np.clip((seams.fine - low[:, None, None]) / (high - low)[:, None, None], 0, 1)
    rgb = np.moveaxis(rgb, 0, -1)
    rgb[~valid] = 1.0  # nodata in white
    wrong = seams.naive_error[seams.naive_error > 0]
    # Thin seams stay visible when the colour scale ends at the 90th percentile of the errors.
    limit = max(float(np.percentile(wrong, 90)) if wrong.size else 1.0, 1.0)

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8), constrained_layout=True)
    axes[0].imshow(rgb, interpolation="nearest")
    axes[0].set_title(
        f"{method} x{scale}, input chunks of {chunk} px (borders dashed)", fontsize=10
    )
    for ax in axes:
        for edge in seams.borders_x:
            ax.axvline(edge - 0.5, color="yellow", lw=0.7, ls="--")
        for edge in seams.borders_y:
            ax.axhline(edge - 0.5, color="yellow", lw=0.7, ls="--")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].imshow(seams.chunked_error, cmap="magma", vmin=0, vmax=limit, interpolation="nearest")
    axes[1].set_title(
        f"dasksr: |chunked - whole image|, max {seams.chunked_error.max()}", fontsize=10
    )
    shown = axes[2].imshow(
        seams.naive_error, cmap="magma", vmin=0, vmax=limit, interpolation="nearest"
    )
    share = (seams.naive_error > 0).mean()
    axes[2].set_title(
        f"naive tiles: |tiled - whole image|, max {seams.naive_error.max()}, {share:.0%} wrong",
        fontsize=10,
    )
    fig.colorbar(shown, ax=axes, shrink=0.85, extend="max", label="difference, uint16 DN")
    fig.savefig(path, dpi=72)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "seamless.png")
    parser.add_argument("--method", default="lanczos")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=53)
    args = parser.parse_args()
    seams = compute(chunk=args.chunk, scale=args.scale, method=args.method)
    print(
        f"{args.method} x{args.scale}, chunks {args.chunk}: max |chunked - whole| = "
        f"{seams.chunked_error.max()}; naive tiling: max {seams.naive_error.max()}, "
        f"{(seams.naive_error > 0).mean():.1%} of the fine pixels wrong"
    )
    assert seams.chunked_error.max() == 0, "the seamless contract is broken"
    draw(seams, args.out, scale=args.scale, method=args.method, chunk=args.chunk)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
