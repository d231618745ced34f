"""Where the shared benchmark images and GeoTIFF scenes are: one helper for tests and benchmarks.

The data is never part of the package. ``DASKSR_DATA`` names its folder; otherwise a ``shared/data``
folder in or beside the current folder, one of its parents, or the checkout holding the package is
used when it exists.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "data_path", "require_path"]


def data_dir() -> Path | None:
    """The shared data folder, or None when it is not on this machine."""
    env = os.environ.get("DASKSR_DATA")
    if env:
        p = Path(env).expanduser()
        return p if p.is_dir() else None
    here = Path.cwd().resolve()
    package = Path(__file__).resolve().parent  # an editable install inside a checkout
    for base in (here, *here.parents, *package.parents):
        for candidate in (base / "shared" / "data", base.parent / "shared" / "data"):
            if candidate.is_dir():
                return candidate
    return None


def data_path(*parts: str) -> Path | None:
    """``data_dir() / parts`` when it exists, else None (callers skip cleanly)."""
    root = data_dir()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None


def require_path(*parts: str) -> Path:
    """``data_path(*parts)``, or FileNotFoundError naming ``DASKSR_DATA`` when it is missing."""
    p = data_path(*parts)
    if p is None:
        raise FileNotFoundError(
            f"the shared data file {'/'.join(parts)} is not on this machine: set DASKSR_DATA"
        )
    return p
