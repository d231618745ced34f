"""Where an input is and what it is: local or remote, Zarr or GDAL, and its content stamp.

A stamp (size, times, ETag) or a fingerprint (a digest of a Zarr array's file listing) tells a
source's content apart without reading it: the readers take one at open and check it again.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path
from typing import Any

from dasksr.errors import InputError

__all__ = ["gdal_path", "is_remote", "is_url", "is_zarr_path"]


def is_zarr_path(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a Zarr store (by extension or by its metadata files)."""
    p = Path(path)
    if p.suffix.lower() == ".zarr":
        return True
    return p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zgroup", ".zarray"))


#: ``scheme://`` at the start of a URL (a Windows drive letter has one character before ``:``).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
#: URL schemes that GDAL reads through its virtual file systems, and the prefix of each.
_GDAL_SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for a URL (``https://``, ``s3://``, ``memory://``, ...) or a GDAL ``/vsi...`` path."""
    text = os.fspath(path)
    return isinstance(text, str) and (bool(_URL.match(text)) or text.startswith("/vsi"))


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for a URL with a scheme (``s3://``, ``memory://``, ``file://``): an output written
    through fsspec, not a local path."""
    text = os.fspath(path)
    return isinstance(text, str) and bool(_URL.match(text))


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if _URL.match(url) else ""


def _is_remote_zarr(url: str) -> bool:
    """A URL names a Zarr store by its ``.zarr`` suffix, or by a scheme GDAL cannot read."""
    if url.startswith("/vsi"):
        return False
    return url.rstrip("/").lower().endswith(".zarr") or _scheme(url) not in _GDAL_SCHEMES


def gdal_path(url: str) -> str:
    """The GDAL name of a raster URL: ``https://h/f.tif`` -> ``/vsicurl/https://h/f.tif``,
    ``s3://bucket/key`` -> ``/vsis3/bucket/key``; a ``/vsi...`` path is returned as it is."""
    scheme = _scheme(url)
    if scheme in ("http", "https"):
        return "/vsicurl/" + url
    if scheme in _GDAL_SCHEMES:
        return _GDAL_SCHEMES[scheme] + url.split("://", 1)[1]
    return url


def _file_stamp(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """What tells a file's content apart without reading it: modification time, size, inode."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _remote_stamp(url: str) -> tuple[Any, ...] | None:
    """What tells a remote file's content apart without reading it: size, ETag, Last-Modified.

    ``http(s)://`` (also behind ``/vsicurl/``) is asked with a HEAD request; other URLs with
    fsspec's ``info`` where fsspec has the file system (``s3fs`` for ``s3://``). None when
    nothing can tell (another ``/vsi...`` path, or no fsspec file system for the scheme).
    Raises `InputError` when the server says the file is not there.
    """
    target = url[len("/vsicurl/") :] if url.startswith("/vsicurl/") else url
    if target.startswith("/vsis3/"):
        target = "s3://" + target[len("/vsis3/") :]
    scheme = _scheme(target)
    if scheme in ("http", "https"):
        return _http_stamp(target, shown=url)
    if not scheme:
        return None
    try:
        import fsspec

        fs, where = fsspec.core.url_to_fs(target, **_storage_options(target))
    except (ImportError, ValueError):  # no fsspec file system for this scheme: GDAL alone
        return None
    try:
        info = fs.info(where)
    except FileNotFoundError:
        raise InputError(f"input {url!r} does not exist: check the URL") from None
    except Exception as exc:  # network, refused HEAD: GDAL may still read it
        if type(exc).__name__ == "NoCredentialsError":  # GDAL cannot either
            raise InputError(
                f"input {url!r} cannot be read (no credentials): set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or AWS_NO_SIGN_REQUEST=YES for a public "
                "bucket"
            ) from None
        warnings.warn(f"cannot stamp {url!r} ({_reason(exc)})", RuntimeWarning, stacklevel=3)
        return None
    return _info_stamp(info)


def _info_stamp(info: dict[str, Any]) -> tuple[Any, ...]:
    """Size, ETag and modification time from an fsspec ``info`` entry, as far as it gives them."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    when = (
        info.get("LastModified") or info.get("last_modified") or info.get("mtime")
        or info.get("updated") or info.get("created")
    )  # fmt: skip
    return (
        info.get("size"),
        None if etag is None else str(etag),
        None if when is None else str(when),
    )


def _http_stamp(url: str, *, shown: str) -> tuple[Any, ...] | None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
            headers = response.headers
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise InputError(
                f"input {shown!r} cannot be fetched (HTTP {exc.code} {exc.reason}): check the URL"
            ) from None
        # Servers may refuse HEAD (403/405 on presigned URLs) and still serve GET: GDAL may
        # still read it, unstamped.
        warnings.warn(
            f"cannot stamp {shown!r} (HTTP {exc.code} {exc.reason})", RuntimeWarning, stacklevel=4
        )
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise InputError(
            f"input {shown!r} cannot be fetched ({_reason(reason) if isinstance(reason, BaseException) else reason}): "
            "check the URL and the network"
        ) from None
    size = headers.get("Content-Length")
    return (
        None if size is None else int(size),
        headers.get("ETag"),
        headers.get("Last-Modified"),
    )


#: Seconds a HEAD request to stamp a remote file may take.
_HTTP_TIMEOUT = 30


def _storage_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url`` that agree with GDAL's (`dasksr.io.objectstore.storage_options`)."""
    from dasksr.io.objectstore import storage_options

    return storage_options(url)


def _remote_fingerprint(url: str, variable: str) -> str:
    """A digest of a remote Zarr array's files as fsspec lists them (names, sizes, ETags, times).

    A file system that cannot list (plain HTTP) gives the array's metadata document and what
    HTTP says of it (size, ETag, Last-Modified) instead: there a change of chunk data alone,
    metadata untouched, is not seen.
    """
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **_storage_options(url))
    folder = f"{root.rstrip('/')}/{variable}"
    items: list[Any] = []
    try:
        found = fs.find(folder, detail=True)
        items = sorted((str(k)[len(folder) :], _info_stamp(v)) for k, v in found.items())
    except Exception:  # no listing: the metadata document below
        items = []
    if not items:
        for name in ("zarr.json", ".zarray"):
            try:
                document = fs.cat_file(f"{folder}/{name}")
                info = fs.info(f"{folder}/{name}")
            except (FileNotFoundError, OSError):
                continue
            items.append((name, hashlib.sha256(document).hexdigest(), _info_stamp(info)))
    return hashlib.sha256(repr(items).encode()).hexdigest()[:32]


def _reason(exc: BaseException) -> str:
    """The most telling line of a (chained) GDAL error: rasterio's own often says 'see previous'."""
    messages: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(messages) < 8:
        text = " ".join(str(seen).split())
        if text:
            messages.append(text)
        seen = seen.__cause__ or seen.__context__
    useful = [m for m in messages if "see previous exception" not in m.lower()]
    return (useful or messages or [type(exc).__name__])[0]
