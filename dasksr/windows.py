"""Arrays computed box by box: the key handling that dask's ``from_array`` needs of a source."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["WindowArray"]


class WindowArray:
    """A lazily computed array: ``[key]`` gets the smallest box covering ``key`` from `_read`.

    dask fuses later slicing into the reads of a ``from_array`` array, so a key may hold ints and
    strided (even reversed) slices too; they are applied to the box after `_read`. Subclasses set
    ``shape`` and ``dtype`` and implement ``_read(box)``, ``box`` being one ``(start, stop)`` per
    axis.
    """

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> Any:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        picks = [np.arange(n)[k] for k, n in zip(key, self.shape, strict=True)]
        if any(np.size(p) == 0 for p in picks):
            shape = np.broadcast_to(np.zeros((), self.dtype), self.shape)[key].shape
            return np.empty(shape, dtype=self.dtype)
        box = [(int(np.min(p)), int(np.max(p)) + 1) for p in picks]
        block = self._read(box)
        for axis in reversed(range(self.ndim)):  # from the last: an int drops its axis
            k = key[axis]
            if not (isinstance(k, slice) and k.indices(self.shape[axis])[2] == 1):
                block = np.take(block, picks[axis] - box[axis][0], axis=axis)
        return block

    def _read(self, box: list[tuple[int, int]]) -> Any:
        raise NotImplementedError
