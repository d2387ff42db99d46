"""One Export API request: its status semantics, and the body spooled to a temporary file.

Bodies can be gigabytes, so they are copied to disk in chunks inside the retried attempt: a
transfer cut short, or a 200 that is not a zip, is retried like any transient failure.
"""

from __future__ import annotations

import tempfile
import threading
import typing as t
import zipfile
from functools import partial
from urllib.parse import urlsplit

from singer_sdk.exceptions import RetriableAPIError

from tap_amplitude.client import AmplitudeError, error_summary

if t.TYPE_CHECKING:
    import requests

    from tap_amplitude.client import AmplitudeStream
    from tap_amplitude.export.windows import Window

DOWNLOAD_CHUNK_BYTES = 1 << 20
NO_DATA_TEXT = "raw data files were not found"  # Amplitude's 404 body for an empty window
S3_HINT = (
    "Amplitude cannot export that much data for a single hour through the Export API; "
    "set storage_export_url to read Amplitude's Amazon S3 export (or its GCS export) "
    "instead, which has no size limit (README: 'Reading the S3 / GCS export')."
)


def _says_too_large(response: requests.Response) -> bool:
    """Whether a 400 is Amplitude's "over 4 GB" refusal (§2.4), not another complaint."""
    text = response.text.lower()
    return "too large" in text or "4gb" in text or "4 gb" in text


class WindowTooLargeError(Exception):
    """Amplitude answered 400 (over 4 GB) or 504 for a multi-hour window: split it."""


class DownloadCancelledError(Exception):
    """The run stopped while this window was still downloading."""


class ExportDownloader:
    """Fetches windows for one stream; ``None`` means Amplitude has no data for the window."""

    def __init__(self, stream: AmplitudeStream) -> None:
        """Requests go through the stream's session, limiter and retries."""
        self.stream = stream
        self.cancelled = threading.Event()

    def __call__(self, window: Window) -> t.IO[bytes] | None:
        """Download one window to a temporary file, with retries."""
        stream = self.stream
        request = stream.build_prepared_request(
            method="GET",
            url=stream.get_url(None),
            params=window.params(),
            headers=stream.http_headers,
        )
        try:
            return stream.send(request, partial(self.read, window))
        except RetriableAPIError as exc:
            if exc.response is not None and exc.response.status_code == 504:  # noqa: PLR2004
                msg = f"{stream.name}: Amplitude timed out (HTTP 504) exporting {window.label()}. "
                raise AmplitudeError(msg + S3_HINT) from exc
            raise

    def read(self, window: Window, response: requests.Response) -> t.IO[bytes] | None:
        """Classify the status the Export API's way, then spool the body."""
        name = self.stream.name
        status = response.status_code
        if status == 404:  # noqa: PLR2004
            if NO_DATA_TEXT in response.text.lower():
                self.stream.logger.debug("%s: no data for %s", name, window.label())
                return None
            path = urlsplit(self.stream.url_base).path.strip("/")
            extra = (
                f": it ends in a path (/{path}), which Amplitude's hosts do not have"
                if path
                else ""
            )
            msg = (
                f"{name}: HTTP 404 without Amplitude's no-data message for {window.label()}; "
                f"check api_url ({self.stream.url_base}) points at Amplitude{extra}."
            )
            raise AmplitudeError(msg)
        too_large = status == 504 or (status == 400 and _says_too_large(response))  # noqa: PLR2004
        if too_large and window.hours > 1:
            msg = f"HTTP {status} ({error_summary(response)})"
            raise WindowTooLargeError(msg)
        if status == 400:  # noqa: PLR2004
            what, hint = (
                ("the single hour", S3_HINT)
                if too_large
                else ("the export of", "Check start_date, end_date and api_url.")
            )
            msg = (
                f"{name}: Amplitude refused {what} {window.label()} "
                f"(HTTP 400: {error_summary(response)}). {hint}"
            )
            raise AmplitudeError(msg)
        self.stream.validate_response(response)
        try:
            return self.spool(response, window)
        except zipfile.BadZipFile as exc:
            msg = f"{name}: the body for {window.label()} is not a complete zip ({exc})"
            raise RetriableAPIError(msg, response) from exc

    def spool(self, response: requests.Response, window: Window) -> t.IO[bytes]:
        """Copy the body to a temporary file and check every member's CRC.

        Raises:
            zipfile.BadZipFile: the body is not a complete zip archive.
            AmplitudeError: the temporary directory cannot take the download.
        """
        try:
            spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
        except OSError as exc:
            raise self._spool_error(window, exc) from exc
        try:
            self._fill(spool, response, window)
        except BaseException:
            spool.close()
            raise
        return spool

    def _fill(self, spool: t.IO[bytes], response: requests.Response, window: Window) -> None:
        """Copy the body in chunks, then open the archive and verify every member's CRC."""
        for chunk in response.iter_content(DOWNLOAD_CHUNK_BYTES):
            if self.cancelled.is_set():
                raise DownloadCancelledError(window.label())
            self._write(spool, chunk, window)
        spool.seek(0)
        with zipfile.ZipFile(spool) as archive:
            damaged = archive.testzip()
        if damaged is not None:
            msg = f"member {damaged} fails its CRC check"
            raise zipfile.BadZipFile(msg)
        spool.seek(0)

    def _write(self, spool: t.IO[bytes], chunk: bytes, window: Window) -> None:
        """Disk errors are the user's to fix (network errors are retried, so kept apart)."""
        try:
            spool.write(chunk)
        except OSError as exc:
            raise self._spool_error(window, exc) from exc

    def _spool_error(self, window: Window, exc: OSError) -> AmplitudeError:
        directory = tempfile.gettempdir()
        return AmplitudeError(
            f"{self.stream.name}: cannot write the download of {window.label()} to the "
            f"temporary directory {directory} ({exc.strerror or exc}). It needs write access "
            "and free space for the largest export window (Amplitude allows up to 4 GB); "
            "free space there or set TMPDIR to a directory that has it."
        )
