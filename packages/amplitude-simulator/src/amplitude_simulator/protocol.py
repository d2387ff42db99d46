"""What route handlers work with: the request, the reply they build, and their context.

Handler modules (:mod:`amplitude_simulator.api`) import this module, never the server: the
server imports them. A handler is ``handler(context, request) -> SimResponse``; the
:class:`Context` is the running simulator, seen through what handlers may use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from amplitude_simulator.data.dataset import Dataset, Project
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

AuthScheme = Literal["basic", "api-key", "none"]  # "none": the handler checks, if at all
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
    query: str = ""  # the raw query string, for parameters that repeat (``propKeys``)

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
    #: Pace the body at this many bytes per second (``None``: full speed); see NetworkSettings.
    bytes_per_second: float | None = None

    @classmethod
    def text(cls, status: int, text: str, headers: dict[str, str] | None = None) -> SimResponse:
        """A plain-text reply, like Amplitude's non-JSON errors."""
        return cls(status, {"Content-Type": TEXT, **(headers or {})}, text.encode())

    @classmethod
    def json(cls, status: int, payload: Any) -> SimResponse:
        """A JSON reply."""
        return cls(status, {"Content-Type": JSON}, compact_json(payload))

    @classmethod
    def empty(cls, status: int) -> SimResponse:
        """No body at all (Amplitude's unknown-path 404)."""
        return cls(status)

    @classmethod
    def error(cls, status: int, message: str, **metadata: Any) -> SimResponse:
        """The Dashboard REST error envelope (docs/amplitude-api.md §1.4)."""
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


def compact_json(payload: Any) -> bytes:
    """JSON without whitespace, as Amplitude's APIs answer."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class Context(Protocol):
    """The simulator as handlers see it: its data, its clock and its per-simulator settings."""

    @property
    def dataset(self) -> Dataset:
        """The data served."""
        ...

    @property
    def project(self) -> Project:
        """The project impersonated (its app id and keys)."""
        ...

    @property
    def export(self) -> ExportSettings:
        """Export API switches."""
        ...

    @property
    def analytics(self) -> AnalyticsSettings:
        """Chart and cohort switches."""
        ...

    @property
    def deletions(self) -> DeletionSettings:
        """The deletion API's limit and its jobs."""
        ...

    @property
    def dsar(self) -> DsarSettings:
        """The DSAR API's keys, requests and budget."""
        ...

    @property
    def usermap(self) -> UserMapSettings:
        """User mappings."""
        ...

    @property
    def taxonomy(self) -> TaxonomySettings:
        """The Taxonomy API's plan and limits."""
        ...

    @property
    def cohort_export(self) -> CohortExportSettings:
        """Cohort download jobs, quota and revisions."""
        ...

    @property
    def annotations(self) -> AnnotationSettings:
        """Chart annotations (v2 and v3) and categories."""
        ...

    @property
    def charts(self) -> ChartSettings:
        """Saved-chart results."""
        ...

    def current_time(self) -> datetime:
        """The simulator's now (UTC)."""
        ...

    def export_cutoff(self) -> datetime:
        """The first upload hour not yet exportable."""
        ...


Handler = Callable[[Context, SimRequest], SimResponse]


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
