"""Sentinel-2 product metadata beside band files: the radiometric offsets of a SAFE product.

Since processing baseline 04.00 (January 2022), Sentinel-2 products store ``DN = reflectance *
QUANTIFICATION_VALUE - offset`` with an offset of -1000 per band (``RADIO_ADD_OFFSET`` in a
Level-1C product's ``MTD_MSIL1C.xml``, ``BOA_ADD_OFFSET`` in a Level-2A product's
``MTD_MSIL2A.xml``), so that dark pixels keep their noise instead of clipping at zero. The band
files (``T18SVG_..._B05.jp2`` in ``GRANULE/*/IMG_DATA/``, or ``R20m/`` below it for Level-2A)
carry no trace of it; the product's metadata file, a few folders up, does. `product_radiometry`
finds it and returns each band's ``(scale, offset)`` in rasterio's convention (the stored value
``v`` means ``scale * v + offset``, in reflectance times 10000), which `dasksr.sharpen` applies.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["product_offsets", "product_radiometry"]

#: The metadata file names of Level-1C and Level-2A products, and their offset elements.
_METADATA = {"MTD_MSIL1C.xml": "RADIO_ADD_OFFSET", "MTD_MSIL2A.xml": "BOA_ADD_OFFSET"}
#: How many folders above a band file the product's metadata may lie (IMG_DATA/R20m/.. in L2A).
_LEVELS_UP = 5
#: Band ids of the metadata, in order, when it does not spell out their physical bands.
_BAND_IDS = tuple(
    "B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12".split()  # noqa: SIM905 (the spec's order)
)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def product_offsets(metadata: str | os.PathLike[str]) -> dict[str, tuple[float, float]]:
    """Each band's ``(scale, offset)`` from a Sentinel-2 product's ``MTD_MSIL1C.xml`` or
    ``MTD_MSIL2A.xml``: the scale is ``10000 / QUANTIFICATION_VALUE`` (1 for every product so
    far) and the offset ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` times it; empty when the file
    declares no offsets (baselines before 04.00)."""
    path = Path(metadata)
    element = _METADATA.get(path.name)
    if element is None:
        raise ValueError(f"{path} is not a Sentinel-2 product's metadata file")
    root = ET.parse(path).getroot()
    quantification = 10000.0
    names: dict[str, str] = {}
    offsets: dict[str, float] = {}
    for node in root.iter():
        tag = _local(node.tag)
        if tag in ("QUANTIFICATION_VALUE", "BOA_QUANTIFICATION_VALUE") and node.text:
            quantification = float(node.text)
        elif tag == "Spectral_Information" and "bandId" in node.attrib:
            physical = node.attrib.get("physicalBand", "")
            if physical.startswith("B"):
                number = physical[1:]
                names[node.attrib["bandId"]] = (
                    f"B{number.zfill(2)}" if number.isdigit() else physical
                )
        elif tag == element and node.text and "band_id" in node.attrib:
            offsets[node.attrib["band_id"]] = float(node.text)
    scale = 10000.0 / quantification
    out = {}
    for band_id, offset in offsets.items():
        name = names.get(band_id)
        if name is None and band_id.isdigit() and int(band_id) < len(_BAND_IDS):
            name = _BAND_IDS[int(band_id)]
        if name is not None:
            out[name] = (scale, offset * scale)
    return out


def _metadata_near(path: Path) -> Path | None:
    folder = path.parent
    for _ in range(_LEVELS_UP):
        for name in _METADATA:
            if (folder / name).is_file():
                return folder / name
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def product_radiometry(
    path: str | os.PathLike[str], band: str | None
) -> tuple[float, float] | None:
    """The ``(scale, offset)`` of a Sentinel-2 band file, from its product's metadata file in
    one of the folders above it; None for other files (remote ones included), for a band the
    metadata does not list, or for products without offsets."""
    if band is None or "://" in str(path):
        return None
    metadata = _metadata_near(Path(path).resolve())
    if metadata is None:
        return None
    return product_offsets(metadata).get(band)
