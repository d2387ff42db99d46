"""Amplitude's cloud-storage export of the dataset: the bucket layout, on a simulated clock.

Amplitude pushes hourly gzipped JSON-lines files into the customer's S3 or GCS bucket
(docs/amplitude-api.md §16, merged ids §15.4)::

    {prefix}/{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz     events of upload hour H, parts n
    {prefix}/{app}/{app}_{YYYY-MM-DD}_{H}_complete         the hour is done (may be off)
    {prefix}/-{org}/-{org}_{YYYY-MM-DD}_{H}.json.gz        merged Amplitude ids

:class:`BucketExport` runs export jobs as the simulated clock passes: each hour is exported
``delay_hours`` after it ends, jobs may carry several hours (written newest first, so hours
land out of order), every ``late_every``-th hour is held back ``late_by_hours``, and
:meth:`BucketExport.backfill` rewrites hours already exported with other partitions and new
bytes (new ETags), as Amplitude's de-duplicating backfill does. Objects go to a folder
(:class:`FolderSink`) or to an S3 API (:class:`S3Sink`, needing the ``s3`` extra: boto3).
Event parts are byte-identical to the Export API's archive members (``hour_members``).

``amplitude-simulator write-bucket TARGET`` is the command-line form.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amplitude_simulator.data.dataset import Dataset, hour_lines, hour_members
from amplitude_simulator.data.values import HOUR, HOUR_MS, to_ms

if TYPE_CHECKING:
    from collections.abc import Sequence

DEFAULT_ORG_ID = 189524


class Sink(Protocol):
    """Where objects go: a folder or a bucket."""

    def put(self, key: str, data: bytes) -> None:
        """Write (or replace) one object."""

    def delete(self, key: str) -> None:
        """Remove one object (no error if it is missing)."""


class FolderSink:
    """Objects as files under ``root``; each is replaced atomically (rename)."""

    def __init__(self, root: Path | str) -> None:
        """Objects go under ``root`` (created as needed)."""
        self.root = Path(root)

    def put(self, key: str, data: bytes) -> None:
        """Write to a temporary file beside the object, then rename it over the object."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, prefix=".tmp-") as out:
            out.write(data)
        os.replace(out.name, path)  # noqa: PTH105 - a str path from tempfile

    def delete(self, key: str) -> None:
        """Remove the file if it is there."""
        (self.root / key).unlink(missing_ok=True)


class S3Sink:
    """Objects in an S3 bucket through boto3 (``pip install 'amplitude-simulator[s3]'``)."""

    def __init__(  # noqa: PLR0913 - S3 connection settings
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        key: str | None = None,
        secret: str | None = None,
        region: str = "us-east-1",
        create: bool = True,
    ) -> None:
        """Connect (the bucket is created when ``create`` and missing)."""
        try:
            import boto3  # type: ignore[import-untyped]  # noqa: PLC0415 - optional extra
        except ImportError as exc:
            raise SystemExit(
                "writing to S3 needs boto3: pip install 'amplitude-simulator[s3]'"
            ) from exc
        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=region,
        )
        if create:
            existing = {item["Name"] for item in self.client.list_buckets().get("Buckets", [])}
            if bucket not in existing:
                self.client.create_bucket(Bucket=bucket)

    def put(self, key: str, data: bytes) -> None:
        """PUT one object."""
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        """DELETE one object."""
        self.client.delete_object(Bucket=self.bucket, Key=key)


@dataclass
class Schedule:
    """When Amplitude's export jobs run, relative to the hours they carry."""

    delay_hours: int = 1  # an hour is exported this long after it ends
    hours_per_job: int = 1  # a job runs every this many hours, carrying every hour due
    late_every: int = 0  # every Nth hour of the dataset is held back (0: none)
    late_by_hours: int = 3
    markers: bool = True  # write ``_complete`` markers (Amplitude Support can switch them off)


@dataclass(frozen=True)
class Merge:
    """One merged-id record (docs/amplitude-api.md §15.4).

    ``amplitude_id`` was merged into ``merged_amplitude_id``.
    """

    amplitude_id: int
    merged_amplitude_id: int
    merge_time_ms: int
    merge_server_time_ms: int


@dataclass
class BucketExport:
    """The dataset's export into ``sink`` under ``prefix``, job by job."""

    dataset: Dataset
    sink: Sink
    prefix: str = ""
    org_id: int = DEFAULT_ORG_ID
    schedule: Schedule = field(default_factory=Schedule)
    merged_ids: bool = True
    exported: set[datetime] = field(default_factory=set)
    jobs: list[list[datetime]] = field(default_factory=list)  # hours of each job, as written
    parts: dict[datetime, int] = field(default_factory=dict)  # parts each hour has now
    rewrites: int = 0

    # ---------------------------------------------------------------- names

    def _key(self, name: str) -> str:
        return f"{self.prefix.strip('/')}/{name}" if self.prefix.strip("/") else name

    def event_key(self, hour: datetime, part: int) -> str:
        """``{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz`` (hour not zero-padded)."""
        app = self.dataset.app_id
        return self._key(f"{app}/{app}_{hour:%Y-%m-%d}_{hour.hour}#{part}.json.gz")

    def marker_key(self, hour: datetime) -> str:
        """``{app}/{app}_{YYYY-MM-DD}_{H}_complete``."""
        app = self.dataset.app_id
        return self._key(f"{app}/{app}_{hour:%Y-%m-%d}_{hour.hour}_complete")

    def merged_key(self, hour: datetime) -> str:
        """``-{org}/-{org}_{YYYY-MM-DD}_{H}.json.gz``."""
        return self._key(f"-{self.org_id}/-{self.org_id}_{hour:%Y-%m-%d}_{hour.hour}.json.gz")

    # ---------------------------------------------------------------- the clock

    def due(self, hour: datetime) -> datetime:
        """When the job carrying ``hour`` may run."""
        schedule = self.schedule
        wait = HOUR * (1 + schedule.delay_hours)
        index = int((hour - self.dataset.start) / HOUR)
        if schedule.late_every and (index + 1) % schedule.late_every == 0:
            wait += HOUR * schedule.late_by_hours
        return hour + wait

    def run_until(self, now: datetime) -> list[list[datetime]]:
        """Run every job due by ``now`` (on the job clock's ticks); the hours of each job."""
        every = HOUR * max(1, self.schedule.hours_per_job)
        tick = self.dataset.start + every
        done: list[list[datetime]] = []
        while tick <= now:
            hours = [
                h for h in self.dataset.hours() if h not in self.exported and self.due(h) <= tick
            ]
            if hours:
                self.export_hours(sorted(hours, reverse=True))  # newest first: out of order
                done.append(sorted(hours, reverse=True))
            tick += every
        return done

    def run_all(self) -> list[list[datetime]]:
        """Every job, until each hour of the dataset is exported."""
        last = max((self.due(hour) for hour in self.dataset.hours()), default=self.dataset.end)
        return self.run_until(last + HOUR * max(1, self.schedule.hours_per_job))

    # ---------------------------------------------------------------- writing

    def export_hours(self, hours: list[datetime]) -> None:
        """One export job: each hour's parts, merged ids, then its ``complete`` marker."""
        merges = self.merges_by_hour()
        for hour in hours:
            members = hour_members(self.dataset, hour)
            for part, member in enumerate(members):
                self.sink.put(self.event_key(hour, part), member)
            self.parts[hour] = len(members)
            if self.merged_ids and hour in merges:
                self.sink.put(self.merged_key(hour), _gzip_lines(merges[hour], to_ms(hour)))
            if self.schedule.markers:
                self.sink.put(self.marker_key(hour), b"")
            self.exported.add(hour)
        self.jobs.append(list(hours))

    def backfill(self, hours: list[datetime], *, at: datetime) -> list[str]:
        """Rewrite exported hours as a de-duplicating backfill does: other parts, new bytes.

        The rows stay the same; they are split into one part more than before and compressed
        with ``at`` as the gzip time, so every object's bytes (and ETag) change. Parts the new
        split no longer has are deleted. Returns the keys written.
        """
        written: list[str] = []
        for hour in hours:
            lines = hour_lines(self.dataset, hour).lines
            if hour not in self.exported or not lines:
                continue
            old = self.parts.get(hour, 0)
            count = min(old + 1, len(lines))
            size = -(-len(lines) // count)
            chunks = [lines[i : i + size] for i in range(0, len(lines), size)]
            for part, chunk in enumerate(chunks):
                data = gzip.compress(b"\n".join(chunk) + b"\n", compresslevel=6, mtime=_secs(at))
                key = self.event_key(hour, part)
                self.sink.put(key, data)
                written.append(key)
            for part in range(len(chunks), old):
                self.sink.delete(self.event_key(hour, part))
            self.parts[hour] = len(chunks)
            self.rewrites += 1
        return written

    # ---------------------------------------------------------------- merged ids

    def merges(self) -> list[Merge]:
        """The dataset's merges: each user's absorbed ids, merged at a fixed moment."""
        found: list[Merge] = []
        span_ms = max(to_ms(self.dataset.end) - to_ms(self.dataset.start), HOUR_MS)
        for profile in self.dataset.profiles():
            for absorbed in profile.merged_amplitude_ids:
                rng = random.Random(  # noqa: S311 - reproducible test data
                    f"amplitude-sim|merge|{self.dataset.seed}|{self.dataset.app_id}|{absorbed}"
                )
                server = to_ms(self.dataset.start) + rng.randrange(span_ms)
                found.append(
                    Merge(
                        absorbed, profile.user.amplitude_id, server - rng.randrange(300_000), server
                    )
                )
        return sorted(found, key=lambda merge: merge.merge_server_time_ms)

    def merge_records(self) -> list[dict[str, Any]]:
        """The merged-id lines as Amplitude writes them (epoch milliseconds)."""
        return [_merge_record(merge, self.org_id) for merge in self.merges()]

    def merges_by_hour(self) -> dict[datetime, list[dict[str, Any]]]:
        """Merged-id lines by the upload hour of ``merge_server_time``."""
        by_hour: dict[datetime, list[dict[str, Any]]] = {}
        for merge in self.merges():
            hour = datetime.fromtimestamp(
                merge.merge_server_time_ms // HOUR_MS * 3600, tz=timezone.utc
            )
            by_hour.setdefault(hour, []).append(_merge_record(merge, self.org_id))
        return by_hour


def _merge_record(merge: Merge, org_id: int) -> dict[str, Any]:
    return {
        "scope": -org_id,
        "merge_time": merge.merge_time_ms,
        "merge_server_time": merge.merge_server_time_ms,
        "amplitude_id": merge.amplitude_id,
        "merged_amplitude_id": merge.merged_amplitude_id,
    }


def _secs(moment: datetime) -> int:
    return int(moment.timestamp())


def _gzip_lines(records: list[dict[str, Any]], mtime_ms: int) -> bytes:
    body = b"".join(json.dumps(record).encode() + b"\n" for record in records)
    return gzip.compress(body, compresslevel=6, mtime=mtime_ms // 1000)


# -------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``write-bucket`` options."""
    parser = argparse.ArgumentParser(
        prog="amplitude-simulator write-bucket",
        description="Write the simulated project's S3 / GCS export (Amplitude's bucket layout) "
        "to a folder or an S3 endpoint, job by job on a simulated clock.",
    )
    parser.add_argument(
        "target", help="a folder, or s3://bucket/prefix (with --s3-endpoint-url for a local S3)"
    )
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 3, 1))
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--events-per-hour", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--org-id", type=int, default=DEFAULT_ORG_ID)
    parser.add_argument(
        "--until",
        type=datetime.fromisoformat,
        help="simulated now (UTC): only jobs due by then run (default: every job)",
    )
    parser.add_argument("--hours-per-job", type=int, default=1)
    parser.add_argument("--delay-hours", type=int, default=1)
    parser.add_argument("--late-every", type=int, default=0, help="hold back every Nth hour")
    parser.add_argument("--late-by-hours", type=int, default=3)
    parser.add_argument("--no-markers", action="store_true", help="no _complete markers")
    parser.add_argument("--no-merged-ids", action="store_true")
    parser.add_argument(
        "--backfill-hours",
        type=int,
        default=0,
        help="afterwards, rewrite the first N exported hours (new parts, new ETags)",
    )
    parser.add_argument("--s3-endpoint-url", help="e.g. http://127.0.0.1:5000 (moto, MinIO)")
    parser.add_argument("--s3-region", default="us-east-1")
    args = parser.parse_args(argv)
    if args.days < 1 or args.hours_per_job < 1:
        parser.error("--days and --hours-per-job must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Write the bucket; S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    args = parse_args(argv)
    start = datetime(args.start.year, args.start.month, args.start.day, tzinfo=timezone.utc)
    dataset = Dataset(
        start=start,
        end=start + timedelta(days=args.days),
        events_per_hour=args.events_per_hour,
        seed=args.seed,
    )
    sink: Sink
    prefix = ""
    if args.target.startswith("s3://"):
        bucket, _, prefix = args.target[len("s3://") :].partition("/")
        sink = S3Sink(
            bucket,
            endpoint_url=args.s3_endpoint_url,
            key=os.environ.get("AWS_ACCESS_KEY_ID"),
            secret=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            region=args.s3_region,
        )
    else:
        sink = FolderSink(args.target)
    export = BucketExport(
        dataset,
        sink,
        prefix=prefix,
        org_id=args.org_id,
        schedule=Schedule(
            delay_hours=args.delay_hours,
            hours_per_job=args.hours_per_job,
            late_every=args.late_every,
            late_by_hours=args.late_by_hours,
            markers=not args.no_markers,
        ),
        merged_ids=not args.no_merged_ids,
    )
    if args.until is not None:
        until = args.until if args.until.tzinfo else args.until.replace(tzinfo=timezone.utc)
        export.run_until(until)
    else:
        export.run_all()
    if args.backfill_hours:
        hours = sorted(export.exported)[: args.backfill_hours]
        export.backfill(hours, at=max(export.exported) + HOUR * 2)
    sys.stdout.write(
        f"wrote {len(export.exported)} hours of app {dataset.app_id} in {len(export.jobs)} "
        f"jobs to {args.target} ({sum(export.parts.values())} event objects, "
        f"{export.rewrites} hours rewritten by a backfill, "
        f"{len(export.merges()) if not args.no_merged_ids else 0} merged ids)\n"
    )
    return 0
