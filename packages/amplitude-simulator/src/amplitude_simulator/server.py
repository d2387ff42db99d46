"""The simulator's HTTP server: routing, authentication, fault injection and a request log.

Endpoints live in the API modules of :mod:`amplitude_simulator.api` (one per API family);
they see the simulator as a :class:`~amplitude_simulator.protocol.Context` and never import
this module. Per-simulator switches are settings objects on the instance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from amplitude_simulator.api import all_routes
from amplitude_simulator.api.deletions import seed_jobs
from amplitude_simulator.api.usermap import seed_mappings
from amplitude_simulator.auth import check_api_key, check_basic
from amplitude_simulator.data.dataset import Dataset, Project
from amplitude_simulator.faults import Fault, FaultQueue, corrupt_first_gzip
from amplitude_simulator.limits import RateLimits
from amplitude_simulator.protocol import TEXT, RequestRecord, Route, SimRequest, SimResponse
from amplitude_simulator.settings import (
    AnalyticsSettings,
    AnnotationSettings,
    ChartSettings,
    CohortExportSettings,
    DeletionSettings,
    DsarSettings,
    ExportSettings,
    TaxonomySettings,
    UserMapSettings,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from typing_extensions import Self

logger = logging.getLogger(__name__)

STREAM_CHUNK_BYTES = 256 * 1024


# --------------------------------------------------------------------------------------
# the simulator


@dataclass
class _Outcome:
    response: SimResponse
    truncate: bool = False


class AmplitudeSimulator:
    """A local stand-in for Amplitude's REST APIs, serving a deterministic :class:`Dataset`.

    Use as a context manager (or ``start()``/``stop()``); ``url`` is the base URL to point a
    client at. Settings objects (:attr:`export`, :attr:`analytics`, :attr:`deletions`,
    :attr:`limits`) and queued :class:`Fault` objects reproduce Amplitude's behaviour and
    failure modes.
    """

    def __init__(  # noqa: PLR0913 - mirrors the knobs tests turn
        self,
        dataset: Dataset,
        project: Project = Project(),  # noqa: B008 - frozen, so sharing the default is safe
        *,
        now: datetime | None = None,
        export_lag_hours: int = 2,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Prepare (not start) a simulator; the dataset's rows are labelled with the project."""
        if dataset.app_id != project.app_id:
            dataset = dataclasses.replace(dataset, app_id=project.app_id)
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.dataset = dataset
        self.project = project
        self.now = now
        self.host = host
        self.port = port
        #: Export API switches (lag, size and time limits, markers, spooling).
        self.export = ExportSettings(lag_hours=export_lag_hours)
        #: Switches of the chart and cohort endpoints.
        self.analytics = AnalyticsSettings()
        #: The deletion API's limit, its jobs (seeded with a done and a submitted one) and bodies.
        self.deletions = DeletionSettings()
        seed_jobs(self.deletions, dataset, self.current_time().astimezone(timezone.utc).date())
        #: The DSAR API: org keys, requests moving through their lifecycle, the cost budget.
        self.dsar = DsarSettings()
        #: User mappings (a fresh simulator maps the fourth user into the first).
        self.usermap = UserMapSettings()
        seed_mappings(self.usermap, dataset)
        #: The Taxonomy API's plan switch and per-key limits.
        self.taxonomy = TaxonomySettings()
        #: Cohort download: jobs, the monthly quota, redirects, cohort revisions.
        self.cohort_export = CohortExportSettings()
        #: Chart annotations v2/v3 and categories (one store, seeded from the dataset).
        self.annotations = AnnotationSettings()
        #: Saved-chart results (/api/3/chart/{id}/query and /csv).
        self.charts = ChartSettings()
        #: Amplitude's per-project REST limits (429s).
        self.limits = RateLimits()
        #: Injected failures, per path.
        self.faults = FaultQueue()
        self.routes: list[Route] = all_routes()
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- export settings under their historical names ----------------------------------

    @property
    def export_lag_hours(self) -> int:
        """``export.lag_hours``."""
        return self.export.lag_hours

    @export_lag_hours.setter
    def export_lag_hours(self, value: int) -> None:
        self.export.lag_hours = value

    @property
    def export_max_events(self) -> int | None:
        """``export.max_events``."""
        return self.export.max_events

    @export_max_events.setter
    def export_max_events(self, value: int | None) -> None:
        self.export.max_events = value

    @property
    def export_timeout_hours(self) -> int | None:
        """``export.timeout_hours``."""
        return self.export.timeout_hours

    @export_timeout_hours.setter
    def export_timeout_hours(self, value: int | None) -> None:
        self.export.timeout_hours = value

    @property
    def export_include_marker(self) -> bool:
        """``export.include_marker``."""
        return self.export.include_marker

    @export_include_marker.setter
    def export_include_marker(self, value: bool) -> None:
        self.export.include_marker = value

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> AmplitudeSimulator:
        """Bind and serve in a daemon thread; returns ``self`` for chaining."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _RequestHandler)
        server.simulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"amplitude-simulator:{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections, so clients see it go away."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        """Start on entering the ``with`` block."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop on leaving it."""
        self.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- clock -------------------------------------------------------------------------

    def current_time(self) -> datetime:
        """The fixed ``now`` if one was given, else the real clock (UTC)."""
        return self.now if self.now is not None else datetime.now(timezone.utc)

    def export_cutoff(self) -> datetime:
        """The first upload hour not yet exportable: Amplitude lags ``export_lag_hours``."""
        moment = (self.current_time() - timedelta(hours=self.export.lag_hours)).astimezone(
            timezone.utc
        )
        return moment.replace(minute=0, second=0, microsecond=0)

    # -- faults and the request log ----------------------------------------------------

    def add_fault(
        self,
        path: str,
        fault: Fault,
        *,
        times: int = 1,
        when: Callable[[dict[str, str]], bool] | None = None,
    ) -> None:
        """Misbehave on the next ``times`` requests to ``path`` (for which ``when`` holds)."""
        self.faults.add(path, fault, times=times, when=when)

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every answered request, oldest first."""
        with self._log_lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Forget the requests answered so far."""
        with self._log_lock:
            self._log.clear()

    def _record(self, request: SimRequest, status: int) -> None:
        record = RequestRecord(
            request.method, request.path, dict(request.params), int(status), time.monotonic()
        )
        with self._log_lock:
            self._log.append(record)

    # -- dispatch ----------------------------------------------------------------------

    def handle(self, request: SimRequest) -> _Outcome:
        """Route, authenticate, apply any queued fault, and run the endpoint."""
        allowed: list[str] = []
        for route in self.routes:
            path_params = route.match(request.path)
            if path_params is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            return self._serve(route, dataclasses.replace(request, path_params=path_params))
        if allowed:
            return _Outcome(
                SimResponse(HTTPStatus.METHOD_NOT_ALLOWED, {"Allow": ", ".join(sorted(allowed))})
            )
        return _Outcome(SimResponse.empty(HTTPStatus.NOT_FOUND))

    def _serve(self, route: Route, request: SimRequest) -> _Outcome:
        if route.auth != "none":
            check = check_api_key if route.auth == "api-key" else check_basic
            denied = check(request.header("Authorization"), self.project)
            if denied is not None:
                return _Outcome(denied)
        with self.limits.admission(request, concurrent=route.auth == "basic") as refused:
            if refused is not None:
                return _Outcome(refused)
            return self._answer(route, request)

    def _answer(self, route: Route, request: SimRequest) -> _Outcome:
        """Apply any queued fault and run the endpoint (within the project's limits)."""
        fault = self.faults.take(request.path, request.params)
        if fault is not None and fault.kind in {"status", "not_zip"}:
            headers = {"Content-Type": TEXT, **dict(fault.headers)}
            return _Outcome(SimResponse(fault.status_code, headers, fault.body))
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        try:
            response = route.handler(self, request)
        except Exception:
            logger.exception("simulator handler for %s %s failed", request.method, request.path)
            return _Outcome(SimResponse.text(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error"))
        if fault is not None and fault.kind == "corrupt_gzip" and response.status == HTTPStatus.OK:
            response = _corrupted(response)
        return _Outcome(response, truncate=fault is not None and fault.kind == "truncated")


def _corrupted(response: SimResponse) -> SimResponse:
    """The same reply with its archive's first gzip member damaged (non-zips unchanged)."""
    if response.body_path is None:
        buffer = io.BytesIO()
        try:
            corrupt_first_gzip(io.BytesIO(response.body), buffer)
        except zipfile.BadZipFile:
            return response
        return dataclasses.replace(response, body=buffer.getvalue())
    with tempfile.NamedTemporaryFile(prefix="amplitude-sim-", suffix=".zip", delete=False) as out:
        target = Path(out.name)
        try:
            with response.body_path.open("rb") as source:
                corrupt_first_gzip(source, out)
        except zipfile.BadZipFile:
            target.unlink()
            return response
    response.discard()
    return dataclasses.replace(response, body_path=target, delete_body_path=True)


# --------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    """Threads per connection; remembers connections so ``stop()`` can close idle ones."""

    daemon_threads = True
    allow_reuse_address = True
    simulator: AmplitudeSimulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002
        """A client that hangs up (a killed tap, a timeout) is normal here, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            return
        logger.error("simulator: error while serving a request", exc_info=error)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _RequestHandler(BaseHTTPRequestHandler):
    """Adapts http.server to :meth:`AmplitudeSimulator.handle`; HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    server_version = "AmplitudeSimulator/1.0"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are closed after this
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        """The ``Server`` header."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Stay quiet: the default access log is noise (and must never carry credentials)."""

    def do_GET(self) -> None:
        """Serve a GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Serve a PATCH."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self._dispatch()

    def _dispatch(self) -> None:
        simulator = self.server.simulator
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = SimRequest(
            method=self.command,
            path=url.path,
            params=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            query=url.query,
        )
        outcome = simulator.handle(request)
        # Logged before sending, so a client that has its answer also finds it in the log.
        simulator._record(request, outcome.response.status)  # noqa: SLF001 - same module
        self._send(outcome)

    def _send(self, outcome: _Outcome) -> None:
        response = outcome.response
        try:
            length = response.content_length()
            self.send_response(response.status)
            headers = dict(response.headers)
            if response.status >= HTTPStatus.BAD_REQUEST and length:
                headers.setdefault("Content-Type", TEXT)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            rate = response.bytes_per_second
            pacer = _Pacer(rate) if rate else None  # the network model's bandwidth cap
            if outcome.truncate:
                # Half the promised bytes, then the connection goes away mid-body.
                self._write(memoryview(response.read_body())[: length // 2], pacer)
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_WR)
            elif response.body_path is not None:
                with response.body_path.open("rb") as source:
                    if pacer is None:
                        shutil.copyfileobj(source, self.wfile, STREAM_CHUNK_BYTES)
                    else:
                        while chunk := source.read(pacer.chunk_bytes):
                            pacer.wait(len(chunk))
                            self.wfile.write(chunk)
            else:
                self._write(response.body, pacer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up; nothing left to tell it
        finally:
            response.discard()

    def _write(self, body: bytes | memoryview, pacer: _Pacer | None) -> None:
        """Send ``body`` whole, or in paced chunks (slices of it, never copies)."""
        if pacer is None:
            self.wfile.write(body)
            return
        view = memoryview(body)
        for offset in range(0, len(view), pacer.chunk_bytes):
            piece = view[offset : offset + pacer.chunk_bytes]
            pacer.wait(len(piece))
            self.wfile.write(piece)


class _Pacer:
    """Caps one response body at ``rate`` bytes per second (the network model's bandwidth).

    Before each chunk goes out, it waits until the cap allows the bytes sent so far *plus*
    that chunk, so the last byte leaves no earlier than ``body / rate`` after the headers.
    Chunks are about 50 ms of data. It sleeps in the connection's own handler thread.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.chunk_bytes = max(1024, min(STREAM_CHUNK_BYTES, int(rate / 20)))
        self.started = time.monotonic()
        self.sent = 0

    def wait(self, size: int) -> None:
        """Sleep until ``size`` more bytes fit the cap, and count them as sent."""
        self.sent += size
        delay = self.started + self.sent / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
