"""Reading the export from a real S3 HTTP API on loopback (moto's server mode).

The bucket is written with boto3 by the simulator's bucket writer; the tap reads it through
s3fs with credentials in ``storage_options``. moto answers at most a few keys per listing
page here, so every day's listing takes several pages; ETags are moto's (MD5 of the bytes).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from amplitude_simulator import Dataset
from amplitude_simulator.bucket import BucketExport, S3Sink, Schedule
from tests.helpers import run_tap
from tests.test_storage import EVENTS, MERGED, bucket_config, expected_uuids, read, uuids

moto_server = pytest.importorskip("moto.server")

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
DATASET = Dataset(start=START, end=START + timedelta(days=1), events_per_hour=20, users=12)
KEY, SECRET = "AKIAEXAMPLEREADER", "reader-secret-for-tests"  # moto accepts any pair
PAGE = 8  # keys per listing page


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, answering listings ``PAGE`` keys at a time."""
    patch = pytest.MonkeyPatch()
    patch.setenv("MOTO_S3_DEFAULT_MAX_KEYS", str(PAGE))
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        patch.undo()


def options(endpoint: str) -> dict[str, Any]:
    return {
        "key": KEY,
        "secret": SECRET,
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
    }


def sink(endpoint: str, bucket: str) -> S3Sink:
    return S3Sink(bucket, endpoint_url=endpoint, key=KEY, secret=SECRET)


def test_incremental_reads_with_pagination_etags_and_a_rewrite(endpoint: str) -> None:
    writer = sink(endpoint, "incremental")
    export = BucketExport(
        DATASET,
        writer,
        prefix="exports/amplitude",
        schedule=Schedule(hours_per_job=3, late_every=4, late_by_hours=2),
    )
    config = bucket_config("s3://incremental/exports/amplitude", storage_options=options(endpoint))
    state: dict[str, Any] | None = None
    seen: list[str] = []
    for now in (START + 13 * HOUR, DATASET.end + 6 * HOUR):
        export.run_until(now)
        run = read({**config, "end_date": now.isoformat()}, state, (EVENTS, MERGED))
        seen += uuids(run)
        state = run.final_state()
    assert Counter(seen) == Counter(expected_uuids(DATASET, DATASET.start, DATASET.end))
    assert sum(export.parts.values()) > 3 * PAGE  # a day's listing needed several pages
    assert state is not None
    assert state["bookmarks"][EVENTS]["replication_key_value"] == "2024-03-02T00:00:00.000000Z"

    # State identifies objects by their S3 ETag (the MD5 of the bytes moto stores).
    hour = START + 19 * HOUR  # (hour 20 is one of the dataset's empty hours)
    key = export.event_key(hour, 0)
    body = writer.client.get_object(Bucket="incremental", Key=key)["Body"].read()
    relative = key.removeprefix("exports/amplitude/")
    identity = state["bookmarks"][EVENTS]["storage"]["read"][f"{hour:%Y-%m-%dT%H}"][relative]
    assert identity == f"{len(body)}:{hashlib.md5(body).hexdigest()}"  # noqa: S324

    # A backfill rewrites an hour: new ETags, read again once; unchanged objects are not.
    export.backfill([hour], at=DATASET.end + 8 * HOUR)
    again = read(config, state, (EVENTS,))
    assert Counter(uuids(again)) == Counter(expected_uuids(DATASET, hour, hour + HOUR))
    assert uuids(read(config, again.final_state(), (EVENTS,))) == []
    merged = [r["amplitude_id"] for r in run.records(MERGED)]
    assert merged or not export.merges()


def test_wrong_bucket_is_one_line_naming_the_url_without_credentials(endpoint: str) -> None:
    sink(endpoint, "exists")
    url = "s3://no-such-bucket/amplitude"
    run = run_tap(
        bucket_config(url, storage_options=options(endpoint)), streams=[EVENTS], timeout=60
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert url in errors[0]
    assert "does not exist" in errors[0]
    assert SECRET not in run.stderr
    assert KEY not in run.stderr


def test_odd_keys_of_a_day_are_named_in_one_warning(endpoint: str) -> None:
    """A key ending in '/' (a console 'folder') and a temporary name: listed, named, not read."""
    writer = sink(endpoint, "odd-keys")
    one_day = Dataset(start=START, end=START + 4 * HOUR, events_per_hour=5, users=3)
    BucketExport(one_day, writer, prefix="amplitude", merged_ids=False).run_all()
    app = one_day.app_id
    odd = [f"{app}_2024-03-01_2#9.json.gz/", f"{app}_2024-03-01_2#8.json.gz.tmp"]
    for key in odd:
        writer.put(f"amplitude/{app}/{key}", b"")
    config = bucket_config(
        "s3://odd-keys/amplitude",
        storage_options=options(endpoint),
        end_date=one_day.end.isoformat(),
    )
    run = read(config)
    assert Counter(uuids(run)) == Counter(expected_uuids(one_day, one_day.start, one_day.end))
    [warning] = [line for line in run.stderr.splitlines() if "so they are not read" in line]
    for key in odd:
        assert f"{app}/{key.rstrip('/')}" in warning
    assert SECRET not in run.stderr


@pytest.mark.parametrize(
    "change",
    [{"bogus_option": 1}, {"key": 12345}, {"endpoint_url": "not a url"}],
)
def test_storage_options_the_client_refuses_name_storage_options_not_the_policy(
    endpoint: str, change: dict[str, Any]
) -> None:
    sink(endpoint, "options")
    url = "s3://options/amplitude"
    run = run_tap(
        bucket_config(url, storage_options={**options(endpoint), **change}),
        streams=[EVENTS],
        timeout=60,
    )
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert "refused storage_options" in errors[0]
    assert "bucket policy" not in errors[0]  # the options are wrong, not the permissions
    assert SECRET not in run.stderr
    assert "Traceback" not in run.stderr
