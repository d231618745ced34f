"""Object storage: one set of AWS settings for GDAL and fsspec, and outputs at URLs.

A user sets the standard AWS settings once (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_PROFILE`` and the files of ``~/.aws``). fsspec's
``s3fs`` reads them through botocore; GDAL reads the credentials, region and profile itself but
names the endpoint differently (``AWS_S3_ENDPOINT``, host and port only, with ``AWS_HTTPS`` and
``AWS_VIRTUAL_HOSTING``) and the credentials file ``CPL_AWS_CREDENTIALS_FILE``. `gdal_options`
translates; `storage_options` does the reverse for a user who set GDAL's names only.
docs/object-storage.md describes the settings and how outputs are committed.
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dasksr.errors import DasksrError, OutputError, OutputExistsError

__all__ = ["gdal_options", "remote_fs", "s3_endpoint", "storage_options"]

_YES = ("YES", "TRUE", "ON", "1")


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _profile_endpoint() -> str | None:
    """``endpoint_url`` of the active profile in the AWS config file, as botocore reads it."""
    path = os.environ.get("AWS_CONFIG_FILE") or os.path.join("~", ".aws", "config")
    parser = configparser.ConfigParser()
    try:
        parser.read(os.path.expanduser(path))
    except configparser.Error:
        return None
    name = os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE") or "default"
    section = name if name == "default" else f"profile {name}"
    if not parser.has_section(section):
        return None
    return parser.get(section, "endpoint_url", fallback=None) or None


def s3_endpoint() -> str | None:
    """The S3 endpoint URL the user set, or None for AWS itself.

    Looked up as botocore does (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, the profile's
    ``endpoint_url``), then from GDAL's ``AWS_S3_ENDPOINT`` (``http://`` when ``AWS_HTTPS`` is
    ``NO``).
    """
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return os.environ[name]
    found = _profile_endpoint()
    if found:
        return found
    gdal = os.environ.get("AWS_S3_ENDPOINT")
    if gdal:
        if "://" in gdal:
            return gdal
        https = os.environ.get("AWS_HTTPS", "YES").upper() in _YES
        return ("https://" if https else "http://") + gdal
    return None


def gdal_options() -> dict[str, str]:
    """GDAL configuration options that make ``/vsis3/`` use the settings fsspec uses.

    A GDAL option the user set in the environment is left as it is.
    """
    options: dict[str, str] = {}
    endpoint = s3_endpoint()
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else "https://" + endpoint)
        options["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
        options["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
        # Custom endpoints (MinIO, Ceph, moto, most other providers) serve path-style URLs.
        options["AWS_VIRTUAL_HOSTING"] = "FALSE"
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
    if credentials:
        options["CPL_AWS_CREDENTIALS_FILE"] = credentials
    return {k: v for k, v in options.items() if k not in os.environ}


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url`` that agree with GDAL's: anonymous S3 when
    ``AWS_NO_SIGN_REQUEST`` is ``YES``, and the endpoint when only GDAL's name gives it."""
    if _scheme(url) != "s3":
        return {}
    # Bodies are sent unsigned, as botocore already sends them to an https endpoint: signing a
    # body hashes it on both sides (on a plain-http endpoint, such as a local MinIO, about half
    # of this side's CPU for a 4 MiB chunk: benchmarks/s3_requests.py). The CRC32 checksum
    # botocore adds to each upload, which the server checks, still guards the bytes.
    options: dict[str, Any] = {"config_kwargs": {"s3": {"payload_signing_enabled": False}}}
    if os.environ.get("AWS_NO_SIGN_REQUEST", "").upper() in _YES:
        options["anon"] = True
    if not (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")):
        endpoint = s3_endpoint()  # botocore reads the profile's itself; GDAL's name it does not
        if endpoint and not _profile_endpoint():
            options["endpoint_url"] = endpoint
    return options


def remote_fs(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path in it, with `storage_options`."""
    import fsspec

    return fsspec.core.url_to_fs(url, **storage_options(url))


def remote_failure(shown: str, exc: BaseException) -> OutputError:
    """A one-line `OutputError` for an object-store write or check that failed with ``exc``."""
    name = type(exc).__name__
    text = " ".join(str(exc).split()) or name
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return OutputError(
            f"output {shown!r} cannot be written (no credentials: {text}): set AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return OutputError(
            f"output {shown!r} cannot be written (permission denied: {text}): check the "
            "credentials and the bucket's policy"
        )
    if isinstance(exc, FileNotFoundError) or "NoSuchBucket" in text:
        return OutputError(
            f"output {shown!r} cannot be written (no such bucket: {text}): create the bucket or "
            "check the URL and AWS_ENDPOINT_URL"
        )
    return OutputError(f"output {shown!r} cannot be written ({text}): check the URL and network")


def bucket_of(fs: Any, root: str) -> str:
    """The bucket (or first path element) of a file system path."""
    return root.strip("/").split("/", 1)[0]


def check_remote_output(url: str, *, overwrite: bool, zarr: bool) -> None:
    """Refuse an output URL that exists (unless ``overwrite``) or whose bucket cannot be reached.

    A Zarr store exists when its root metadata document does; any other output when its object
    does. ``overwrite`` replaces only a Zarr store or a TIFF.
    """
    try:
        fs, root = remote_fs(url)
        if _scheme(url) in ("s3", "gs", "gcs", "az", "abfs"):
            fs.info(bucket_of(fs, root))  # no such bucket, no credentials: fails here
        exists = zarr_exists(fs, root) if zarr else bool(fs.exists(root))
        head = b"" if zarr or not exists else fs.cat_file(root, start=0, end=4)
    except DasksrError:
        raise
    except Exception as exc:  # fsspec implementations raise their own types
        raise remote_failure(url, exc) from None
    if not exists:
        return
    if not overwrite:
        raise OutputExistsError(
            f"output {url!r} exists: pass --overwrite (overwrite=True) to replace it"
        )
    if not zarr and head not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        raise OutputError(
            f"output {url!r} is an object that is not a TIFF: --overwrite replaces only a raster "
            "file or a Zarr store; choose another output URL"
        )


#: The root documents whose presence makes a Zarr store: written last when a store is committed.
ROOT_DOCUMENTS = (".zgroup", "zarr.json", ".zarray")


def zarr_exists(fs: Any, root: str) -> bool:
    """Whether a Zarr store is committed at ``root``: one of its root documents is there."""
    return any(fs.exists(f"{root}/{doc}") for doc in ROOT_DOCUMENTS)


def upload(local: Path, url: str, *, shown: str) -> None:
    """Upload the finished file ``local`` to ``url`` in one object write.

    An object store makes an object visible only once its upload is complete (multipart uploads
    included), so the URL never shows a partial file, and a file there before is replaced whole.
    """
    try:
        fs, root = remote_fs(url)
        fs.put_file(str(local), root)
    except Exception as exc:
        raise remote_failure(shown, exc) from None
