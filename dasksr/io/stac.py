"""STAC items as inputs: the assets a user names, read as one ``(band, y, x)`` raster.

An item is read with pystac, from a path or a URL; its assets' hrefs are resolved against the
item's own location, so an item saved beside its files, or one on a web server or a bucket with
relative hrefs, both work. Each asset is opened with `dasksr.io.open_raster` (remote COGs through
GDAL's ``/vsicurl/`` and ``/vsis3/``, read by windows). A band is chosen by its asset's key, or
by its name or common name (STAC 1.0's ``eo:bands``, STAC 1.1's ``bands`` with
``eo:common_name``); the chosen bands must share one grid.

Rasters that others loaded from STAC, odc-stac's ``load`` and stackstac's ``stack``, are made
readable for the API by `georeferenced`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dasksr.errors import InputError, InvalidArgumentError
from dasksr.io.paths import _reason, _scheme, _storage_options, is_remote

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["StacBand", "georeferenced", "is_stac_item", "open_item", "select_bands"]

#: Roles and media types of assets that hold no pixels to upscale (previews, metadata).
_NOT_PIXELS = re.compile(r"json|xml|html|text/|image/png|image/jpeg")
_NOT_PIXEL_ROLES = {"thumbnail", "overview", "metadata"}


@dataclass(frozen=True)
class StacBand:
    """One band chosen from an item: its asset's key and absolute href, its 1-based index in the
    asset's file (None: the file's only band, or all of its bands), and the name it takes."""

    asset: str
    href: str
    index: int | None
    name: str
    #: The band's nodata value as the item gives it (``raster:bands``, ``nodata``), or None.
    nodata: float | None = None


def is_stac_item(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a JSON document (``.json``, ``.geojson``), as a STAC item is."""
    text = os.fspath(path).split("?", 1)[0].rstrip("/").lower()
    return text.endswith((".json", ".geojson"))


def read_item(href: str) -> Any:
    """The `pystac.Item` at ``href`` (a path, an ``http(s)://`` URL or any fsspec URL).

    Raises `InputError` when it cannot be read or is not an item.
    """
    try:
        import pystac
    except ImportError:
        raise InvalidArgumentError(
            f"input {href!r} is a STAC item: reading one needs pystac: pip install 'dasksr[stac]'"
        ) from None
    local = not is_remote(href)
    if local and not Path(href).exists():
        raise InputError(f"input {href!r} does not exist: check the path")
    where = str(Path(href).absolute()) if local else href
    try:
        document = json.loads(_read_text(where, local=local))
    except InputError:
        raise
    except Exception as exc:  # json, OSError, urllib and fsspec errors
        raise InputError(f"input {href!r} is not a readable STAC item ({_reason(exc)})") from None
    kind = document.get("type") if isinstance(document, dict) else None
    if kind != "Feature" or "assets" not in document:
        what = f"a STAC {kind}" if kind else "not a STAC item"
        raise InputError(
            f"input {href!r} is {what}, not an item: save one item of a search "
            "(item.save_object(dest_href='item.json')) and pass that"
        )
    try:
        return pystac.Item.from_dict(document, href=where, preserve_dict=False)
    except Exception as exc:  # pystac's own errors for a malformed item
        raise InputError(f"input {href!r} is not a valid STAC item ({_reason(exc)})") from None


def _read_text(where: str, *, local: bool) -> str:
    if local:
        return Path(where).read_text(encoding="utf-8")
    if _scheme(where) in ("http", "https"):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(where, timeout=30) as response:
                return str(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise InputError(
                f"input {where!r} cannot be fetched (HTTP {exc.code} {exc.reason}): check the URL"
            ) from None
    import fsspec

    with fsspec.open(where, "rt", encoding="utf-8", **_storage_options(where)) as f:
        return str(f.read())


def _asset_bands(asset: Any) -> list[dict[str, Any]]:
    """The band records of an asset: STAC 1.1's ``bands``, else 1.0's ``eo:bands``."""
    fields = asset.extra_fields
    for key in ("bands", "eo:bands"):
        found = fields.get(key)
        if isinstance(found, list) and all(isinstance(b, dict) for b in found):
            return found
    return []


def _band_words(band: dict[str, Any]) -> list[str]:
    """The words that name a band record: its name and its common name (1.0 or 1.1 spelling)."""
    words = [band.get("name"), band.get("common_name"), band.get("eo:common_name")]
    return [str(w) for w in words if w]


def _band_nodata(asset: Any, position: int) -> float | None:
    """A band's nodata as the item says it: ``raster:bands`` (1.0) or ``bands``' ``nodata``."""
    for key in ("bands", "raster:bands"):
        records = asset.extra_fields.get(key)
        if isinstance(records, list) and position < len(records):
            record = records[position]
            if isinstance(record, dict) and isinstance(record.get("nodata"), (int, float)):
                return float(record["nodata"])
    value = asset.extra_fields.get("nodata")
    return float(value) if isinstance(value, (int, float)) else None


def _holds_pixels(asset: Any) -> bool:
    roles = set(asset.roles or ())
    return not (roles & _NOT_PIXEL_ROLES) and not _NOT_PIXELS.search(asset.media_type or "")


def _available(item: Any) -> str:
    """The keys and band names of an item's pixel assets, as an error message lists them."""
    keys, names = [], []
    for key, asset in item.assets.items():
        if not _holds_pixels(asset):
            continue
        keys.append(key)
        for band in _asset_bands(asset):
            names += [w for w in _band_words(band) if w not in names and w not in item.assets]
    listed = f"asset keys: {', '.join(keys) or 'none'}"
    return f"{listed}; band names: {', '.join(names)}" if names else listed


def select_bands(item: Any, words: list[str], *, flag: str = "--assets") -> list[StacBand]:
    """The bands of ``item`` that ``words`` name, in that order.

    A word is an asset key (all of the asset's bands), else the name or common name of one band.
    Where several assets have a band of that name, a single-band asset is taken over a band of a
    multi-band one (``red`` is the red asset, not the first band of a true-colour one); a name
    still shared (Sentinel-2's three ``rededge`` bands) must be chosen by key.

    Raises `InvalidArgumentError`, naming ``flag``, for an unknown or ambiguous word.
    """
    chosen: list[StacBand] = []
    for word in words:
        if word in item.assets:
            asset = item.assets[word]
            records = _asset_bands(asset)
            if len(records) <= 1:
                chosen.append(StacBand(word, _href(asset), None, word, _band_nodata(asset, 0)))
            else:
                for i, record in enumerate(records):
                    name = (_band_words(record) or [f"{word}{i + 1}"])[0]
                    chosen.append(StacBand(word, _href(asset), i + 1, name, _band_nodata(asset, i)))
            continue
        matches = []  # (asset key, band position, the asset's band count)
        for key, asset in item.assets.items():
            records = _asset_bands(asset) if _holds_pixels(asset) else []
            for i, record in enumerate(records):
                if word.lower() in (w.lower() for w in _band_words(record)):
                    matches.append((key, i, len(records)))
        single = [m for m in matches if m[2] == 1]
        found = single if single else matches
        if not found:
            raise InvalidArgumentError(
                f"{flag}: {word!r} is not an asset or band of item {item.id!r}: choose from "
                f"{_available(item)}"
            )
        if len(found) > 1:
            keys = ", ".join(m[0] for m in found)
            raise InvalidArgumentError(
                f"{flag}: {word!r} names a band of several assets ({keys}): choose them by key"
            )
        key, i, count = found[0]
        asset = item.assets[key]
        index = None if count == 1 else i + 1
        chosen.append(StacBand(key, _href(asset), index, word, _band_nodata(asset, i)))
    return chosen


def _href(asset: Any) -> str:
    href = asset.get_absolute_href() or asset.href
    # pystac resolves a relative href against a local item as a path; a file:// URL is one too.
    return href[len("file://") :] if href.startswith("file://") else href


def sensor_name(band: StacBand, item: Any) -> str | None:
    """The band's name as its sensor's products name it (Sentinel-2's ``B05``, ``B8A``): the
    band record's name when it is one, else the one in the file's name (``.../B05.tif``)."""
    pattern = re.compile(r"(?<![A-Za-z0-9])B(\d{1,2}|8A)(?![A-Za-z0-9])", flags=re.I)
    records = _asset_bands(item.assets[band.asset])
    position = (band.index or 1) - 1
    name = records[position].get("name") if position < len(records) else None
    if isinstance(name, str) and pattern.fullmatch(name):
        return name.upper()
    found = pattern.findall(Path(band.href.split("?", 1)[0]).stem)
    return f"B{found[-1].upper()}" if found else None


def open_item(
    href: str,
    assets: str | list[str] | None,
    *,
    chunks: Any = None,
    flag: str = "--assets",
    sensor_names: bool = False,
    purpose: str = "",
    nodata: float | None = None,
) -> xr.DataArray:
    """The ``assets`` of the STAC item at ``href``, stacked as one lazy ``(band, y, x)`` raster.

    Parameters
    ----------
    href : str
        The item: a path or a URL.
    assets : str or list of str
        Asset keys or band (common) names, comma-separated or as a list, in the output's order.
    chunks : optional
        As `dasksr.open_raster`.
    flag : str
        The option that gave ``assets``, for messages.
    sensor_names : bool
        Name the bands as their sensor does (``B05``) where the item tells it (`sensor_name`),
        rather than by the words given: `dasksr.sharpen` tells Sentinel-2's bands by those names.
    purpose : str
        What a user with bands on several grids can do instead, for the message.
    nodata : float, optional
        The nodata value of every band, which the caller will use; otherwise the bands' own
        (their files', else the item's ``raster:bands``) must agree.

    Returns
    -------
    xarray.DataArray
        The bands, with the ``band`` coordinate and the descriptions (``long_name``) set to their
        names.

    Raises
    ------
    InvalidArgumentError
        When no asset is named, a word names none or several, or the bands are not on one grid.
    InputError
        When the item or one of its assets cannot be read.
    """
    import xarray as xr

    from dasksr.io.read import open_raster

    words = assets.split(",") if isinstance(assets, str) else list(assets or [])
    words = [w.strip() for w in words if w.strip()]
    item = read_item(href)
    if not words:
        raise InvalidArgumentError(
            f"input {href!r} is a STAC item: choose its bands with {flag}, e.g. {flag} red,green,"
            f"blue ({_available(item)})"
        )
    bands = select_bands(item, words, flag=flag)
    opened: dict[str, xr.DataArray] = {}
    planes = []
    for band in bands:
        if band.href not in opened:
            opened[band.href] = open_raster(band.href, chunks=chunks)
        data = opened[band.href]
        if band.index is not None:
            if band.index > data.sizes["band"]:
                raise InputError(
                    f"asset {band.asset!r} of item {item.id!r} ({band.href}) has "
                    f"{data.sizes['band']} band(s), not the {band.index} its record lists"
                )
            data = data.isel(band=[band.index - 1])
        if data.rio.nodata is None and band.nodata is not None:
            data = data.rio.write_nodata(band.nodata, encoded=False)
        planes.append((band, data))
    _check_one_grid(planes, purpose)
    found = {float(d.rio.nodata) for _, d in planes if d.rio.nodata is not None}
    if nodata is not None:
        found = {float(nodata)}
    if len(found) > 1:
        raise InvalidArgumentError(
            f"the assets {', '.join(dict.fromkeys(b.asset for b, _ in planes))} have different "
            f"nodata values ({', '.join(map(str, sorted(found)))}): give the one to use "
            f"({'--guide-nodata' if 'guide' in flag else '--nodata'})"
        )
    names = [
        (sensor_name(b, item) if sensor_names else None) or b.name
        for b, d in planes
        for _ in d.band
    ]
    stacked = xr.concat([d for _, d in planes], dim="band", combine_attrs="override")
    stacked = stacked.assign_coords(band=names)
    stacked.attrs = {k: v for k, v in stacked.attrs.items() if k not in ("scales", "offsets")}
    stacked.attrs["long_name"] = tuple(names)
    # One nodata for the raster: that of the bands that have one (Sentinel-2's 0 for every band).
    return stacked.rio.write_nodata(found.pop(), encoded=False) if found else stacked


def _check_one_grid(planes: list[tuple[StacBand, xr.DataArray]], purpose: str) -> None:
    """Raise `InvalidArgumentError` naming two assets whose grids differ."""
    from dasksr.api import raster_transform
    from dasksr.grid import format_number

    def grid(data: xr.DataArray) -> tuple[Any, ...]:
        transform = raster_transform(data)
        return (data.shape[-2:], data.rio.crs, None if transform is None else tuple(transform)[:6])

    def shown(band: StacBand, data: xr.DataArray) -> str:
        transform = raster_transform(data)
        size = "" if transform is None else f", pixel size {format_number(abs(transform.a))}"
        return f"{band.asset} ({data.shape[-1]} x {data.shape[-2]} px{size})"

    first, data = planes[0]
    for band, other in planes[1:]:
        if grid(other) != grid(data) or other.dtype != data.dtype:
            what = "dtypes" if grid(other) == grid(data) else "grids"
            raise InvalidArgumentError(
                f"assets {shown(first, data)} and {shown(band, other)} are on different {what}: "
                f"{purpose or 'choose assets of one grid'}"
            )


def georeferenced(data: Any) -> Any:
    """``data`` with its georeference where rioxarray and `dasksr.upscale` read it.

    odc-stac's ``load`` already puts it there (a ``spatial_ref`` coordinate, pixel-centre
    ``x``/``y``): such data is returned as it is. stackstac's ``stack`` keeps it in attributes
    (``crs``, ``transform``) and an ``epsg`` coordinate, with ``x``/``y`` at the pixels'
    top-left corners by default: the CRS and transform are written on ``spatial_ref`` and the
    coordinates moved to the pixel centres that the transform gives. Anything else is returned
    as it is.
    """
    import xarray as xr

    if isinstance(data, xr.Dataset):
        if "spatial_ref" in data.coords or not _stackstac_like(data):
            return data
        return data.map(georeferenced, keep_attrs=True)
    if not isinstance(data, xr.DataArray) or not _stackstac_like(data):
        return data
    import rioxarray  # noqa: F401  (the rio accessor)
    from affine import Affine

    from dasksr.grid import pixel_centres

    a, b, c, d, e, f = tuple(data.attrs["transform"])[:6]
    crs = data.attrs.get("crs")
    if crs is None and "epsg" in data.coords and data["epsg"].size == 1:
        crs = f"EPSG:{int(data['epsg'].item())}"
    out = data.copy()
    # stackstac's own copies of the grid, which an upscale would leave stale.
    out.attrs = {k: v for k, v in data.attrs.items() if k not in ("transform", "crs", "resolution")}
    if b == 0 and d == 0 and "x" in data.coords and "y" in data.coords:
        # The attribute is the whole stack's: a selection keeps it unchanged, so the origin is
        # taken from the coordinates, at the corners or the centres (xy_coords='center').
        c, f = (_edge(data["x"].values, c, a), _edge(data["y"].values, f, e))
        out = out.assign_coords(
            x=pixel_centres(c, a, data.sizes["x"]), y=pixel_centres(f, e, data.sizes["y"])
        )
    transform = Affine(a, b, c, d, e, f)
    out = out.rio.write_transform(transform)
    if crs is not None:
        out = out.rio.write_crs(crs)
    return out


def _edge(coords: Any, origin: float, step: float) -> float:
    """The first pixel's edge from coordinates at pixel corners or centres of a grid whose
    pixels start at ``origin`` and are ``step`` wide."""
    if not len(coords):
        return origin
    first = float(coords[0])
    half = ((first - origin) / step) % 1.0
    return first - (0.5 * step if abs(half - 0.5) < 0.25 else 0.0)


def _stackstac_like(data: Any) -> bool:
    """A transform in the attributes, x/y dims, and no grid mapping coordinate."""
    return (
        "transform" in data.attrs
        and len(tuple(data.attrs["transform"])) >= 6
        and "x" in data.dims
        and "y" in data.dims
        and "spatial_ref" not in data.coords
    )
