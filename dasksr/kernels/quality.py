"""Reading masks as products ship them: which pixels of a quality layer are invalid (pure NumPy).

A `QualityRule` says which values of a quality layer mark an invalid pixel: whole values (the
classes of a classification such as Sentinel-2's SCL), single bits (Landsat Collection 2's
QA_PIXEL) and multi-bit confidence fields at or above a level (Landsat Collection 1's BQA).
`quality_rule` names the rules products need; `decode_quality` applies one to an array.

The named rules (`RULES`):

- ``'nonzero'``: any non-zero value (True, 1, 255) is invalid: plain boolean or 0/1 masks.
- ``'scl'``: Sentinel-2 L2A scene classification: 0 no data, 1 saturated or defective,
  3 cloud shadow, 8 cloud (medium probability), 9 cloud (high probability), 10 thin cirrus.
  Vegetation, bare soil, water, unclassified, dark areas and snow (2, 4-7, 11) are valid.
- ``'qa_pixel'``: Landsat Collection 2 QA_PIXEL: bit 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud,
  4 cloud shadow. Snow (5), clear (6) and water (7) are valid.
- ``'bqa'``: Landsat 8 Collection 1 BQA: bit 0 fill, bit 4 cloud, and the two-bit confidences of
  cloud shadow (bits 7-8), cirrus (11-12) and cloud (5-6) when high (3).

Any other layer: ``'classes:0,3,8'`` (these values are invalid) or ``'bits:0,3,4'`` (any of
these bits set is invalid), or a `QualityRule` of one's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dasksr.errors import InvalidArgumentError

__all__ = ["RULES", "QualityRule", "decode_quality", "quality_rule"]


@dataclass(frozen=True)
class QualityRule:
    """Which values of a quality layer mark invalid pixels.

    Attributes
    ----------
    name : str
        How messages and attributes name the rule.
    classes : tuple of int
        Values that are invalid wherever they occur.
    bits : tuple of int
        Bit positions (0 = least significant) of which any one set makes a pixel invalid.
    fields : tuple of (int, int, int)
        ``(first_bit, width, level)``: the ``width``-bit field starting at ``first_bit`` at or
        above ``level`` makes a pixel invalid.
    nonzero : bool
        Any non-zero value is invalid (the other attributes are then unused).
    """

    name: str
    classes: tuple[int, ...] = ()
    bits: tuple[int, ...] = ()
    fields: tuple[tuple[int, int, int], ...] = ()
    nonzero: bool = False


#: The named rules of `quality_rule`.
RULES: dict[str, QualityRule] = {
    "nonzero": QualityRule("nonzero", nonzero=True),
    "scl": QualityRule("scl", classes=(0, 1, 3, 8, 9, 10)),
    "qa_pixel": QualityRule("qa_pixel", bits=(0, 1, 2, 3, 4)),
    "bqa": QualityRule("bqa", bits=(0, 4), fields=((5, 2, 3), (7, 2, 3), (11, 2, 3))),
}


def quality_rule(rule: str | QualityRule) -> QualityRule:
    """The `QualityRule` that ``rule`` names (see the module notes); a rule is returned as it is.

    Examples
    --------
    >>> quality_rule("classes:3,8,9").classes
    (3, 8, 9)
    >>> quality_rule("QA-PIXEL").bits
    (0, 1, 2, 3, 4)
    """
    if isinstance(rule, QualityRule):
        return rule
    text = str(rule).strip().lower().replace("-", "_")
    if text in RULES:
        return RULES[text]
    kind, _, values = text.partition(":")
    if kind in ("classes", "bits") and values:
        try:
            numbers = tuple(int(v) for v in values.split(","))
        except ValueError:
            numbers = ()
        if numbers and (kind == "classes" or all(0 <= b < 64 for b in numbers)):
            if kind == "classes":
                return QualityRule(text, classes=numbers)
            return QualityRule(text, bits=numbers)
    raise InvalidArgumentError(
        f"mask rule {rule!r} is not known: use one of {', '.join(RULES)}, 'classes:V,V,...' "
        "(these values are invalid) or 'bits:B,B,...' (any of these bits set is invalid)"
    )


def decode_quality(layer: Any, rule: QualityRule) -> np.ndarray:
    """True where ``layer``'s value is invalid under ``rule``.

    Examples
    --------
    >>> scl = np.array([[4, 9], [3, 0]], dtype=np.uint8)
    >>> decode_quality(scl, quality_rule("scl")).tolist()
    [[False, True], [True, True]]
    >>> qa = np.array([21824, 22280, 55052], dtype=np.uint16)  # clear, cloud, cloud + cirrus
    >>> decode_quality(qa, quality_rule("qa_pixel")).tolist()
    [False, True, True]
    """
    values = np.asarray(layer)
    if rule.nonzero or values.dtype == bool:
        return values != 0
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        values = np.where(finite, values, 0).astype(np.int64)
    else:
        finite = None
        values = values.astype(np.int64)
    out = np.isin(values, rule.classes) if rule.classes else np.zeros(values.shape, bool)
    if rule.bits:
        out |= (values & sum(1 << b for b in rule.bits)) != 0
    for first, width, level in rule.fields:
        out |= ((values >> first) & ((1 << width) - 1)) >= level
    if finite is not None:
        out |= ~finite  # a NaN in a quality layer says nothing is known there
    return out
