"""The one registry of reconstruction methods.

The blockwise layer, the API, the accessor, the command line, the evaluation and the benchmarks
read methods from here only, so a new method is registered once and is available everywhere. The
built-in methods (the interpolation kernels of :mod:`dasksr.kernels.interp` and the shipped
networks of :mod:`dasksr.models`) are added on the first lookup, so importing this module reads no
model record; a method registered under a built-in name keeps its place.
"""

from __future__ import annotations

import threading

from dasksr.errors import UnknownMethodError
from dasksr.kernels.method import Method

__all__ = ["Method", "get_method", "list_methods", "register"]

_REGISTRY: dict[str, Method] = {}
_builtins_loaded = False
_builtins_lock = threading.Lock()


def register(method: Method) -> Method:
    """Add ``method`` to the registry (replacing a method of the same name) and return it.

    Parameters
    ----------
    method : Method
        The method; its ``name`` is what users pass as ``method=``.

    Returns
    -------
    Method
        ``method`` itself.

    Examples
    --------
    >>> from dataclasses import replace
    >>> import dasksr
    >>> trial = dasksr.register(replace(dasksr.get_method("bilinear"), name="my-bilinear"))
    >>> dasksr.get_method("my-bilinear") is trial
    True
    >>> _ = _REGISTRY.pop("my-bilinear")
    """
    _REGISTRY[method.name] = method
    return method


def get_method(name: str | Method) -> Method:
    """Return the registered method called ``name`` (a `Method` is returned as it is).

    Raises
    ------
    UnknownMethodError
        When no method has that name; the message lists the registered ones.
    """
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
    global _builtins_loaded
    if _builtins_loaded:
        return
    with _builtins_lock:
        if _builtins_loaded:
            return
        from dasksr.kernels.interp import INTERPOLATION_METHODS
        from dasksr.models import learned_methods

        for method in (*INTERPOLATION_METHODS, *learned_methods()):
            _REGISTRY.setdefault(method.name, method)
        _builtins_loaded = True
