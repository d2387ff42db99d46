"""The bucket behind ``storage_export_url``: fsspec filesystems, listings, one-line errors.

fsspec (with s3fs or gcsfs, the ``s3`` / ``gcs`` extras) is imported only when a stream reads
the bucket, so the tap itself does not need it. Every failure the user can fix ends in one
:class:`~tap_amplitude.client.AmplitudeError` naming the URL (without credentials) and what to
check; values from ``storage_options`` never appear in a message.
"""

from __future__ import annotations

import decimal
import os
import re
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from tap_amplitude.client import AmplitudeError
from tap_amplitude.storage.layout import APP_FOLDER, ORG_FOLDER

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "file": "file"}
EXTRAS = {"s3": "s3", "gcs": "gcs", "file": "storage"}
READ_BLOCK_BYTES = 8 << 20  # ranged reads of this size, read ahead (s3fs defaults to 50 MB)
POLICY_HINT = {
    "s3": (
        "check the credentials (storage_options key/secret or profile, or the AWS environment) "
        "and that the bucket policy lets them s3:ListBucket and s3:GetObject (and kms:Decrypt "
        "if the bucket uses SSE-KMS)"
    ),
    "gcs": (
        "check the credentials (storage_options token, or GOOGLE_APPLICATION_CREDENTIALS) and "
        "that they have storage.objects.list and storage.objects.get on the bucket"
    ),
    "file": "check that the folder exists and that this user may read it",
}


def display_url(url: str) -> str:
    """The URL as messages show it: any ``user:password@`` and query string dropped."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def scheme_problem(url: str) -> str | None:
    """Why ``storage_export_url`` cannot be read, judged from its text alone."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        return "must start with s3://, gs:// or file:// (e.g. s3://my-bucket/amplitude)"
    if parts.scheme.lower() != "file" and not parts.netloc:
        return "needs a bucket name (e.g. s3://my-bucket/amplitude)"
    if parts.scheme.lower() == "file" and not parts.path.startswith("/"):
        return "a file:// URL needs an absolute path (e.g. file:///data/amplitude)"
    return None


@dataclass(frozen=True)
class Entry:
    """One listed object: its path, its key relative to the export root, and its identity."""

    path: str
    key: str  # "{scope}/{name}", as STATE records it
    identity: str  # size and ETag / generation / mtime: changes when the object is rewritten
    directory: bool = False  # a folder (or a key ending in '/') named like an object


class Bucket:
    """The export root of ``storage_export_url`` on its filesystem."""

    def __init__(self, url: str, options: Mapping[str, t.Any] | None = None) -> None:
        """Open the filesystem (fsspec imported here); nothing is listed yet."""
        problem = scheme_problem(url)
        self.url = display_url(url)
        if problem:
            raise AmplitudeError(f"storage_export_url {self.url}: {problem}")
        parts = urlsplit(url)
        self.protocol = SCHEMES[parts.scheme.lower()]
        if self.protocol == "file":
            self.root = parts.path.rstrip("/") or "/"
        else:
            self.root = f"{parts.netloc.rsplit('@', 1)[-1]}{parts.path}".rstrip("/")
        self.fs = self._filesystem(_plain(dict(options or {})))

    def _filesystem(self, options: dict[str, t.Any]) -> t.Any:
        extra = EXTRAS[self.protocol]
        try:
            import fsspec  # type: ignore[import-untyped]  # noqa: PLC0415 - optional, lazy

            return fsspec.filesystem(self.protocol, skip_instance_cache=True, **options)
        except ImportError as exc:
            msg = (
                f"storage_export_url {self.url}: reading it needs fsspec"
                f"{' and ' + ('s3fs' if extra == 's3' else 'gcsfs') if extra != 'storage' else ''}"
                f"; install tap-amplitude[{extra}] (e.g. pip install 'tap-amplitude[{extra}]')"
            )
            raise AmplitudeError(msg) from exc
        except (TypeError, ValueError) as exc:
            msg = (
                f"storage_export_url {self.url}: storage_options were refused by the "
                f"{self.protocol} filesystem ({type(exc).__name__}); check their names against "
                "the README's examples"
            )
            raise AmplitudeError(msg) from exc

    def problem(self, what: str, exc: BaseException) -> AmplitudeError:
        """One line for a failed listing or read, by cause; never a credential."""
        hint = POLICY_HINT[self.protocol]
        if isinstance(exc, PermissionError) or _looks_denied(exc):
            return AmplitudeError(f"{what}: access denied ({brief(exc)}); {hint}.")
        if isinstance(exc, (TypeError, ValueError)):  # the cloud SDK refused an option
            return AmplitudeError(
                f"{what}: the {self.protocol} filesystem refused storage_options "
                f"({brief(exc)}); check their names and types against the README's examples "
                '(e.g. {"key": "…", "secret": "…"} or {"profile": "…"}; endpoint_url a full '
                "http(s):// URL)."
            )
        if isinstance(exc, FileNotFoundError):
            where = "folder" if self.protocol == "file" else "bucket"
            return AmplitudeError(
                f"{what}: the {where} or prefix does not exist ({brief(exc)}); check "
                f"storage_export_url: it names the {where} and the prefix under which "
                "Amplitude writes its {app_id}/ folders."
            )
        return AmplitudeError(f"{what}: {brief(exc)}; {hint}, and the network.")

    def folders(self) -> tuple[list[str], list[str]]:
        """App folders (``187520``) and organisation folders (``-189524``) under the root.

        Raises:
            AmplitudeError: the root cannot be listed.
        """
        what = f"storage_export_url {self.url}: cannot list it"
        try:
            listed = self.fs.ls(self.root, detail=True, refresh=True)
        except Exception as exc:
            raise self.problem(what, exc) from exc
        names = sorted(
            str(item["name"]).rstrip("/").rsplit("/", 1)[-1]
            for item in listed
            if item.get("type") == "directory"
        )
        apps = sorted((name for name in names if APP_FOLDER.match(name)), key=int)
        orgs = [name for name in names if ORG_FOLDER.match(name)]
        return apps, orgs

    def list_prefix(self, folder: str, prefix: str) -> Iterator[Entry]:
        """Objects of ``{root}/{folder}/`` whose name starts with ``prefix``, any order.

        Raises:
            AmplitudeError: the folder cannot be listed.
        """
        directory = f"{self.root}/{folder}"
        what = f"storage_export_url {self.url}: cannot list {folder}/{prefix}*"
        try:
            if self.protocol == "file":
                yield from self._scan(directory, folder, prefix)
                return
            listed = self.fs.find(directory, maxdepth=1, prefix=prefix, detail=True, withdirs=True)
        except AmplitudeError:
            raise
        except Exception as exc:
            raise self.problem(what, exc) from exc
        for path, info in listed.items():
            name = str(path).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(prefix):
                directory = info.get("type") != "file"
                yield Entry(str(path), f"{folder}/{name}", _identity(info), directory)

    def _scan(self, directory: str, folder: str, prefix: str) -> Iterator[Entry]:
        """A local folder, read entry by entry (only matching names are kept)."""
        try:
            entries = os.scandir(directory)
        except FileNotFoundError:
            return  # an app folder without data yet
        with entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    stat = entry.stat()
                    yield Entry(
                        entry.path,
                        f"{folder}/{entry.name}",
                        f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}",
                        directory=not entry.is_file(),
                    )

    def open(self, path: str) -> t.BinaryIO:
        """An object for streaming reads (ranged reads, never the whole object in memory)."""
        if self.protocol == "file":
            return open(path, "rb")  # noqa: PTH123 - the caller closes it
        return t.cast(
            "t.BinaryIO",
            self.fs.open(path, "rb", block_size=READ_BLOCK_BYTES, cache_type="readahead"),
        )


def _plain(value: t.Any) -> t.Any:
    """JSON numbers read as ``Decimal`` (config files) as int or float, for the cloud SDKs."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _identity(info: Mapping[str, t.Any]) -> str:
    """Size plus the first of ETag, generation, MD5 or modification time the listing has."""
    for field in ("generation", "ETag", "etag", "md5Hash", "mtime", "LastModified", "updated"):
        value = info.get(field)
        if value not in (None, ""):
            return f"{info.get('size')}:{str(value).strip(chr(34))}"
    return f"{info.get('size')}:"


_DENIED = re.compile(
    r"AccessDenied|Forbidden|InvalidAccessKeyId|SignatureDoesNotMatch|403", re.IGNORECASE
)


def _looks_denied(exc: BaseException) -> bool:
    return bool(_DENIED.search(f"{type(exc).__name__} {exc}")) or (
        type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError"}
    )


def brief(exc: BaseException) -> str:
    """An exception as ``Type: first line``, with any ``user:password@`` removed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"//[^/@\s]+@", "//***@", text)[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
