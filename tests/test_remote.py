"""Remote inputs: COGs over HTTP (Range requests), Zarr through fsspec URLs, GDAL /vsi paths.

A small HTTP server on 127.0.0.1, started by the tests in a thread, serves a folder with Range
requests (Python's http.server sends whole files), HEAD, ETag and Last-Modified, and counts the
bytes it sends, so that a test can tell how much of a file a read transferred.
"""

from __future__ import annotations

import email.utils
import os
import re
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

import dasksr
from dasksr.cli import main
from dasksr.data import data_path
from dasksr.errors import InputError
from dasksr.io import clear_cache
from dasksr.io.paths import gdal_path


class RangeServer:
    """Serves ``folder`` on 127.0.0.1 with Range support; ``sent`` counts body bytes per path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sent: dict[str, int] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.lock = threading.Lock()
        #: HEAD answers 405, as servers of presigned URLs may.
        self.refuse_head = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                if server.refuse_head:
                    self.send_error(405, "Method Not Allowed")
                    return
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _serve(self, *, body: bool) -> None:
                name = self.path.split("?", 1)[0].lstrip("/")
                file = server.folder / name
                ranges = self.headers.get("Range")
                with server.lock:
                    server.requests.append((self.command, name, ranges))
                if not file.is_file():
                    self.send_error(404, "Not Found")
                    return
                data = file.read_bytes()
                stat = file.stat()
                size = len(data)
                common = {
                    "ETag": f'"{stat.st_mtime_ns:x}-{size:x}"',
                    "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
                    "Accept-Ranges": "bytes",
                }
                spans = _parse_ranges(ranges, size) if ranges else None
                if spans == []:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.end_headers()
                    return
                if spans is None:
                    payload, status = data, 200
                    headers = {"Content-Type": "application/octet-stream"}
                elif len(spans) == 1:
                    (a, b) = spans[0]
                    payload, status = data[a : b + 1], 206
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"bytes {a}-{b}/{size}",
                    }
                else:  # several ranges: multipart/byteranges (RFC 9110, 14.6)
                    boundary = "dasksr-test-boundary"
                    parts = []
                    for a, b in spans:
                        parts.append(
                            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                            f"Content-Range: bytes {a}-{b}/{size}\r\n\r\n".encode()
                            + data[a : b + 1]
                            + b"\r\n"
                        )
                    payload, status = b"".join(parts) + f"--{boundary}--\r\n".encode(), 206
                    headers = {"Content-Type": f"multipart/byteranges; boundary={boundary}"}
                self.send_response(status)
                for key, value in {**common, **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if body:
                    self.wfile.write(payload)
                    with server.lock:
                        server.sent[name] = server.sent.get(name, 0) + len(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()
            self.requests.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """``bytes=a-b,c-,-n`` as inclusive spans inside the file; None when not a byte range."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(.+)", header)
    if match is None:
        return None
    spans = []
    for part in match.group(1).split(","):
        first, _, last = part.strip().partition("-")
        if first:
            a = int(first)
            b = min(int(last), size - 1) if last else size - 1
        else:
            a, b = max(0, size - int(last)), size - 1
        if a <= b and a < size:
            spans.append((a, b))
    return spans


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    folder = tmp_path_factory.mktemp("served")
    server = RangeServer(folder)
    yield server
    server.close()


@pytest.fixture(scope="module")
def big_cog(served: RangeServer) -> Path:
    """A 2048 x 2048 3-band uint16 COG with 256-pixel tiles (about 28 MB: noise compresses
    poorly, so that a window's share of the file is easy to tell)."""
    import rasterio.shutil
    from conftest import TRANSFORM

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4000, size=(3, 2048, 2048), dtype=np.uint16)
    plain = served.folder / "plain.tif"
    profile = {
        "driver": "GTiff",
        "width": 2048,
        "height": 2048,
        "count": 3,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": TRANSFORM,
        "nodata": 0,
    }
    with rasterio.open(plain, "w", **profile) as dst:
        dst.write(pixels)
    cog = served.folder / "scene.tif"
    rasterio.shutil.copy(plain, cog, driver="COG", blocksize=256, compress="deflate")
    plain.unlink()
    return cog


def test_gdal_paths_of_urls() -> None:
    assert gdal_path("https://h.org/a/b.tif") == "/vsicurl/https://h.org/a/b.tif"
    assert gdal_path("http://h.org/b.tif") == "/vsicurl/http://h.org/b.tif"
    assert gdal_path("s3://sentinel-cogs/x/B04.tif") == "/vsis3/sentinel-cogs/x/B04.tif"
    assert gdal_path("/vsizip//data/a.zip/b.tif") == "/vsizip//data/a.zip/b.tif"


def test_cog_over_http_equals_the_local_read(served: RangeServer, big_cog: Path) -> None:
    url = f"{served.url}/{big_cog.name}"
    remote = dasksr.open_raster(url, chunks=512)
    local = dasksr.open_raster(big_cog, chunks=512)
    assert remote.shape == local.shape and remote.dtype == local.dtype
    assert remote.rio.crs == local.rio.crs and remote.rio.transform() == local.rio.transform()
    assert remote.rio.nodata == local.rio.nodata == 0
    np.testing.assert_array_equal(remote[:, 700:1300, 900:1500].values, big_cog_window(big_cog))
    # And through the upscaling, which reads haloed windows from the URL.
    np.testing.assert_array_equal(
        dasksr.upscale(remote[:, :600, :700], scale=2, method="bicubic").values,
        dasksr.upscale(local[:, :600, :700], scale=2, method="bicubic").values,
    )


def big_cog_window(path: Path) -> np.ndarray:
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        return src.read(window=Window(900, 700, 600, 600))


def test_a_small_window_transfers_a_small_fraction_of_the_file(
    served: RangeServer, big_cog: Path
) -> None:
    # A name of its own: GDAL keeps what it fetched of a URL for the life of the process.
    fresh = big_cog.with_name("fresh.tif")
    os.link(big_cog, fresh)
    served.reset()
    # Chunks of one tile: dask reads whole chunks (it no longer fuses a slice into the read).
    remote = dasksr.open_raster(f"{served.url}/{fresh.name}", chunks=256)
    window = remote[:, 1024:1280, 1024:1280].values  # one 256-pixel tile of each band
    np.testing.assert_array_equal(window, _local_window(big_cog, 1024, 1024, 256))
    size = big_cog.stat().st_size
    sent = served.sent.get(fresh.name, 0)
    # Open (header, the last tile as a check) and one tile: a few percent of a 28 MB file.
    assert 0 < sent < 0.05 * size, (sent, size, served.requests)
    assert all(r is not None for m, _, r in served.requests if m == "GET"), served.requests


def _local_window(path: Path, row: int, col: int, edge: int) -> np.ndarray:
    from rasterio.windows import Window

    with rasterio.open(path) as src:
        return src.read(window=Window(col, row, edge, edge))


def test_a_remote_file_changed_after_opening_fails_the_read(
    served: RangeServer, tmp_path: Path
) -> None:
    from conftest import write_geotiff

    raster = write_geotiff(served.folder / "changing.tif", height=64, width=64)
    clear_cache()
    remote = dasksr.open_raster(f"{served.url}/changing.tif")
    write_geotiff(served.folder / "changing.tif", height=64, width=64, seed=5)
    os.utime(served.folder / "changing.tif", ns=(1, 1))  # a different Last-Modified
    with pytest.raises(InputError, match="changed after it was opened"):
        remote.values  # noqa: B018
    assert raster.path.exists()


def test_a_server_refusing_head_warns_and_does_not_stamp(served: RangeServer) -> None:
    from conftest import write_geotiff

    from dasksr.io.paths import _remote_stamp

    write_geotiff(served.folder / "nohead.tif", height=16, width=16)
    served.refuse_head = True
    try:
        with pytest.warns(RuntimeWarning, match="HTTP 405"):
            assert _remote_stamp(f"{served.url}/nohead.tif") is None
    finally:
        served.refuse_head = False
    with pytest.raises(InputError, match="HTTP 404"):  # a missing file still fails at once
        _remote_stamp(f"{served.url}/missing.tif")


def test_a_gs_url_is_stamped_again_by_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from dasksr.io import readers as read

    stamp = (10, "etag", "when")
    monkeypatch.setattr(read, "_remote_stamp", lambda url: stamp if url == "gs://b/k" else None)
    windows = read._RasterWindows(
        gdal_path("gs://b/k"),
        (1, 4, 4),
        np.dtype("uint8"),
        (4, 4),
        stamp=stamp,
        shown="gs://b/k",
        remote=True,
        url="gs://b/k",
    )
    assert windows.path == "/vsigs/b/k"
    windows._verify([])  # not "changed after it was opened"


@pytest.mark.parametrize(
    "url, message",
    [
        ("/missing.tif", "HTTP 404"),
        ("/", "HTTP 404"),
    ],
)
def test_bad_urls_are_one_line_errors_with_exit_status_2(
    served: RangeServer, url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(InputError, match=message):
        dasksr.open_raster(served.url + url)
    assert main(["info", served.url + url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "does not exist" not in err


def test_an_unreachable_host_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/scene.tif"
    assert main(["info", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be fetched" in err and url in err


def test_a_non_raster_url_is_a_one_line_error(
    served: RangeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    (served.folder / "notes.txt").write_text("not a raster\n" * 100)
    assert main(["info", f"{served.url}/notes.txt"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable raster" in err


def test_cli_upscales_a_url_input(served: RangeServer, big_cog: Path, tmp_path: Path) -> None:
    from conftest import write_geotiff

    raster = write_geotiff(served.folder / "small.tif", height=70, width=90)
    out = tmp_path / "out.tif"
    assert main(["upscale", f"{served.url}/small.tif", str(out), "--scale", "2"]) == 0
    with rasterio.open(out) as tif:
        np.testing.assert_array_equal(
            tif.read(), dasksr.upscale(raster.data, scale=2, method="bicubic", nodata=0)
        )


def test_vsicurl_path_is_read_as_it_is(served: RangeServer, big_cog: Path) -> None:
    remote = dasksr.open_raster(f"/vsicurl/{served.url}/{big_cog.name}")
    np.testing.assert_array_equal(remote[:, :64, :64].values, _local_window(big_cog, 0, 0, 64))


def test_zarr_in_memory_through_fsspec(uint16_zarr: Any) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(str(uint16_zarr.path), "/scene.zarr", recursive=True)
    remote = dasksr.open_raster("memory://scene.zarr")
    on_disk = dasksr.open_raster(uint16_zarr.path)
    np.testing.assert_array_equal(remote.values, on_disk.values)
    assert remote.rio.crs == on_disk.rio.crs
    assert remote.rio.transform() == on_disk.rio.transform()
    np.testing.assert_array_equal(
        dasksr.upscale(remote, scale=2, method="bicubic").values,
        dasksr.upscale(on_disk, scale=2, method="bicubic").values,
    )
    # A changed chunk is seen: the listing of the array (names, sizes, times) has changed.
    clear_cache()
    reopened = dasksr.open_raster("memory://scene.zarr")
    chunk = next(p for p in fs.find("/scene.zarr/data") if "zarr.json" not in p)
    fs.pipe_file(chunk, fs.cat_file(chunk))  # rewritten: a new creation time
    with pytest.raises(InputError, match="changed after it was opened"):
        reopened.values  # noqa: B018


def test_zarr_over_http(served: RangeServer, uint16_zarr: Any) -> None:
    import shutil

    pytest.importorskip("aiohttp", reason="fsspec's HTTP file system needs aiohttp")
    import zarr

    # Plain HTTP cannot list a folder: the store's variables are found in its consolidated metadata.
    shutil.copytree(uint16_zarr.path, served.folder / "bare.zarr")
    with pytest.raises(InputError, match="consolidated metadata"):
        dasksr.open_raster(f"{served.url}/bare.zarr")
    shutil.copytree(uint16_zarr.path, served.folder / "scene.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: consolidated metadata is not in the v3 spec
        zarr.consolidate_metadata(str(served.folder / "scene.zarr"))
    remote = dasksr.open_raster(f"{served.url}/scene.zarr")
    np.testing.assert_array_equal(remote.values, dasksr.open_raster(uint16_zarr.path).values)
    assert remote.rio.crs is not None


def test_a_missing_remote_zarr_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "memory://nothing-here.zarr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable Zarr store" in err


@pytest.mark.data
def test_shared_sentinel2_cog_over_http(served: RangeServer) -> None:
    source = data_path("rasters", "sentinel2_l2a_29RKH_20200219", "B04.tif")
    if source is None:
        pytest.skip("shared Sentinel-2 rasters are not on this machine (set DASKSR_DATA)")
    link = served.folder / source.name
    link.symlink_to(source)
    served.reset()
    # The file (decimated x10 by the fixture's authors) is 1098 x 1098 in 512-pixel tiles: 3 x 3.
    remote = dasksr.open_raster(f"{served.url}/{source.name}", chunks=512)
    local = dasksr.open_raster(source, chunks=512)
    assert remote.shape == local.shape and remote.rio.crs == local.rio.crs
    assert remote.rio.transform() == local.rio.transform()
    window = remote[:, 512:1024, 512:1024].values  # the middle tile
    np.testing.assert_array_equal(window, local[:, 512:1024, 512:1024].values)
    # The header, the last tile (read at open as a check) and the middle one: 2 tiles of 9.
    assert served.sent[source.name] < 0.3 * source.stat().st_size, served.sent
