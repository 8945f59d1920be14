"""Local stand-ins for the public services the real-data path talks to, for tests and
benchmarks: an HTTP server on 127.0.0.1 (in a background thread) that behaves like the
Legacy Survey cutout service and like Zenodo (record API and file downloads), faults
included.

Endpoints (relative to :attr:`StandinServer.url`):

- ``/viewer/fits-cutout?ra&dec&size&pixscale&layer&bands``: a FITS cube (bands, size,
  size) float32 rendered by any :class:`~morphtools.cutouts.CutoutSource` (the simulated
  sky), as the real service answers;
- ``/api/records/<id>``: Zenodo's record JSON (``files: [{key, size, checksum: "md5:...",
  links: {self}}]``), and ``/api/records/<id>/files/<name>/content`` the bytes;
- any other path registered in ``files``: a static file (e.g. the NSA's SAS path).
  File answers honour ``Range: bytes=N-``.

Faults are planned per request target with :class:`FaultPlan` (key: ``position_key(ra,
dec)`` for cutouts, the URL path for files; ``"*"`` for any target): ``500``, ``503``,
``429`` (with ``Retry-After``), ``stall`` (no answer until the client gives up or
``stall_s`` passes), ``truncate`` (half the declared body, then the connection closes),
``blank`` (an all-zero cube: no coverage), ``bands2`` (one band short), ``garbage`` (200
with a body that is not FITS), ``corrupt`` (a file with one byte changed). The server
counts requests in flight, so tests can check a client's concurrency cap.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from astropy.io import fits

from .cutouts import CutoutRequest

CUTOUT_PATH = "/viewer/fits-cutout"
FAULTS = ("ok", "500", "503", "429", "stall", "truncate", "blank", "bands2", "garbage", "corrupt")


def position_key(ra: float, dec: float) -> str:
    """The fault-plan key of a cutout position (degrees, rounded to 1e-5: 36 mas)."""
    return f"{float(ra):.5f},{float(dec):.5f}"


class FaultPlan:
    """Per-target queues of faults: each request to a target takes the next fault from its
    queue (``ok`` once empty); a ``sticky`` queue repeats its last fault forever."""

    def __init__(self):
        self._queues: dict[str, list[str]] = {}
        self._sticky: set[str] = set()
        self._lock = threading.Lock()

    def add(self, key: str, faults, sticky: bool = False) -> None:
        faults = [str(f) for f in faults]
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {FAULTS}")
        with self._lock:
            self._queues.setdefault(key, []).extend(faults)
            if sticky:
                self._sticky.add(key)

    def next(self, key: str) -> str:
        with self._lock:
            for k in (key, "*"):
                queue = self._queues.get(k)
                if queue:
                    if len(queue) == 1 and k in self._sticky:
                        return queue[0]
                    return queue.pop(0)
        return "ok"

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
            self._sticky.clear()


@dataclass
class RequestRecord:
    """One request the stand-in received; ``status`` is the HTTP status sent, or
    ``stalled``/``client gone``."""

    path: str
    query: dict
    key: str
    fault: str = "ok"
    status: str = ""
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real services
    server_version = "morphtools-standin/1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # the stand-in's own request log is StandinServer.requests

    def do_GET(self):  # noqa: N802 - the base class's name
        self.server.standin._handle(self)


class StandinServer:
    """The stand-in server. Use as a context manager (``with StandinServer(...) as s:``).

    ``cutout_source``: a CutoutSource, or a zero-argument callable that returns one (called
    at the first cutout request, so the sky can be made after the server starts).
    ``files``: URL path -> local file. ``zenodo_records``: record id -> {file name: local
    file}. ``latency_s``: the service's own time per cutout answer. ``stall_s``: how long a
    ``stall`` holds the request. ``retry_after_s``: the Retry-After a ``429`` sends.
    ``cache_cubes``: keep rendered cubes in memory (a repeated request costs no CPU, so
    benchmarks time the client, not the renderer).
    """

    def __init__(self, cutout_source=None, files: dict | None = None, zenodo_records: dict | None = None,
                 latency_s: float = 0.0, stall_s: float = 3.0, retry_after_s: int = 1, cache_cubes: bool = True):
        self._source_or_factory = cutout_source
        self._source = None
        self.files = {str(k): Path(v) for k, v in (files or {}).items()}
        self.zenodo_records = {str(r): {n: Path(p) for n, p in fs.items()} for r, fs in (zenodo_records or {}).items()}
        self.latency_s = latency_s
        self.stall_s = stall_s
        self.retry_after_s = retry_after_s
        self.cache_cubes = cache_cubes
        self.faults = FaultPlan()
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._cubes: dict = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> StandinServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.request_queue_size = 128
        httpd.server_bind()
        httpd.server_activate()
        httpd.standin = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="standin-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cutout_url(self) -> str:
        return self.url + CUTOUT_PATH

    @property
    def zenodo_api(self) -> str:
        return self.url + "/api"

    # -- what it saw ---------------------------------------------------------------------------------------------

    def cutout_requests(self) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if r.path == CUTOUT_PATH]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight

    # -- serving ---------------------------------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        key = path
        if path == CUTOUT_PATH:
            with contextlib.suppress(KeyError, ValueError):
                key = position_key(float(query["ra"]), float(query["dec"]))
        record = RequestRecord(path=path, query=query, key=key)
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            record.fault = self.faults.next(key)
            if path == CUTOUT_PATH:
                self._serve_cutout(handler, query, record)
            elif path.startswith("/api/records/"):
                self._serve_zenodo(handler, path, record)
            elif path in self.files:
                self._serve_file(handler, self.files[path], record)
            else:
                self._send(handler, record, 404, b"not found", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            record.status = "client gone"
            handler.close_connection = True
        finally:
            record.ended = time.monotonic()
            with self._lock:
                self.in_flight -= 1

    def _send(self, handler, record, status: int, body: bytes, content_type: str, headers: dict | None = None,
              declared_length: int | None = None, status_label: str | None = None) -> None:
        # The record is complete before the body goes out: a client that has read the whole
        # answer may look at ``requests`` before this thread runs again.
        record.status = status_label or str(status)
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()

    def _stall(self, handler, record) -> None:
        """Answer nothing until the client hangs up (its timeout) or ``stall_s`` passes."""
        sock = handler.connection
        deadline = time.monotonic() + self.stall_s
        record.status = "stalled"
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], 0.02)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        record.status = "client gone"
                        break
                except OSError:
                    record.status = "client gone"
                    break
                time.sleep(0.02)
        handler.close_connection = True

    def _common_faults(self, handler, record) -> bool:
        """Serve the faults every endpoint has; True when the request is answered."""
        fault = record.fault
        if fault in ("500", "503"):
            self._send(handler, record, int(fault), b"<html>Internal error</html>", "text/html")
            return True
        if fault == "429":
            self._send(handler, record, 429, b"Too many requests", "text/plain",
                       {"Retry-After": str(self.retry_after_s)})
            return True
        if fault == "stall":
            self._stall(handler, record)
            return True
        return False

    def _send_body(self, handler, record, status, body, content_type, headers=None) -> None:
        if record.fault == "truncate":
            # declare the whole body, send half, hang up: a connection dropped mid-transfer
            handler.close_connection = True
            self._send(handler, record, status, body[: len(body) // 2], content_type, headers,
                       declared_length=len(body), status_label=f"{status} truncated")
            return
        if record.fault == "corrupt" and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self._send(handler, record, status, body, content_type, headers)

    def _cutout_source(self):
        with self._lock:
            if self._source is None:
                factory = self._source_or_factory
                if factory is None:
                    raise RuntimeError("the stand-in has no cutout source")
                self._source = factory if hasattr(factory, "fetch") else factory()
            return self._source

    def _serve_cutout(self, handler, query, record) -> None:
        try:
            ra, dec = float(query["ra"]), float(query["dec"])
            size = int(query.get("size", 256))
            pixscale = float(query.get("pixscale", 0.262))
            bands = query.get("bands", "grz")
        except (KeyError, ValueError) as err:
            self._send(handler, record, 400, f"bad request: {err}".encode(), "text/plain")
            return
        if not 1 <= size <= 3000:
            self._send(handler, record, 400, b"size must be 1..3000", "text/plain")
            return
        if self.latency_s:
            time.sleep(self.latency_s)
        if self._common_faults(handler, record):
            return
        if record.fault == "blank":
            cube = np.zeros((len(bands), size, size), np.float32)
        else:
            cube = self._render(ra, dec, size, pixscale, bands)
            if record.fault == "bands2":
                cube = cube[:2]
        if record.fault == "garbage":
            body = b"<html><body>Service temporarily unavailable</body></html>".ljust(8640, b" ")
        else:
            hdu = fits.PrimaryHDU(cube.astype(np.float32))
            hdu.header["BANDS"] = bands[: cube.shape[0]]
            hdu.header["CTYPE1"], hdu.header["CTYPE2"] = "RA---TAN", "DEC--TAN"
            hdu.header["CRVAL1"], hdu.header["CRVAL2"] = ra, dec
            hdu.header["CD1_1"], hdu.header["CD2_2"] = -pixscale / 3600, pixscale / 3600
            buffer = io.BytesIO()
            hdu.writeto(buffer)
            body = buffer.getvalue()
        self._send_body(handler, record, 200, body, "image/fits")

    def _render(self, ra, dec, size, pixscale, bands) -> np.ndarray:
        cache_key = (position_key(ra, dec), size, f"{pixscale:.6f}", bands)
        with self._lock:
            cached = self._cubes.get(cache_key)
        if cached is not None:
            return cached
        source = self._cutout_source()
        cube = np.asarray(source.fetch(CutoutRequest("standin", ra, dec, size, pixscale)), np.float32)
        if self.cache_cubes:
            with self._lock:
                self._cubes[cache_key] = cube
        return cube

    def _serve_zenodo(self, handler, path, record) -> None:
        parts = path.strip("/").split("/")  # api, records, <id>[, files, <name>, content]
        files = self.zenodo_records.get(parts[2]) if len(parts) >= 3 else None
        if files is None:
            self._send(handler, record, 404, b'{"status": 404, "message": "PID does not exist."}', "application/json")
            return
        if self._common_faults(handler, record):
            return
        if len(parts) == 3:
            entries = []
            for name, local in files.items():
                data = local.read_bytes()
                entries.append({"key": name, "size": len(data), "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                                "links": {"self": f"{self.url}/api/records/{parts[2]}/files/{name}/content"}})
            body = json.dumps({"id": int(parts[2]) if parts[2].isdigit() else parts[2], "files": entries}).encode()
            self._send(handler, record, 200, body, "application/json")
            return
        if len(parts) == 6 and parts[3] == "files" and parts[5] == "content" and parts[4] in files:
            self._serve_file(handler, files[parts[4]], record, faults_done=True)
            return
        self._send(handler, record, 404, b'{"status": 404}', "application/json")

    def _serve_file(self, handler, local: Path, record, faults_done: bool = False) -> None:
        if not faults_done and self._common_faults(handler, record):
            return
        data = local.read_bytes()
        start = 0
        range_header = handler.headers.get("Range", "")
        if range_header.startswith("bytes=") and range_header.endswith("-"):
            start = int(range_header[6:-1])
            if start >= len(data):
                self._send(handler, record, 416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
                return
        if start:
            self._send_body(handler, record, 206, data[start:], "application/octet-stream",
                            {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}", "Accept-Ranges": "bytes"})
        else:
            self._send_body(handler, record, 200, data, "application/octet-stream", {"Accept-Ranges": "bytes"})
