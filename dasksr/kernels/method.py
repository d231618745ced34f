"""What a reconstruction method is: the `Method` record, its `BlockFunction` and `check_scale`.

A method declares everything the layers below the kernel need: its halo for a scale (in input pixels),
the boundary rule the whole-image result uses, the scales it supports and the block function. This
module only describes methods; the one registry of them is :mod:`dasksr.methods`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from dasksr.errors import InvalidScaleError

__all__ = ["BlockFunction", "Method", "check_scale"]


class BlockFunction(Protocol):
    """A kernel: one padded in-memory block in, the valid fine-grid block out.

    ``block`` has shape ``(..., ny + 2 * halo, nx + 2 * halo)``; the result has shape
    ``(..., ny * scale, nx * scale)`` and the dtype of ``block``. ``nodata`` marks invalid input
    pixels (NaN and infinities are always invalid in floating-point data).
    """

    def __call__(self, block: Any, scale: int, *, nodata: float | None = None) -> Any: ...


@dataclass(frozen=True)
class Method:
    """A reconstruction method: what the layers above the kernel need to run it on blocks.

    Attributes
    ----------
    name : str
        The name users pass as ``method=``.
    summary : str
        One line for ``dasksr methods`` and the docs.
    halo : callable
        ``halo(scale) -> int``: input pixels needed on each side of a block.
    block : BlockFunction
        The kernel run on every padded block.
    scales : tuple of int
        The integer scale factors the method supports.
    boundary : str
        How the image is extended past its edges; ``'reflect'`` is the half-sample symmetric
        extension (``numpy.pad(mode='symmetric')``, dask's ``'reflect'``).
    version : str
        Bumped whenever the method's output changes for the same input.
    params : tuple of (str, str) pairs
        Everything else that determines the output (weights hashes, fixed parameters); part of
        :attr:`token`.
    """

    name: str
    summary: str
    halo: Callable[[int], int]
    block: BlockFunction
    scales: tuple[int, ...] = field(default=tuple(range(2, 9)))
    boundary: str = "reflect"
    version: str = "1"
    params: tuple[tuple[str, str], ...] = ()

    @property
    def token(self) -> str:
        """The method's identity: name, version and parameters, for graph names and resume records.

        Two methods with the same token give the same output on the same input; anything that
        changes the output (new weights, another kernel) changes the token.
        """
        extra = "".join(f",{k}={v}" for k, v in self.params)
        return f"{self.name}/v{self.version}{extra}"

    def check_scale(self, scale: Any) -> int:
        """Return ``scale`` as an int, or raise `InvalidScaleError` naming the supported scales."""
        return check_scale(scale, self.scales, method=self.name)


def check_scale(
    scale: Any,
    scales: Collection[int] | None = None,
    *,
    minimum: int | None = None,
    method: str | None = None,
    shown: str | None = None,
) -> int:
    """Return ``scale`` as an int, or raise `InvalidScaleError`: the one scale validator.

    An int, or a float with an integer value, is accepted (not a bool, not a string). With
    ``scales`` it must be one of them (``method`` names their owner in the message); with
    ``minimum`` at least that. ``shown`` is how the message names the value (default
    ``scale=VALUE``; the command line says ``--scale 'TEXT'``).
    """
    what = f"scale={scale!r}" if shown is None else shown
    ok = isinstance(scale, int) and not isinstance(scale, bool)
    if not ok and isinstance(scale, float) and scale.is_integer():
        scale, ok = int(scale), True
    if not scales:
        choices = "such as 2 or 4"
    elif sorted(scales) == list(range(min(scales), max(scales) + 1)) and len(scales) > 3:
        choices = f"from {min(scales)} to {max(scales)}"
    else:
        choices = "among " + ", ".join(map(str, sorted(scales)))
    if not ok:
        raise InvalidScaleError(f"{what} is not an integer: use an integer {choices}")
    if scales is not None and scale not in scales:
        owner = f" by method {method!r}" if method else ""
        raise InvalidScaleError(f"{what} is not supported{owner}: use an integer {choices}")
    if minimum is not None and scale < minimum:
        raise InvalidScaleError(f"{what} is less than {minimum}: use an integer {choices}")
    return int(scale)
