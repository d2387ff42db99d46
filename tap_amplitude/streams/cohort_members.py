"""``cohort_members``: who is in each cohort, by cohort download (docs/amplitude-api.md §11).

Each download is asynchronous: request an export (this is what Amplitude counts against the
project's 500 downloads a month, §11.4), poll its status with growing waits, then fetch the
file, which may redirect to storage. The file, gzip-encoded CSV, is spooled to a temporary
file and read a row at a time, so a cohort of millions never sits in memory.

A cohort is downloaded again only when it changed since the bookmark (``lastMod``, or also
``lastComputed`` with ``cohort_download_trigger: last_computed``, §11.5). The bookmark keeps,
per cohort, what was downloaded, and any export still computing when the run gave up on it,
so the next run polls that export again instead of spending another download. STATE is
written after each cohort, so a run that stops keeps what it finished.
"""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
import time
import typing as t
import zlib
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.exceptions import RetriableAPIError
from typing_extensions import override

from tap_amplitude.client import (
    AmplitudeError,
    AmplitudeResponseError,
    AmplitudeStream,
    error_summary,
    retry_after_seconds,
)
from tap_amplitude.schemas import PROPERTY_BAG
from tap_amplitude.sdk import write_state
from tap_amplitude.settings import SettingsError
from tap_amplitude.streams.dashboard import (
    COHORTS_UNAVAILABLE,
    CohortsUnavailableError,
    epoch_to_rfc3339,
)
from tap_amplitude.timestamps import format_datetime, parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import requests
    from singer_sdk.helpers.types import Context, Record

COHORTS_PATH = "/api/3/cohorts"
REQUEST_PATH = "/api/5/cohorts/request/{}"
STATUS_PATH = "/api/5/cohorts/request-status/{}"
FILE_PATH = "/api/5/cohorts/request/{}/file"
MONTHLY_DOWNLOADS = 500
COMPLETED = "JOB COMPLETED"
# A finished export's /file link stays valid 7 days (§11.2); a pending one older is redone.
PENDING_TTL = timedelta(days=6)
FIRST_POLL_WAIT = 0.5
MAX_POLL_WAIT = 30.0
# A 429 asking to wait longer than this is not the 10-minute request limit: the monthly quota.
QUOTA_RETRY_AFTER_SECONDS = 3600.0
DOWNLOAD_CHUNK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
FAILED_STATES = ("FAIL", "ERROR", "CANCEL")  # a failed job's status is undocumented (§11.2)


class CohortQuotaSpentError(AmplitudeResponseError):
    """Amplitude refused an export request: the month's cohort downloads are used up."""


class CohortRefusedError(AmplitudeResponseError):
    """A 404 or 410 for one cohort, export or file: that cohort is skipped."""


def is_quota_refusal(response: requests.Response) -> bool:
    """Whether a refused export request means the monthly quota (its answer is undocumented).

    A 4xx naming a quota or the month, or a 429 asking to wait more than an hour (the
    request-rate limit is per 10 minutes).
    """
    if response.status_code not in {400, 402, 403, 429}:
        return False
    text = error_summary(response).lower()
    if "quota" in text or "month" in text:
        return True
    wait = retry_after_seconds(response)
    return response.status_code == 429 and wait is not None and wait > QUOTA_RETRY_AFTER_SECONDS  # noqa: PLR2004


def cell(value: str | None) -> str:
    """A CSV value without stray quotes or the tab some exports prefix."""
    return (value or "").strip().strip('"').strip()


def open_members_file(spooled: t.IO[bytes]) -> t.IO[bytes]:
    """The spooled body, gunzipped while it is gzip (requests may have decoded it already)."""
    spooled.seek(0)
    stream: t.IO[bytes] = spooled
    for _ in range(2):  # gzip-encoded transfer of a gzip file: at most twice
        head = stream.read(2)
        stream.seek(0)
        if head != GZIP_MAGIC:
            break
        stream = t.cast("t.IO[bytes]", gzip.GzipFile(fileobj=stream, mode="rb"))
    return stream


def member_rows(spooled: t.IO[bytes]) -> Iterator[dict[str, str]]:
    """Rows of a cohort file keyed by its (normalised) header, one at a time."""
    with io.TextIOWrapper(open_members_file(spooled), encoding="utf-8-sig", newline="") as text:
        reader = csv.reader(text)
        header = [cell(name) for name in next(reader, [])]
        for row in reader:
            if any(value.strip() for value in row):
                yield dict(zip(header, (cell(value) for value in row), strict=False))


def member_record(
    row: Mapping[str, str], cohort: Mapping[str, t.Any], requested: list[str], when: str
) -> Record:
    """One member: ids, the requested properties (``gp:`` names accepted) and cohort times."""
    ids = {"amplitude_id", "user_id"}
    keyed = {name.lower().replace(" ", "_"): value for name, value in row.items()}
    amplitude_id = keyed.get("amplitude_id") or ""
    properties: dict[str, t.Any] = {}
    used: set[str] = set()
    for name in requested:  # the header may name a custom property with or without gp:
        for column in (name, f"gp:{name}", name.removeprefix("gp:")):
            if column in row:
                properties[name] = row[column] or None
                used.add(column)
                break
    for column, value in row.items():
        if column not in used and column.lower().replace(" ", "_") not in ids:
            properties[column] = value or None
    return {
        "cohort_id": str(cohort["id"]),
        "amplitude_id": int(amplitude_id) if amplitude_id.isdigit() else None,
        "user_id": keyed.get("user_id") or None,
        "properties": properties,
        "cohort_last_modified_at": epoch_to_rfc3339(cohort.get("lastMod")),
        "cohort_last_computed_at": epoch_to_rfc3339(cohort.get("lastComputed")),
        "downloaded_at": when,
    }


class CohortMembersStream(AmplitudeStream):
    """Members of each cohort (or of ``cohort_ids``), downloaded again only when changed."""

    name = "cohort_members"
    path = COHORTS_PATH
    primary_keys = ("cohort_id", "amplitude_id")
    replication_key = "downloaded_at"
    is_sorted = True
    schema = th.PropertiesList(
        th.Property("cohort_id", th.StringType, required=True),
        th.Property("amplitude_id", th.IntegerType, required=True),
        th.Property("user_id", th.StringType, description="Null for members without one."),
        th.Property(
            "properties",
            PROPERTY_BAG,
            description="The cohort_member_properties asked for, as Amplitude's CSV gives them.",
        ),
        th.Property(
            "cohort_last_modified_at",
            th.DateTimeType,
            description="The cohort's lastMod when downloaded, RFC 3339 UTC.",
        ),
        th.Property(
            "cohort_last_computed_at",
            th.DateTimeType,
            description="The cohort's lastComputed when downloaded, RFC 3339 UTC.",
        ),
        th.Property(
            "downloaded_at",
            th.DateTimeType,
            required=True,
            description=(
                "When this snapshot of the cohort was downloaded; the newest per cohort is "
                "its current membership. The replication key."
            ),
        ),
    ).to_dict()

    single_response = True  # The stream makes its own requests.

    @override
    def validate_response(self, response: requests.Response) -> None:
        """Set apart the refusals the stream acts on: no add-on, quota, a gone cohort."""
        path = urlsplit(response.url).path
        status = response.status_code
        if not path.startswith("/api/") and status in {400, 401, 403}:
            # Storage refused the pre-signed link the file redirected to: it lives one
            # minute (§11.2), so ask /file again for a fresh one. The response stays out of
            # the error: its URL carries the link's signature, which logs must not show.
            message = f"{self.name}: the cohort file's storage link was refused (HTTP {status})"
            raise RetriableAPIError(message)
        if path.endswith(COHORTS_PATH) and status in {400, 401, 403}:
            raise CohortsUnavailableError(self.response_error_message(response), response)
        if path.startswith("/api/5/cohorts/"):
            if is_quota_refusal(response):
                raise CohortQuotaSpentError(self.response_error_message(response), response)
            if status in {404, 410}:
                raise CohortRefusedError(self.response_error_message(response), response)
        super().validate_response(response)

    # -- the run -----------------------------------------------------------------------

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """Members of every changed cohort; bookmarks after each one."""
        cohorts = self.list_cohorts()
        if cohorts is None:
            return
        state = self.stream_state
        parts = state.setdefault("cohorts", {}), state.setdefault("pending", {})
        if not all(
            isinstance(part, dict) and all(isinstance(entry, dict) for entry in part.values())
            for part in parts
        ):
            msg = (
                f"The state's bookmark of '{self.name}' holds 'cohorts' or 'pending' values "
                "that are not {cohort id: {...}}; remove the stream's entry from the state to "
                "download every chosen cohort again (downloads count against Amplitude's 500 a "
                "month)."
            )
            raise SettingsError(msg)
        done: dict[str, t.Any] = parts[0]
        pending: dict[str, t.Any] = parts[1]
        used = unchanged = 0
        try:
            for cohort in self.chosen(cohorts):
                cohort_id = str(cohort["id"])
                if not self.changed(done.get(cohort_id), cohort):
                    unchanged += 1
                    continue
                job = self.usable_pending(pending.get(cohort_id), cohort)
                if job is None:
                    try:
                        request_id = self.request_export(cohort_id)
                    except CohortQuotaSpentError as exc:
                        self.warn_quota(exc, used)
                        return
                    except CohortRefusedError as exc:
                        self.warn_refused(cohort, exc)
                        continue
                    used += 1
                    job = {
                        "request_id": request_id,
                        "requested_at": format_datetime(datetime.now(tz=timezone.utc)),
                        **self.signature(cohort),
                    }
                    pending[cohort_id] = job
                yield from self.complete(cohort, job, done, pending)
        finally:
            self.logger.info(
                "%s: %d cohort download(s) used this run (Amplitude allows %d a month per "
                "project); %d cohort(s) unchanged since the bookmark were not downloaded",
                self.name,
                used,
                MONTHLY_DOWNLOADS,
                unchanged,
            )

    def complete(
        self,
        cohort: Mapping[str, t.Any],
        job: dict[str, t.Any],
        done: dict[str, t.Any],
        pending: dict[str, t.Any],
    ) -> Iterator[Record]:
        """Wait for one export, then emit its members and move the cohort's bookmark."""
        cohort_id, request_id = str(cohort["id"]), str(job["request_id"])
        try:
            finished = self.wait_for(request_id)
        except CohortRefusedError as exc:
            pending.pop(cohort_id, None)  # gone (expired?): the next run requests it anew
            self.warn_refused(cohort, exc)
            write_state(self)
            return
        if not finished:
            self.logger.info(
                "%s: cohort %s (%s) is still being computed by Amplitude after %d s; skipped "
                "for now. The next run polls the same export (request %s) again, without "
                "spending another download.",
                self.name,
                cohort_id,
                cohort.get("name"),
                self.wait_seconds,
                request_id,
            )
            write_state(self)
            return
        when = format_datetime(datetime.now(tz=timezone.utc))
        requested = [str(name) for name in self.config.get("cohort_member_properties") or []]
        count = 0
        try:
            with self.download(request_id) as spooled:
                for row in member_rows(spooled):
                    count += 1
                    yield member_record(row, cohort, requested, when)
        except CohortRefusedError as exc:
            pending.pop(cohort_id, None)
            self.warn_refused(cohort, exc)
            write_state(self)
            return
        done[cohort_id] = {**self.signature(cohort), "downloaded_at": when, "members": count}
        pending.pop(cohort_id, None)
        self.logger.info(
            "%s: cohort %s (%s): %d members", self.name, cohort_id, cohort.get("name"), count
        )
        write_state(self)

    # -- choosing cohorts --------------------------------------------------------------

    def list_cohorts(self) -> list[dict[str, t.Any]] | None:
        """The cohort listing; None (one warning) when the project cannot list cohorts."""
        try:
            payload = self.get(COHORTS_PATH).json()
        except CohortsUnavailableError as exc:
            if exc.response.status_code != 400:  # noqa: PLR2004
                self.check_credentials()  # refused keys stop the run here
            self.logger.warning(
                COHORTS_UNAVAILABLE.replace("cohorts: ", f"{self.name}: ", 1),
                exc.response.status_code,
                error_summary(exc.response),
            )
            return None
        cohorts = payload.get("cohorts") if isinstance(payload, dict) else None
        return [c for c in cohorts or [] if isinstance(c, dict) and c.get("id")]

    def chosen(self, cohorts: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
        """``cohort_ids`` in the listing (unknown ones warned); else every unarchived cohort."""
        wanted = [str(cohort_id) for cohort_id in self.config.get("cohort_ids") or []]
        if not wanted:
            return [cohort for cohort in cohorts if not cohort.get("archived")]
        by_id = {str(cohort["id"]): cohort for cohort in cohorts}
        missing = [cohort_id for cohort_id in wanted if cohort_id not in by_id]
        if missing:
            self.logger.warning(
                "%s: cohort_ids lists %s, which Amplitude's cohort listing does not show; "
                "skipped. The other cohorts continue.",
                self.name,
                ", ".join(missing),
            )
        return [by_id[cohort_id] for cohort_id in dict.fromkeys(wanted) if cohort_id in by_id]

    @property
    def trigger_fields(self) -> tuple[str, ...]:
        """The cohort fields whose change means "download again"."""
        if self.config.get("cohort_download_trigger") == "last_computed":
            return ("lastMod", "lastComputed")
        return ("lastMod",)

    def signature(self, cohort: Mapping[str, t.Any]) -> dict[str, t.Any]:
        """What the bookmark keeps of a cohort's listing."""
        return {"lastMod": cohort.get("lastMod"), "lastComputed": cohort.get("lastComputed")}

    def changed(self, bookmark: Mapping[str, t.Any] | None, cohort: Mapping[str, t.Any]) -> bool:
        """Whether the cohort changed since it was last downloaded."""
        if not bookmark:
            return True
        return any(bookmark.get(key) != cohort.get(key) for key in self.trigger_fields)

    def usable_pending(
        self, job: Mapping[str, t.Any] | None, cohort: Mapping[str, t.Any]
    ) -> dict[str, t.Any] | None:
        """An export requested earlier for the same version of the cohort, still fresh."""
        if not job or self.changed(job, cohort):
            return None
        try:
            age = datetime.now(tz=timezone.utc) - parse_datetime(str(job.get("requested_at")))
        except ValueError:
            return None
        return dict(job) if age < PENDING_TTL else None

    # -- one export ----------------------------------------------------------------------

    @property
    def wait_seconds(self) -> int:
        """How long to poll one export."""
        return int(self.config.get("cohort_export_wait_seconds", 600))

    def request_export(self, cohort_id: str) -> str:
        """Step 1 (counts against the monthly quota): the export's request id."""
        params: dict[str, t.Any] = {}
        properties = [str(name) for name in self.config.get("cohort_member_properties") or []]
        if properties:
            params = {"props": "1", "propKeys": properties}
        payload = self.get(REQUEST_PATH.format(cohort_id), params).json()
        request_id = payload.get("request_id") if isinstance(payload, dict) else None
        if not request_id:
            message = f"{self.name}: Amplitude's answer to the export of {cohort_id} has no id"
            raise AmplitudeError(message)
        return str(request_id)

    def wait_for(self, request_id: str) -> bool:
        """Poll until the export is complete (True) or ``cohort_export_wait_seconds`` pass."""
        deadline = time.monotonic() + self.wait_seconds
        wait = FIRST_POLL_WAIT
        while True:
            response = self.get(STATUS_PATH.format(request_id))
            status = str((response.json() or {}).get("async_status") or "").upper()
            if response.status_code == 200 or status == COMPLETED:  # noqa: PLR2004
                return True
            if any(word in status for word in FAILED_STATES):
                raise CohortRefusedError(
                    f"{self.name}: export {request_id} ended as {status}", response
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(wait, remaining))
            wait = min(wait * 2, MAX_POLL_WAIT)

    def download(self, request_id: str) -> t.IO[bytes]:
        """Step 3: the file (after any redirect to storage), spooled to a temporary file."""
        prepared = self.build_prepared_request(
            method="GET",
            url=f"{self.url_base}{FILE_PATH.format(request_id)}",
            headers={"Accept": "*/*"},
        )
        return self.send(prepared, self.spool)

    def spool(self, response: requests.Response) -> t.IO[bytes]:
        """The body in a temporary file, checked whole (inside the retried attempt)."""
        self.validate_response(response)
        spooled = tempfile.TemporaryFile(prefix="tap-amplitude-cohort-")  # noqa: SIM115
        try:
            for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
                spooled.write(chunk)
            check_gzip(spooled)
        except BaseException:
            spooled.close()
            raise
        spooled.seek(0)
        return spooled

    # -- telling the user ----------------------------------------------------------------

    def warn_quota(self, exc: CohortQuotaSpentError, used: int) -> None:
        """One warning: the month's downloads are spent; the run ends cleanly."""
        self.logger.warning(
            "%s: Amplitude refused another cohort download: the project's monthly quota "
            "(%d) is spent (HTTP %d: %s). Stopping here; the %d cohort(s) downloaded this "
            "run keep their bookmarks, and the rest are downloaded by a later run once the "
            "quota allows.",
            self.name,
            MONTHLY_DOWNLOADS,
            exc.response.status_code,
            error_summary(exc.response),
            used,
        )
        write_state(self)

    def warn_refused(self, cohort: Mapping[str, t.Any], exc: AmplitudeResponseError) -> None:
        """One warning naming a cohort Amplitude would not export; the others continue."""
        self.logger.warning(
            "%s: cohort %s (%s) skipped: %s. The other cohorts continue.",
            self.name,
            cohort.get("id"),
            cohort.get("name"),
            str(exc),
        )


def check_gzip(spooled: t.IO[bytes]) -> None:
    """Read a gzip body through once, so a damaged one is retried rather than half-read."""
    spooled.seek(0)
    if spooled.read(2) != GZIP_MAGIC:
        return
    spooled.seek(0)
    try:
        with gzip.GzipFile(fileobj=spooled, mode="rb") as unpacked:
            while unpacked.read(DOWNLOAD_CHUNK_BYTES):
                pass
    except (OSError, EOFError, zlib.error) as exc:
        message = f"cohort file is damaged gzip ({exc})"
        raise RetriableAPIError(message) from exc
