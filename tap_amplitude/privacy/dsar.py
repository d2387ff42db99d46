"""The DSAR API client (docs/amplitude-api.md §14) and its cost budget.

Requests go through :meth:`~tap_amplitude.client.AmplitudeStream.send`: the project's
limiter and the SDK's retries (429 and 5xx honour ``Retry-After``). On top of that, every
request to ``/api/2/dsar`` first takes its cost from :class:`DsarBudget` (POST 8, GET 1,
14,400 per hour, §14.5), so a run never earns a 429 by itself.

Where the docs are unclear, the client accepts the alternatives (§14.2-§14.4):

* keys: ``org_api_key``/``org_secret_key`` when configured, else the project's pair; a 401
  or 403 is reported in one line naming the settings to set;
* ``POST`` may answer 200 or 202, with ``requestId`` (or ``request_id``/``id``);
* status values are compared case-insensitively; a status read may answer 200 or 202;
* an output link may answer the data directly or redirect to it (redirects are followed,
  and ``requests`` drops the credentials when the host changes, as pre-signed S3 links
  require); ``expires`` may be a date or a timestamp;
* outputs may be gzip (what the docs say) or plain JSON lines; either way every line must
  be a JSON object, and the file is kept as gzip.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
import typing as t
import zlib
from dataclasses import dataclass
from functools import cached_property

import requests
from pyrate_limiter import InMemoryBucket, Limiter, Rate
from singer_sdk.exceptions import RetriableAPIError
from typing_extensions import override

from tap_amplitude.client import AmplitudeError, AmplitudeStream, api_base_url, error_summary
from tap_amplitude.privacy.base import PRIVATE_FILE_MODE, key_hash, open_private

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from singer_sdk.helpers.types import Context, RequestFunc

DSAR_PATH = "/api/2/dsar/requests"
DSAR_COST_PER_HOUR = 14_400
DSAR_WINDOW_SECONDS = 3600.0
POST_COST = 8
GET_COST = 1
# Our window is kept a little longer than Amplitude's (see ratelimit.WINDOW_MARGIN).
WINDOW_MARGIN = 0.02
_CHUNK = 1 << 20


class DsarKeysRefusedError(AmplitudeError):
    """The DSAR API refused the keys (401/403)."""


class OutputsExpiredError(AmplitudeError):
    """The outputs can no longer be downloaded (404/410 after ``expires``)."""


class DamagedOutputError(RetriableAPIError):
    """A download that is not whole gzip JSON lines; fetched again through a fresh link."""


@dataclass(frozen=True)
class Download:
    """One output saved to disk."""

    path: Path
    rows: int
    sha256: str
    size: int


class DsarBudget:
    """The DSAR API's cost budget: ``limit`` per ``window`` seconds, POST 8 and GET 1.

    One per organisation key (or project key) in the process; :meth:`take` blocks, after
    one log line, until the cost fits.
    """

    def __init__(
        self, limit: int = DSAR_COST_PER_HOUR, window: float = DSAR_WINDOW_SECONDS
    ) -> None:
        """A sliding window of ``limit`` units."""
        self.limit = limit
        self.window = window
        window_ms = int(window * (1 + WINDOW_MARGIN) * 1000)
        self.bucket = InMemoryBucket([Rate(limit, window_ms)])
        self.limiter = Limiter(self.bucket)

    def take(self, cost: int, *, log: Callable[[str], None] | None = None) -> None:
        """Take ``cost`` units, waiting until the window has them."""
        weight = min(cost, self.limit)
        if self.limiter.try_acquire("dsar", weight, blocking=False) is True:
            return
        if log is not None:
            log(
                f"waiting for the DSAR API's cost budget ({self.limit} per {self.window:g} s; "
                f"this request costs {cost})"
            )
        self.limiter.try_acquire("dsar", weight)


_BUDGETS: dict[tuple[str, str], DsarBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def dsar_budget(base_url: str, key: str) -> DsarBudget:
    """The process-wide budget of one DSAR account (keyed by a hash of its API key)."""
    with _BUDGETS_LOCK:
        found = _BUDGETS.get((base_url, key_hash(key)))
        if found is None:
            found = DsarBudget(DSAR_COST_PER_HOUR, DSAR_WINDOW_SECONDS)
            _BUDGETS[base_url, key_hash(key)] = found
        return found


def dsar_cost(prepared: requests.PreparedRequest) -> int:
    """What a request costs against the DSAR budget (0 outside ``/api/2/dsar``)."""
    if DSAR_PATH not in (prepared.path_url or ""):
        return 0
    return POST_COST if prepared.method == "POST" else GET_COST


def uses_org_keys(config: Mapping[str, t.Any]) -> bool:
    """Whether the config names an organisation key pair for the DSAR API."""
    return bool(config.get("org_api_key") and config.get("org_secret_key"))


class DsarClient(AmplitudeStream):
    """Creates DSAR requests, reads their status and downloads their outputs."""

    name = "dsar"
    path = DSAR_PATH
    schema: t.ClassVar[dict[str, t.Any]] = {"type": "object", "properties": {}}

    def __init__(self, *args: t.Any, budget: DsarBudget | None = None, **kwargs: t.Any) -> None:
        """Use ``budget``, or the process-wide one of the keys in use."""
        super().__init__(*args, **kwargs)
        key = str(self.config.get("org_api_key") or self.config["api_key"])
        self.budget = budget or dsar_budget(api_base_url(self.config), key)

    @cached_property
    @override
    def authenticator(self) -> requests.auth.HTTPBasicAuth:
        """Basic auth with the organisation's keys when configured, else the project's."""
        if uses_org_keys(self.config):
            return requests.auth.HTTPBasicAuth(
                self.config["org_api_key"], self.config["org_secret_key"]
            )
        return requests.auth.HTTPBasicAuth(self.config["api_key"], self.config["secret_key"])

    @override
    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """The project's limits and retries, each attempt first paying the DSAR budget."""
        budget = self.budget

        def paid(prepared: requests.PreparedRequest, context: Context | None) -> t.Any:
            cost = dsar_cost(prepared)
            if cost:
                budget.take(cost, log=lambda line: self.logger.info("%s: %s", self.name, line))
            return func(prepared, context)

        return super().request_decorator(paid)

    @override
    def auth_failure_message(self, response: requests.Response) -> str:
        """Name the keys that were refused and the settings that fix it."""
        if uses_org_keys(self.config):
            return (
                f"the DSAR API refused org_api_key/org_secret_key (HTTP {response.status_code}: "
                f"{error_summary(response)}); check them, and that region/api_url is the "
                "organisation's data region"
            )
        return (
            f"the DSAR API refused the project keys (HTTP {response.status_code}); it needs "
            "organization keys: set org_api_key and org_secret_key in the config (request "
            "them from Amplitude Support), or use --events-from-activity"
        )

    @override
    def validate_response(self, response: requests.Response) -> None:
        """401/403 name the DSAR keys; 410 (and 404) on an output mean the outputs expired.

        A refusal after a redirect comes from the pre-signed link (expired, most likely), not
        from Amplitude's API: it is retried, which asks for a fresh link.
        """
        status = response.status_code
        if response.history and status in {401, 403}:
            msg = (
                f"{self.name}: the pre-signed download link was refused (HTTP {status}); "
                "asking Amplitude for a fresh one"
            )
            raise RetriableAPIError(msg, response)
        if status in {401, 403}:
            raise DsarKeysRefusedError(self.auth_failure_message(response))
        if status in {404, 410} and "/outputs/" in (response.request.path_url or ""):
            raise OutputsExpiredError(f"HTTP {status} for a DSAR output: {error_summary(response)}")
        super().validate_response(response)

    # -- the three calls ---------------------------------------------------------------

    def create(self, body: dict[str, t.Any]) -> int:
        """POST a request; its ``requestId``."""
        prepared = self.build_prepared_request(
            method="POST", url=self.get_url(None), headers=self._json_headers, json=body
        )
        response = self.send(prepared)
        payload = _json(response)
        for key in ("requestId", "request_id", "id"):
            value = payload.get(key) if isinstance(payload, dict) else None
            if value is not None and str(value).isdigit():
                return int(value)
        raise AmplitudeError(
            f"{self.name}: the DSAR API accepted the request (HTTP {response.status_code}) "
            "but its answer has no requestId"
        )

    def status(self, request_id: int) -> dict[str, t.Any]:
        """The request's fields, ``status`` lower-cased, ``urls`` always a list."""
        prepared = self.build_prepared_request(
            method="GET", url=f"{self.get_url(None)}/{request_id}", headers=self._json_headers
        )
        payload = _json(self.send(prepared))
        if not isinstance(payload, dict):
            raise AmplitudeError(
                f"{self.name}: the status of request {request_id} is not an object"
            )
        payload["status"] = str(payload.get("status") or "").strip().lower()
        urls = payload.get("urls")
        payload["urls"] = [str(url) for url in urls] if isinstance(urls, list) else []
        return payload

    def download(self, url: str, target: Path) -> Download:
        """Save one output as ``target`` (0600) after checking it is whole JSON lines.

        A damaged body is fetched again (the output link is asked for again each time, so
        an expired pre-signed link is replaced); the file only appears once it is whole.
        """
        partial = target.with_name(f".{target.name}.partial")

        def read(response: requests.Response) -> Download:
            self.validate_response(response)
            return _save(response, partial, target)

        prepared = self.build_prepared_request(method="GET", url=url, headers=self._any_headers)
        return self.send(prepared, read)

    @property
    def _json_headers(self) -> dict[str, str]:
        return {"Accept": "application/json", "Content-Type": "application/json"}

    @property
    def _any_headers(self) -> dict[str, str]:
        return {"Accept": "*/*"}


def _json(response: requests.Response) -> t.Any:
    """The body as JSON; a body that is not JSON is a transient failure (retried)."""
    try:
        return response.json()
    except ValueError as exc:
        msg = f"dsar: HTTP {response.status_code} answer is not JSON"
        raise RetriableAPIError(msg, response) from exc


def _save(response: requests.Response, partial: Path, target: Path) -> Download:
    """Stream the body to ``partial``, check it, then move it to ``target``."""
    fd = open_private(partial, os.O_WRONLY | os.O_TRUNC)
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb") as out:
        for chunk in response.iter_content(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    try:
        rows = _check_lines(partial)
    except DamagedOutputError:
        partial.unlink(missing_ok=True)
        raise
    if rows is None:  # plain JSON lines: kept gzip-compressed, like every other output
        data = partial.read_bytes()
        packed = gzip.compress(data, mtime=0)
        fd = open_private(partial, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "wb") as out:
            out.write(packed)
            os.fsync(out.fileno())
        rows = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        digest, size = hashlib.sha256(packed), len(packed)
    partial.replace(target)
    target.chmod(PRIVATE_FILE_MODE)
    return Download(target, rows, digest.hexdigest(), size)


def _check_lines(path: Path) -> int | None:
    """Rows in a gzip JSON-lines file; None if it is plain (not gzip) JSON lines.

    Raises:
        DamagedOutputError: if the gzip is damaged or a line is not a JSON object.
    """
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    rows = 0
    try:
        with gzip.open(path, "rb") if gzipped else path.open("rb") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                if not isinstance(json.loads(line), dict):
                    _damaged(f"line {number} is not a JSON object")
                rows += 1
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        _damaged(f"{type(exc).__name__}: {exc}")
    return rows if gzipped else None


def _damaged(reason: str) -> t.NoReturn:
    msg = f"dsar: a downloaded output is not whole gzip JSON lines ({reason}); fetching it again"
    raise DamagedOutputError(msg)
