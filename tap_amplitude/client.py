"""HTTP client behaviour shared by every Amplitude stream: hosts, auth, retries, errors."""

from __future__ import annotations

import functools
import logging
import re
import typing as t
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import requests
from singer_sdk import RESTStream
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from typing_extensions import override

from tap_amplitude.ratelimit import ProjectLimiter, project_limiter
from tap_amplitude.sdk import tap_of
from tap_amplitude.settings import ReplicationChoice, SettingsError, catalog_choice_problem

if t.TYPE_CHECKING:
    from collections.abc import Generator, Mapping

    from backoff.types import Details
    from singer_sdk.helpers.types import Context, Record, RequestFunc
    from singer_sdk.pagination import BaseAPIPaginator
    from singer_sdk.singerlib import Catalog

APP_PROPERTY: dict[str, t.Any] = {
    "type": ["integer", "null"],
    "description": "Amplitude project id (from the payload, else the project_id setting).",
}
REGION_HOSTS: dict[str, str] = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
DEFAULT_PROFILE_API_URL = "https://profile-api.amplitude.com"

# Long enough to ride out Amplitude's 5-minute cost window and most of an hourly one.
MAX_TRIES = 10
MAX_WAIT_SECONDS = 300.0
DEFAULT_TIMEOUT_SECONDS = 300.0
_ERROR_BODY_CHARS = 300
# Any plan with API access can list event types; the probe that tells bad keys apart.
CREDENTIALS_PROBE_PATH = "/api/2/events/list"
_Read = t.TypeVar("_Read")


class AmplitudeError(FatalAPIError):
    """A failure the user must act on; its message is the one line the CLI prints."""


class AmplitudeResponseError(AmplitudeError):
    """An AmplitudeError that keeps the response, for callers that act on Amplitude's reason."""

    def __init__(self, message: str, response: requests.Response) -> None:
        """Keep the response alongside the one-line message."""
        super().__init__(message)
        self.response = response


class AuthenticationError(AmplitudeError):
    """Amplitude refused the credentials (wrong keys, or keys of the other region)."""


def api_base_url(config: t.Mapping[str, t.Any]) -> str:
    """The ``/api/...`` base: the explicit override, else the region's host."""
    override = config.get("api_url")
    return str(override or REGION_HOSTS[config.get("region") or "us"]).rstrip("/")


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if response is None:
        return None
    header = response.headers.get("Retry-After")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    import datetime as dt  # noqa: PLC0415 - only on this rare path

    return max(0.0, (when - dt.datetime.now(tz=dt.timezone.utc)).total_seconds())


def error_summary(response: requests.Response) -> str:
    """Amplitude's own error text, shortened, for one-line messages.

    Dashboard errors come as ``{"error": {"message": ..., "metadata": {"details": ...}}}``,
    others as plain text. Headers are never included (they carry credentials).
    """
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        details = (error.get("metadata") or {}).get("details")
        text = str(error.get("message") or "")
        if details:
            text = f"{text}: {details}" if text else str(details)
    elif isinstance(payload, dict) and payload.get("error"):
        text = str(payload["error"])
    else:
        text = response.text
    text = " ".join(text.split())
    return text[:_ERROR_BODY_CHARS] or response.reason or ""


# Failures that another try cannot mend: the host does not speak TLS, or its certificate is
# not trusted. Other TLS errors (a connection cut mid-handshake) stay retriable.
_LASTING_TLS_FAILURES = {
    "WRONG_VERSION_NUMBER": "the server answers plain HTTP, not HTTPS",
    "CERTIFICATE_VERIFY_FAILED": "its certificate is not trusted",
    "hostname mismatch": "its certificate is for another host",
    "UNSUPPORTED_PROTOCOL": "it offers no TLS version this machine accepts",
}
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def connection_failure(exc: requests.RequestException) -> str:
    """``host (reason)`` for a request that got no HTTP answer, without credentials or paths.

    requests nests the cause several exceptions deep in one long text; users need the host
    and the reason: refused, name not found, timed out, TLS.
    """
    parts = urlsplit(getattr(exc.request, "url", None) or "")
    host = f"{parts.scheme}://{parts.hostname}" if parts.hostname else "Amplitude"
    if parts.port:
        host += f":{parts.port}"
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        reason = _lasting_tls_failure(exc) or "the TLS handshake failed"
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        reason = "no connection within request_timeout"
    elif isinstance(exc, requests.exceptions.Timeout):
        reason = "no answer within request_timeout"
    elif match := _ERRNO_TEXT.search(text):
        reason = match.group(1).strip().lower()
    else:
        reason = type(exc).__name__
    return f"{host} ({reason})"


def request_failure(exc: requests.RequestException) -> str:
    """What went wrong with a request that got no usable answer, and what to check."""
    if isinstance(exc, requests.exceptions.JSONDecodeError):  # reached, but not Amplitude
        return (
            "Amplitude answered with a body that is not JSON: something in between (a proxy, "
            "an outage page) answered instead; run again later, and if it persists check "
            "api_url/region and the network"
        )
    return (
        f"could not reach {connection_failure(exc)}, also after retries; check api_url/region "
        "and the network"
    )


def _lasting_tls_failure(exc: requests.exceptions.SSLError) -> str | None:
    """Why a TLS failure no retry can mend happened; None for one that may pass."""
    text = str(exc)
    return next((why for marker, why in _LASTING_TLS_FAILURES.items() if marker in text), None)


def _lasting_tls_failures_are_final(func: RequestFunc) -> RequestFunc:
    """Raise a lasting TLS failure as an AmplitudeError, which the retries do not repeat."""

    @functools.wraps(func)
    def attempt(*args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return func(*args, **kwargs)
        except requests.exceptions.SSLError as exc:
            if _lasting_tls_failure(exc) is None:
                raise
            msg = (
                f"Could not open a secure connection to {connection_failure(exc)}; check "
                "api_url / profile_api_url (Amplitude's hosts use https://, the simulator "
                "http://) and any proxy (HTTPS_PROXY) or CA bundle (REQUESTS_CA_BUNDLE)."
            )
            raise AmplitudeError(msg) from exc

    return t.cast("RequestFunc", attempt)


def describe_request(response: requests.Response) -> str:
    """``GET /api/2/export?start=…`` without host or credentials."""
    request = response.request
    parts = urlsplit(request.url or "")
    query = f"?{parts.query}" if parts.query else ""
    return f"{request.method} {parts.path}{query}"


class AmplitudeStream(RESTStream[t.Any]):
    """Base for streams on Amplitude's Basic-auth APIs (Export, Dashboard REST, Privacy)."""

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Give every schema the ``app`` column that tells projects apart."""
        super().__init__(*args, **kwargs)
        self.schema["properties"].setdefault("app", APP_PROPERTY)
        self.logger.addFilter(_REPEATED_FAILURE_LINES)

    @override
    def apply_catalog(self, catalog: Catalog) -> None:
        """Refuse replication edits this stream cannot honour, instead of mislabelling STATE.

        Raises:
            SettingsError: the selected stream's entry changes its replication key or method,
                or names key properties its records lack.
        """
        own = self._replication_choice()
        super().apply_catalog(catalog)
        if catalog.get_stream(self.name) is None or not self.selected:
            return
        problem = catalog_choice_problem(
            self.name, own, self._replication_choice(), self.schema["properties"]
        )
        if problem:
            raise SettingsError(problem)

    def _replication_choice(self) -> ReplicationChoice:
        return ReplicationChoice(
            self.replication_key, self.replication_method, tuple(self.primary_keys or ())
        )

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """Stamp ``app`` from ``project_id`` where Amplitude's payload lacks it."""
        if row.get("app") is None and self.config.get("project_id") is not None:
            row["app"] = self.config["project_id"]
        return row

    #: Reads ``storage_export_url`` when it is set, and then needs no project keys.
    reads_storage_export: t.ClassVar[bool] = False

    #: One response holds everything a request asks for: no paging to follow.
    single_response: t.ClassVar[bool] = False

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[t.Any] | None:
        """No paginator for single-response streams; the SDK's default otherwise."""
        return None if self.single_response else super().get_new_paginator()

    @property
    @override
    def url_base(self) -> str:
        """Region host or the configured ``api_url`` override."""
        return api_base_url(self.config)

    @cached_property
    @override
    def authenticator(self) -> requests.auth.HTTPBasicAuth:
        """Basic auth with the project's API key and secret key."""
        return requests.auth.HTTPBasicAuth(self.config["api_key"], self.config["secret_key"])

    @cached_property
    def rate_limiter(self) -> ProjectLimiter:
        """Amplitude's per-project limits, shared by every stream of the process."""
        return project_limiter(self.config, api_base_url(self.config))

    @override
    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """The SDK's retries, each attempt first waiting until Amplitude's limits allow it."""
        limited = self.rate_limiter.wrap(func, stream=self.name, logger=self.logger)
        return super().request_decorator(_lasting_tls_failures_are_final(limited))

    @property
    @override
    def requests_session(self) -> requests.Session:
        """One pooled session for the whole tap, so connections are reused across streams."""
        return t.cast("requests.Session", tap_of(self).http_session)  # type: ignore[attr-defined]

    @property
    @override
    def timeout(self) -> float:  # type: ignore[override]  # the SDK says int; requests takes float
        """Per-request timeout in seconds (``request_timeout``, fractions allowed)."""
        return float(self.config.get("request_timeout") or DEFAULT_TIMEOUT_SECONDS)

    @property
    @override
    def http_headers(self) -> dict[str, str]:
        """Headers for every request; auth is added by the authenticator."""
        return {"Accept": "application/json"}

    def get(self, path: str, params: Mapping[str, t.Any] | None = None) -> requests.Response:
        """One GET on the stream's host, with the stream's limits, retries and errors."""
        prepared = self.build_prepared_request(
            method="GET",
            url=f"{self.url_base}{path}",
            params=dict(params or {}),
            headers=self.http_headers,
        )
        return self.send(prepared)

    def check_credentials(self) -> None:
        """Ask an endpoint every plan has; refused keys stop the run with the auth message."""
        self.get(CREDENTIALS_PROBE_PATH)

    @t.overload
    def send(self, request: requests.PreparedRequest) -> requests.Response: ...

    @t.overload
    def send(
        self, request: requests.PreparedRequest, read: t.Callable[[requests.Response], _Read]
    ) -> _Read: ...

    def send(
        self,
        request: requests.PreparedRequest,
        read: t.Callable[[requests.Response], _Read] | None = None,
    ) -> _Read | requests.Response:
        """Send a request the stream builds itself, with the same limits and retries as pages.

        ``read`` turns the (streamed) response into the result inside the retried attempt, so
        a body cut short is retried like any transient failure. Without it the response is
        validated and returned with its body read.
        """

        def attempt(prepared: requests.PreparedRequest, context: Context | None) -> t.Any:  # noqa: ARG001
            with self.requests_session.send(
                prepared,
                stream=True,
                timeout=self.timeout,
                allow_redirects=self.allow_redirects,
            ) as response:
                if read is not None:
                    return read(response)
                self.validate_response(response)
                response.content  # noqa: B018 - read the body before the connection is released
                return response

        return t.cast("_Read | requests.Response", self.request_decorator(attempt)(request, None))

    @override
    def validate_response(self, response: requests.Response) -> None:
        """Classify a response: fine, retriable (429, 5xx) or a clear fatal error."""
        status = response.status_code
        if status < 400 and "text/html" in response.headers.get("Content-Type", ""):  # noqa: PLR2004
            msg = (
                f"{self.name}: HTTP {status} for {describe_request(response)} brought an HTML "
                "page, not Amplitude's data: a proxy, a captive portal or an outage page is in "
                "between; check api_url and the network"
            )
            raise RetriableAPIError(msg, response)
        if status < 400:  # noqa: PLR2004
            return
        if status in {401, 403}:
            raise AuthenticationError(self.auth_failure_message(response))
        if status == 429 or status >= 500:  # noqa: PLR2004
            raise RetriableAPIError(self.response_error_message(response), response)
        raise AmplitudeError(self.response_error_message(response))

    def auth_failure_message(self, response: requests.Response) -> str:
        """The one line shown when Amplitude refuses the keys."""
        region = self.config.get("region") or "us"
        return (
            f"Amplitude refused the credentials (HTTP {response.status_code} on "
            f"{urlsplit(response.url).path}): check api_key and secret_key, and that "
            f"region '{region}' (host {self.url_base}) is the project's data region."
        )

    @override
    def response_error_message(self, response: requests.Response) -> str:
        """Status, request and Amplitude's message, without headers or credentials."""
        return (
            f"{self.name}: HTTP {response.status_code} from Amplitude for "
            f"{describe_request(response)}: {error_summary(response)}"
        )

    @override
    def backoff_wait_generator(self) -> Generator[float, t.Any, None]:
        """Honour ``Retry-After`` when given, else exponential waits (2, 4, 8 … 300 s)."""
        return _retry_waits()

    @override
    def backoff_max_tries(self) -> int:
        """Enough tries to outlast Amplitude's rate-limit windows."""
        return MAX_TRIES

    @override
    def backoff_handler(self, details: Details) -> None:
        """Log each retry once, at WARNING, without the URL's host or any header."""
        exc = details.get("exception")
        response = getattr(exc, "response", None)
        if response is not None and response.status_code < 400:  # noqa: PLR2004
            reason = str(exc)  # what was wrong with a 200: it says, with the request
        elif response is not None:
            reason = f"HTTP {response.status_code} for {describe_request(response)}"
        elif isinstance(exc, requests.RequestException):
            reason = f"{type(exc).__name__} from {connection_failure(exc)}"
        else:
            reason = type(exc).__name__ if exc is not None else "an error"
        self.logger.warning(
            "%s: retrying after %s; waiting %.1f s (attempt %d of %d)",
            self.name,
            reason,
            details.get("wait", 0.0),
            details.get("tries", 0),
            MAX_TRIES,
        )


class DropRepeatedFailureLines(logging.Filter):
    """Drop lines that repeat, less usefully, what the tap says itself.

    The SDK's "An unhandled error occurred while syncing" comes right before the CLI's own
    one-line explanation; the ``backoff`` library's "Backing off" / "Giving up" lines repeat
    :meth:`AmplitudeStream.backoff_handler`'s retry line and the CLI's failure line, with the
    whole exception text. Two or three ERROR lines for one failure would only confuse.
    """

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if "backoff" in Path(record.pathname).parts:
            return False
        return not str(record.msg).startswith("An unhandled error occurred while syncing")


_REPEATED_FAILURE_LINES = DropRepeatedFailureLines()


def _retry_waits() -> Generator[float, t.Any, None]:
    """Wait generator for ``backoff``: receives each exception, yields seconds to wait."""
    attempt = 0
    exception = yield  # type: ignore[misc]  # backoff primes the generator with send(None)
    while True:
        requested = retry_after_seconds(getattr(exception, "response", None))
        attempt += 1
        wait = requested if requested is not None else min(2.0**attempt, MAX_WAIT_SECONDS)
        exception = yield min(wait, MAX_WAIT_SECONDS)
