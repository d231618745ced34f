"""The one registry of reconstruction methods.

A method declares everything the layers below the kernel need: its halo for a scale (in input pixels),
the boundary rule the whole-image result uses, the scales it supports and the block function. The
blockwise layer, the API, the accessor, the command line and the benchmarks read methods from here
only, so a new method is registered once and is available everywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from dasksr.errors import InvalidScaleError, UnknownMethodError

__all__ = [
    "BlockFunction",
    "Method",
    "ProcessResource",
    "check_scale",
    "get_method",
    "list_methods",
    "register",
]


class BlockFunction(Protocol):
    """A kernel: one padded in-memory block in, the valid fine-grid block out.

    ``block`` has shape ``(..., ny + 2 * halo, nx + 2 * halo)``; the result has shape
    ``(..., ny * scale, nx * scale)`` and the dtype of ``block``. ``nodata`` marks invalid input
    pixels (NaN and infinities are always invalid in floating-point data).
    """

    def __call__(self, block: Any, scale: int, *, nodata: float | None = None) -> Any: ...


@dataclass(frozen=True)
class Method:
    """A registered reconstruction method.

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
    luma : bool
        Evaluated on the Y channel of RGB images (networks trained on Y are); interpolation
        methods are evaluated on the RGB bands, as the published bicubic figures are.
    """

    name: str
    summary: str
    halo: Callable[[int], int]
    block: BlockFunction
    scales: tuple[int, ...] = field(default=tuple(range(2, 9)))
    boundary: str = "reflect"
    version: str = "1"
    params: tuple[tuple[str, str], ...] = ()
    luma: bool = False

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


class ProcessResource:
    """A heavy object (an inference session) made lazily, once per process, shared by its threads.

    The object is created by ``factory()`` on first `get` in each process, under a lock, and cached
    by ``key`` (for a network, the hash of its weights), so tasks that carry a `ProcessResource`
    pickle only the key and the factory, never the object itself.
    """

    _cache: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: str, factory: Callable[[], Any]) -> None:
        self.key = key
        self.factory = factory

    def get(self) -> Any:
        found = self._cache.get(self.key)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(self.key)
            if found is None:
                found = self._cache[self.key] = self.factory()
        return found

    @classmethod
    def clear(cls) -> None:
        """Drop every cached object of this process."""
        with cls._lock:
            cls._cache.clear()

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.factory))


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to the registry (replacing a method of the same name) and return it."""
    _REGISTRY[method.name] = method
    return method


def get_method(name: str | Method) -> Method:
    """Return the registered method called ``name``."""
    if isinstance(name, Method):
        return name
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownMethodError(f"unknown method {name!r}: choose one of {known}") from None


def list_methods() -> list[Method]:
    """Return every registered method, sorted by name."""
    _load_builtin_methods()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _load_builtin_methods() -> None:
    # Importing the kernel modules registers their methods; done lazily to avoid import cycles.
    from dasksr.kernels import cnn, interp  # noqa: F401
