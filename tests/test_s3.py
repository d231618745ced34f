"""Object storage for real: a moto S3 server on 127.0.0.1, reached through s3fs and GDAL's /vsis3/.

The server is started by the tests (``moto.server.ThreadedMotoServer``); the user's settings are
the standard AWS ones only (``AWS_ENDPOINT_URL``, keys, region): dasksr gives GDAL its own names.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr

import dasksr
from dasksr.cli import main
from dasksr.io import clear_cache
from dasksr.io.objectstore import gdal_options, s3_endpoint, storage_options

pytest.importorskip("s3fs", reason="the S3 tests need the test extra (s3fs)")
moto_server = pytest.importorskip("moto.server", reason="the S3 tests need moto[server]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on a free local port, for this module's tests."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def aws_settings(endpoint: str, *, credentials: bool = True) -> dict[str, str]:
    """The standard AWS settings of a user of this endpoint, and nothing from ~/.aws."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookups
    }
    if credentials:
        env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return env


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    import s3fs

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_NO_SIGN_REQUEST",
                 "AWS_ENDPOINT_URL_S3"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # its clients hold the credentials they found
    clear_cache()


@pytest.fixture
def bucket(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket on the server, with the AWS settings of its user; its name."""
    import s3fs

    _use(monkeypatch, aws_settings(endpoint))
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    return name


def s3() -> Any:
    import s3fs

    return s3fs.S3FileSystem()


def test_gdal_and_fsspec_take_one_endpoint_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, aws_settings("http://127.0.0.1:9000"))
    assert gdal_options() == {
        "AWS_S3_ENDPOINT": "127.0.0.1:9000",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "CPL_AWS_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }
    options = storage_options("s3://b/x.zarr")
    # Bodies go unsigned (as to https endpoints), guarded by botocore's CRC32 checksum.
    assert options.pop("config_kwargs") == {"s3": {"payload_signing_enabled": False}}
    assert options == {}  # botocore reads AWS_ENDPOINT_URL itself
    # A GDAL user's own names reach fsspec.
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_S3_ENDPOINT", "minio.example:9000")
    monkeypatch.setenv("AWS_HTTPS", "NO")
    assert _endpoint(storage_options("s3://b/x.zarr")) == {
        "endpoint_url": "http://minio.example:9000"
    }
    assert "AWS_S3_ENDPOINT" not in gdal_options()  # set by the user: left alone
    # A profile's endpoint_url (botocore reads it; GDAL is told).
    monkeypatch.delenv("AWS_S3_ENDPOINT")
    monkeypatch.delenv("AWS_HTTPS")
    config = tmp_path / "config"
    config.write_text("[profile lab]\nendpoint_url = https://s3.lab.example\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "lab")
    assert s3_endpoint() == "https://s3.lab.example"
    assert gdal_options()["AWS_S3_ENDPOINT"] == "s3.lab.example"
    assert gdal_options()["AWS_HTTPS"] == "YES"
    assert _endpoint(storage_options("s3://b/x.zarr")) == {}
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
    assert _endpoint(storage_options("s3://b/x.zarr")) == {"anon": True}


def _endpoint(options: dict[str, Any]) -> dict[str, Any]:
    """`storage_options` without the upload settings that every S3 URL gets."""
    return {k: v for k, v in options.items() if k != "config_kwargs"}


def test_a_cog_on_s3_reads_as_the_local_file(
    bucket: str, tmp_path: Path, make_geotiff: Any
) -> None:
    raster = make_geotiff(tmp_path / "scene.tif", height=96, width=80, tile=32, cog=True)
    s3().put_file(str(raster.path), f"{bucket}/scene.tif")
    remote = dasksr.open_raster(f"s3://{bucket}/scene.tif", chunks=32)
    local = dasksr.open_raster(raster.path, chunks=32)
    assert remote.rio.crs == local.rio.crs and remote.rio.transform() == local.rio.transform()
    np.testing.assert_array_equal(remote.values, local.values)
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(
            dasksr.upscale(remote, scale=2).values, dasksr.upscale(local, scale=2).values
        )


def _cli(*args: str) -> list[str]:
    return ["upscale", *args, "--chunks", "128", "--scheduler", "threads", "--no-progress"]


def test_zarr_written_to_s3_equals_the_local_store_and_gdal_sees_nodata(
    bucket: str, tmp_path: Path, uint16_tif: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{bucket}/out.zarr"
    assert main(_cli(str(uint16_tif.path), url)) == 0
    assert main(_cli(str(uint16_tif.path), str(tmp_path / "local.zarr"))) == 0
    assert capsys.readouterr().err == ""
    remote = dasksr.open_raster(url)
    local = dasksr.open_raster(tmp_path / "local.zarr")
    assert remote.dtype == np.uint16 and remote.rio.nodata == 0
    xr.testing.assert_identical(remote.compute(), local.compute())
    assert not s3().exists(f"{bucket}/out.zarr.partial")
    # GDAL reads the store through /vsis3/ with the same settings, nodata included.
    with (
        rasterio.Env(**gdal_options()),
        rasterio.open(f'ZARR:"/vsis3/{bucket}/out.zarr":/data:0') as src,
    ):
        assert src.nodata == 0
        np.testing.assert_array_equal(src.read(1), local.values[0])
    with rasterio.open(f'ZARR:"{tmp_path / "local.zarr"}":/data:0') as src:
        assert src.nodata == 0 and src.crs.to_epsg() == 32633


class Interrupted(RuntimeError):
    pass


def _fail_at(
    block: np.ndarray, *, fail: tuple[int, ...] | None, calls: list[int], block_info: Any = None
) -> Any:
    calls.append(1)
    if fail is not None and tuple(block_info[0]["chunk-location"]) == fail:
        raise Interrupted("the job stops here")
    return block


def job(
    source: Path, *, fail: tuple[int, ...] | None, method: str = "nearest", calls: Any = None
) -> xr.DataArray:
    """An upscaling whose block ``fail`` raises; the graph is the same job whatever ``fail`` is."""
    fine = dasksr.upscale(dasksr.open_raster(source, chunks=32), scale=2, method=method)
    pixels = fine.data.map_blocks(
        partial(_fail_at, fail=fail, calls=[] if calls is None else calls),
        name=f"job-{method}",
        dtype=fine.dtype,
        meta=fine.data._meta,
    )
    return fine.copy(data=pixels)


def test_an_interrupted_s3_job_shows_nothing_and_resumes(
    bucket: str, uint16_tif: Any, tmp_path: Path
) -> None:
    url = f"s3://{bucket}/out.zarr"
    fs = s3()
    with dask.config.set(scheduler="synchronous"):  # blocks in order: some are done before (0,1,1)
        with pytest.raises(Interrupted):
            dasksr.to_zarr(job(uint16_tif.path, fail=(0, 1, 1)), url)
        fs.invalidate_cache()
        markers = [
            p for p in fs.find(f"{bucket}/out.zarr.partial/.dasksr-progress") if "job.json" not in p
        ]
        assert 0 < len(markers) < 9
        with pytest.raises(Exception, match=r"not a readable Zarr store|does not exist"):
            dasksr.open_raster(url)  # chunks are there, metadata is not: no store yet
        assert not fs.exists(f"{bucket}/out.zarr/.zgroup")
        # The rerun writes only the blocks that are missing.
        calls: list[Any] = []
        assert dasksr.to_zarr(job(uint16_tif.path, fail=None, calls=calls), url) == url
        dasksr.to_zarr(job(uint16_tif.path, fail=None), tmp_path / "clean.zarr")
    assert len(calls) == 9 - len(markers)
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/out.zarr.partial")
    np.testing.assert_array_equal(
        dasksr.open_raster(url).values, dasksr.open_raster(tmp_path / "clean.zarr").values
    )


def test_overwrite_keeps_the_old_store_until_the_new_one_is_complete(
    bucket: str, uint16_tif: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{bucket}/out.zarr"
    with dask.config.set(scheduler="synchronous"):
        dasksr.to_zarr(job(uint16_tif.path, fail=None), url)
        old = dasksr.open_raster(url).values
        # Refused without overwrite, on the command line too: one line, status 2.
        assert main(_cli(str(uint16_tif.path), url)) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "exists: pass --overwrite" in err
        with pytest.raises(Interrupted):
            dasksr.to_zarr(
                job(uint16_tif.path, fail=(0, 2, 2), method="bicubic"), url, overwrite=True
            )
        np.testing.assert_array_equal(dasksr.open_raster(url).values, old)  # still whole
        dasksr.to_zarr(job(uint16_tif.path, fail=None, method="bicubic"), url, overwrite=True)
        new = dasksr.upscale(
            dasksr.open_raster(uint16_tif.path, chunks=32), scale=2, method="bicubic"
        )
        got = dasksr.open_raster(url)
        np.testing.assert_array_equal(got.values, new.values)
    assert not np.array_equal(old, got.values)
    fs = s3()
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/out.zarr.partial")


def test_an_s3_input_is_never_its_own_output(
    bucket: str, uint16_tif: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Even with --overwrite: the job would delete the store it reads (or write into it)."""
    url = f"s3://{bucket}/in.zarr"
    assert main(_cli(str(uint16_tif.path), url)) == 0
    before = dasksr.open_raster(url).values
    for output in (url, f"{url}/", f"S3://{bucket}/in.zarr", f"{url}/inner.zarr"):
        assert main(_cli(url, output, "--overwrite")) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "is the input" in err, (output, err)
    s3().invalidate_cache()
    np.testing.assert_array_equal(dasksr.open_raster(url).values, before)


@pytest.mark.parametrize("output", ["out.zarr", "out.tif"])
def test_a_missing_bucket_is_one_line(
    bucket: str, uint16_tif: Any, capsys: pytest.CaptureFixture[str], output: str
) -> None:
    assert main(_cli(str(uint16_tif.path), f"s3://no-such-{bucket}/{output}")) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no such bucket" in err, err


def test_no_credentials_is_one_line(
    endpoint: str,
    uint16_tif: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _use(monkeypatch, aws_settings(endpoint, credentials=False))
    assert main(_cli(str(uint16_tif.path), "s3://any-bucket/out.zarr")) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no credentials" in err, err
    # Reading too: GDAL's own message, one line.
    assert main(_cli("s3://any-bucket/in.tif", "out.zarr")) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


@pytest.fixture
def read_only(
    bucket: str, endpoint: str, tmp_path: Path, make_geotiff: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """``bucket``, holding the GeoTIFF ``scene.tif``, for a user allowed to read it and not to write.

    moto checks IAM only when told to, and that setting belongs to the process (so would a second
    server's in this process, as the backends do): it is on for this test only.
    """
    import boto3
    from moto.core import enable_iam_authentication

    raster = make_geotiff(tmp_path / "scene.tif", height=64, width=64, bands=1, tile=32)
    s3().put_file(str(raster.path), f"{bucket}/scene.tif")
    iam = boto3.client("iam", region_name="us-east-1")  # the owner, with `bucket`'s settings
    user = f"reader-{bucket}"
    iam.create_user(UserName=user)
    # AWS authorises reads as s3:GetObject and s3:ListBucket; moto checks the operation's own
    # name (s3:HeadObject, s3:ListObjectsV2, s3:HeadBucket). The wildcards grant both, no write.
    statement = {
        "Effect": "Allow",
        "Action": ["s3:Get*", "s3:List*", "s3:Head*"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    iam.put_user_policy(
        UserName=user,
        PolicyName="read-only",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    _use(
        monkeypatch,
        aws_settings(endpoint)
        | {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        },
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where uploads are built
    (tmp_path / "tmp").mkdir()
    with enable_iam_authentication():
        s3().info(f"{bucket}/scene.tif")  # the user reads; an unknown key would be refused here
        with pytest.raises(PermissionError):
            s3().pipe(f"{bucket}/probe", b"")  # and may not write
        yield bucket


@pytest.mark.parametrize("output", ["out.zarr", "out.tif"])
def test_a_refused_write_is_one_line_and_leaves_nothing(
    read_only: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], output: str
) -> None:
    url = f"s3://{read_only}/{output}"
    assert main(_cli(f"s3://{read_only}/scene.tif", url, "--scale", "2")) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "permission denied" in err and f"output {url!r}" in err, err
    fs = s3()
    fs.invalidate_cache()
    assert fs.find(read_only) == [f"{read_only}/scene.tif"]  # no store, no .partial, no object
    assert list((tmp_path / "tmp").iterdir()) == []  # nor the GeoTIFF built for the upload


def test_a_geotiff_is_uploaded_once_complete(
    bucket: str, uint16_tif: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{bucket}/out.tif"
    assert main(_cli(str(uint16_tif.path), url, "--cog")) == 0
    assert main(_cli(str(uint16_tif.path), str(tmp_path / "local.tif"), "--cog")) == 0
    fs = s3()
    assert fs.cat_file(f"{bucket}/out.tif") == (tmp_path / "local.tif").read_bytes()
    assert main(_cli(str(uint16_tif.path), url)) == 2
    assert "exists: pass --overwrite" in capsys.readouterr().err
    assert main(_cli(str(uint16_tif.path), url, "--overwrite")) == 0
    with rasterio.Env(**gdal_options()), rasterio.open(f"/vsis3/{bucket}/out.tif") as src:
        assert src.nodata == 0 and src.count == 3
