"""The simulator's HTTP server: routing, authentication, fault injection and a request log.

Endpoints live in handler modules (:mod:`.export`, :mod:`.dashboard`, …) listed in
:data:`HANDLER_MODULES`; each exposes ``routes() -> list[Route]``. Adding an API is one more
module in that tuple.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hmac
import io
import json
import logging
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

from tap_amplitude.simulator.dataset import Dataset, Project
from tap_amplitude.simulator.faults import Fault, FaultQueue, corrupt_first_gzip

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Self

logger = logging.getLogger(__name__)

AuthScheme = Literal["basic", "api-key"]
STREAM_CHUNK_BYTES = 256 * 1024
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True)
class SimRequest:
    """A parsed request as handlers see it (query values: the last one wins)."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body parsed as JSON (handlers turn ``ValueError`` into a 400)."""
        return json.loads(self.body or b"null")


@dataclass
class SimResponse:
    """A reply: ``body`` bytes, or ``body_path``, a file streamed in chunks."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_path: Path | None = None
    delete_body_path: bool = False  # the file is a temporary made for this reply

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> SimResponse:
        """A plain-text reply, like Amplitude's non-JSON errors."""
        return cls(status, {"Content-Type": TEXT, **(headers or {})}, text.encode())

    @classmethod
    def json(cls, status: int, payload: Any) -> SimResponse:
        """A JSON reply."""
        return cls(status, {"Content-Type": JSON}, _compact(payload))

    @classmethod
    def empty(cls, status: int) -> SimResponse:
        """No body at all (Amplitude's unknown-path 404)."""
        return cls(status)

    @classmethod
    def error(cls, status: int, message: str, **metadata: Any) -> SimResponse:
        """The Dashboard REST error envelope (amplitude-api.md §1.4)."""
        error_type = "invalid" if status == HTTPStatus.BAD_REQUEST else HTTPStatus(status).phrase
        return cls.json(
            status,
            {
                "error": {
                    "http_code": status,
                    "type": error_type,
                    "message": message,
                    "metadata": metadata,
                }
            },
        )

    def content_length(self) -> int:
        """Bytes the body will take on the wire."""
        if self.body_path is not None:
            return self.body_path.stat().st_size
        return len(self.body)

    def read_body(self) -> bytes:
        """The whole body in memory (for small post-processing such as truncation)."""
        return self.body_path.read_bytes() if self.body_path is not None else self.body

    def discard(self) -> None:
        """Delete a temporary body file that will not be sent."""
        if self.body_path is not None and self.delete_body_path:
            self.body_path.unlink(missing_ok=True)


def _compact(payload: Any) -> bytes:
    """JSON without whitespace, as Amplitude's APIs answer."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


Handler = Callable[["AmplitudeSimulator", SimRequest], SimResponse]


@dataclass(frozen=True)
class Route:
    """One endpoint: ``path`` may hold ``{name}`` segments, passed as ``path_params``."""

    method: str
    path: str
    handler: Handler
    auth: AuthScheme = "basic"

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` is this route's, else ``None``."""
        found = _path_pattern(self.path).fullmatch(path)
        return None if found is None else found.groupdict()


def _path_pattern(template: str) -> re.Pattern[str]:
    """``/a/{id}/b`` → a regex capturing ``id`` within one path segment."""
    parts = re.split(r"\{(\w+)\}", template)
    regex = "".join(
        f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts)
    )
    return re.compile(regex)


@dataclass(frozen=True)
class RequestRecord:
    """One answered request; credentials are never recorded."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    at: float  # time.monotonic() when the answer was decided


class HandlerModule(Protocol):
    """What a module in :data:`HANDLER_MODULES` provides."""

    def routes(self) -> list[Route]:
        """The endpoints the module serves."""
        ...


# Handler modules import the types above from this module, so they are imported only now.
from tap_amplitude.simulator import (  # noqa: E402
    analytics,
    dashboard,
    deletions,
    export,
    limits,
    profile,
)

#: Every API the simulator serves; add a module here to add its routes.
HANDLER_MODULES: tuple[HandlerModule, ...] = (
    export,
    dashboard,
    profile,
    deletions,
    analytics,
)


# --------------------------------------------------------------------------------------
# authentication


def check_basic(header: str | None, project: Project) -> SimResponse | None:
    """Basic ``api_key:secret_key``: 401 if missing or malformed, 403 if wrong (§1.3)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return _unauthorized("Missing or malformed Authorization header")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return _unauthorized("Missing or malformed Authorization header")
    api_key, colon, secret = decoded.partition(":")
    if not colon:
        return _unauthorized("Missing or malformed Authorization header")
    key_ok = hmac.compare_digest(api_key.encode(), project.api_key.encode())
    secret_ok = hmac.compare_digest(secret.encode(), project.secret_key.encode())
    if not (key_ok and secret_ok):
        return SimResponse.text(HTTPStatus.FORBIDDEN, "Invalid API Key")
    return None


def check_api_key(header: str | None, project: Project) -> SimResponse | None:
    """Profile API ``Api-Key <secret_key>``; both failures are 401 (amplitude-api.md §7)."""
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "api-key" or not token.strip():
        return SimResponse.text(HTTPStatus.UNAUTHORIZED, "Missing Api-Key in Authorization header")
    if not hmac.compare_digest(token.strip().encode(), project.secret_key.encode()):
        return SimResponse.text(HTTPStatus.UNAUTHORIZED, "Invalid Api-Key")
    return None


def _unauthorized(message: str) -> SimResponse:
    return SimResponse.text(
        HTTPStatus.UNAUTHORIZED, message, {"WWW-Authenticate": 'Basic realm="Amplitude"'}
    )


# --------------------------------------------------------------------------------------
# the simulator


@dataclass
class _Outcome:
    response: SimResponse
    truncate: bool = False


class AmplitudeSimulator:
    """A local stand-in for Amplitude's REST APIs, serving a deterministic :class:`Dataset`.

    Use as a context manager (or ``start()``/``stop()``); ``url`` is the base URL to point a
    client at. Switches such as :attr:`export_max_events` and queued :class:`Fault` objects
    reproduce Amplitude's failure modes.
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
        self.export_lag_hours = export_lag_hours
        self.export_max_events: int | None = None
        self.export_timeout_hours: int | None = None
        self.export_include_marker = False
        self.host = host
        self.port = port
        self.faults = FaultQueue()
        self.limits = limits.RateLimits()  # Amplitude's per-project REST limits (429s)
        self.analytics = analytics.AnalyticsSettings()  # switches of the chart endpoints
        self.routes: list[Route] = [
            route for module in HANDLER_MODULES for route in module.routes()
        ]
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

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
        moment = (self.current_time() - timedelta(hours=self.export_lag_hours)).astimezone(
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
            if outcome.truncate:
                # Half the promised bytes, then the connection goes away mid-body.
                self.wfile.write(response.read_body()[: length // 2])
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_WR)
            elif response.body_path is not None:
                with response.body_path.open("rb") as source:
                    shutil.copyfileobj(source, self.wfile, STREAM_CHUNK_BYTES)
            else:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up; nothing left to tell it
        finally:
            response.discard()
