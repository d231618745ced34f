"""The dasksr exception hierarchy.

Every message names the argument or file, says what was wrong and how to fix it, in one line, so
that the command line can print it as it is.
"""

from __future__ import annotations

__all__ = [
    "DasksrError",
    "InvalidArgumentError",
    "InvalidScaleError",
    "UnknownMethodError",
    "InputError",
    "OutputExistsError",
    "OutputError",
    "SchedulerError",
    "ModelError",
]


class DasksrError(Exception):
    """Base class of every error that dasksr raises on purpose."""


class InvalidArgumentError(DasksrError, ValueError):
    """An argument has a value dasksr cannot use."""


class InvalidScaleError(InvalidArgumentError):
    """The scale factor is not an integer the method supports."""


class UnknownMethodError(InvalidArgumentError, KeyError):
    """No method is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputError(DasksrError, OSError):
    """An input raster is missing, unreadable or not a raster."""


class OutputExistsError(DasksrError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class OutputError(DasksrError, OSError):
    """The output cannot be written where it was asked for."""


class SchedulerError(DasksrError, ConnectionError):
    """The Dask scheduler cannot be reached or started."""


class ModelError(DasksrError, OSError):
    """A learned method's model file is missing, corrupt or not the one its record describes."""
