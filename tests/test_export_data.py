"""Odd data in an export: it passes through exactly, or the run says why it doesn't.

Amplitude's simulator only sends what Amplitude sends, so these archives are built here and
served by a small real HTTP server on loopback, answering the Export API's path.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typing_extensions import override

from tap_amplitude.output import bulk_parsing
from tests.helpers import TapRun, parse_messages, run_tap, warning_lines

STREAM = "export_events"
DAY = "2024-03-01"
APP = 4242


def event(number: int, hour: int = 0, **extra: Any) -> dict[str, Any]:
    """An export row of the documented shape (a subset of keys is enough here)."""
    stamp = f"{DAY} {hour:02d}:10:00.{number:06d}"
    return {
        "uuid": f"00000000-0000-4000-8000-{number:012d}",
        "app": APP,
        "event_type": "opened",
        "amplitude_id": 1000 + number,
        "event_time": stamp,
        "server_upload_time": stamp,
        "event_properties": {"n": number},
        **extra,
    }


def lines(*rows: dict[str, Any] | bytes) -> bytes:
    return b"".join(
        (row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows
    )


def member(hour: int, part: int = 0, suffix: str = ".json.gz") -> str:
    return f"{APP}/{APP}_{DAY}_{hour}#{part}{suffix}"


def archive(members: dict[str, bytes]) -> bytes:
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as zipped:
        for name, content in members.items():
            zipped.writestr(name, content)
    return body.getvalue()


class ArchiveServer:
    """Answers every Export API request with one prepared zip (a real HTTP server)."""

    def __init__(self) -> None:
        self.body = b""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            @override
            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def run(self, members: dict[str, bytes], **config: Any) -> TapRun:
        """Serve an archive of ``members`` for the one 24-hour window of DAY."""
        self.body = archive(members)
        settings = {
            "api_key": "key",
            "secret_key": "secret",
            "api_url": self.url,
            "start_date": f"{DAY}T00:00:00Z",
            "end_date": "2024-03-02T00:00:00Z",
            "export_window_hours": 24,
            **config,
        }
        run = run_tap(settings, streams=[STREAM])
        run.messages = parse_messages(run.stdout)
        return run


@pytest.fixture(scope="module")
def server() -> Iterator[ArchiveServer]:
    served = ArchiveServer()
    yield served
    served.server.shutdown()
    served.server.server_close()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


def test_integers_beyond_64_bits_keep_their_value(server: ArchiveServer) -> None:
    huge = 123456789012345678901234567890
    row = event(1, event_properties={"huge": huge, "low": -(2**63) - 1, "u64": 2**64 - 1})
    row["amplitude_id"] = 2**64 + 7
    run = server.run({member(0): gz(lines(row))})
    assert run.returncode == 0, run.stderr
    (record,) = run.records(STREAM)
    assert record["event_properties"] == {"huge": huge, "low": -(2**63) - 1, "u64": 2**64 - 1}
    assert record["amplitude_id"] == 2**64 + 7
    assert '"huge":123456789012345678901234567890' in run.stdout.replace(" ", "")


def test_non_finite_numbers_become_null_and_are_named(server: ArchiveServer) -> None:
    row = lines(event(1)).replace(b'{"n": 1}', b'{"n": NaN, "big": 1e400}')
    run = server.run({member(0): gz(row)})
    assert run.returncode == 0, run.stderr
    (record,) = run.records(STREAM)
    assert record["event_properties"] == {"n": None, "big": None}
    warnings = "\n".join(warning_lines(run.stderr))
    assert "event_properties.n" in warnings
    assert "event_properties.big" in warnings


def test_a_column_the_schema_lacks_is_named_once(server: ArchiveServer) -> None:
    rows = [event(n, brand_new_column=n) for n in range(3)]
    run = server.run({member(0): gz(lines(*rows))})
    assert run.returncode == 0, run.stderr
    assert len(run.records(STREAM)) == 3
    named = [line for line in warning_lines(run.stderr) if "brand_new_column" in line]
    assert len(named) == 1, run.stderr


def test_every_member_form_is_read_or_named(server: ArchiveServer) -> None:
    nested = archive({member(3): gz(lines(event(4, hour=3)))})
    members = {
        member(0): gz(lines(event(1))),
        member(1, suffix=".json"): lines(event(2, hour=1)),  # not compressed
        member(2, suffix=".JSON.GZ"): gz(lines(event(3, hour=2))),  # upper-case suffix
        f"{APP}/nested.zip": nested,
        member(4): b"",  # empty
        f"{APP}/{APP}_{DAY}_5_complete": b"",  # a completion marker
        f"{APP}/README.txt": b"this is not an export file\n",
    }
    run = server.run(members)
    assert run.returncode == 0, run.stderr
    assert sorted(r["uuid"][-1] for r in run.records(STREAM)) == ["1", "2", "3", "4"]
    named = [line for line in warning_lines(run.stderr) if "README.txt" in line]
    assert len(named) == 1, run.stderr
    assert "not read" in named[0]


BAD_LINES = {
    "not JSON": (b'{"uuid": "x", oops}', "not JSON"),
    "an array": (b"[1, 2, 3]", "array, not an object"),
    "not UTF-8": (b'{"uuid": "\xff\xfe"}', "not UTF-8"),
    "nested too deeply": (
        b'{"uuid": "x", "p": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "nests arrays or objects too deeply",
    ),
    "number timestamp": (
        json.dumps(event(9, hour=1, event_time=1709251200)).encode(),
        "event_time is a JSON number",
    ),
    "object timestamp": (
        json.dumps(event(9, hour=1, server_upload_time={"at": 1})).encode(),
        "server_upload_time is a JSON object",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_a_bad_line_stops_the_run_naming_where(server: ArchiveServer, case: str) -> None:
    bad, problem = BAD_LINES[case]
    members = {
        member(0): gz(lines(event(1), event(2))),
        member(1): gz(lines(event(3, hour=1)) + b"\n" + bad + b"\n" + lines(event(4, hour=1))),
    }
    run = server.run(members)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if "cannot be loaded" in line]
    assert len(errors) == 1, run.stderr
    assert f"line 3 of archive member {member(1)}" in errors[0]  # blank line 2 counted
    assert "2024-03-01 00:00..2024-03-01 23:59 UTC" in errors[0]
    assert problem.split(" is a ")[0] in errors[0]
    # the hour before is complete; the bookmark stays on the hour in flight
    states = [m["value"] for m in run.messages if m["type"] == "STATE"]
    assert states[-1]["bookmarks"][STREAM]["replication_key_value"] == f"{DAY}T01:00:00.000000Z"
    assert {r["uuid"][-1] for r in run.records(STREAM)} <= {"1", "2", "3"}


def test_batch_files_keep_big_integers(server: ArchiveServer, tmp_path: Any) -> None:
    huge = 2**70 + 1
    run = server.run(
        {member(0): gz(lines(event(1, event_properties={"huge": huge})))},
        batch_config={
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{tmp_path}"},
        },
    )
    assert run.returncode == 0, run.stderr
    (batch,) = [m for m in run.messages if m["type"] == "BATCH"]
    path = batch["manifest"][0].removeprefix("file://")
    with gzip.open(path, "rt") as rows:
        (row,) = [json.loads(line) for line in rows]
    assert row["event_properties"]["huge"] == huge


def test_bulk_parsing_raises_the_gc_threshold_and_always_restores_it() -> None:
    """Blocks are parsed with a rare cyclic GC; whatever happens, the threshold comes back."""
    before = gc.get_threshold()
    with bulk_parsing():
        assert gc.get_threshold()[0] >= 50 * before[0]
        assert gc.get_threshold()[1:] == before[1:]
    assert gc.get_threshold() == before
    with pytest.raises(KeyboardInterrupt), bulk_parsing():
        raise KeyboardInterrupt
    assert gc.get_threshold() == before


@pytest.mark.parametrize("batch", [False, True], ids=["record", "batch"])
def test_a_lone_surrogate_escape_passes_through_as_sent(
    server: ArchiveServer, tmp_path: Any, batch: bool
) -> None:
    # JavaScript strings can hold half of a UTF-16 pair; Amplitude exports it as an escape.
    # It is no character, so not UTF-8 either: the tap keeps the escape rather than stop on it.
    row = lines(event(1, event_properties={"name": "x"}), event(2)).replace(
        b'"name": "x"', b'"name": "a\\ud800b"'
    )
    config: dict[str, Any] = {}
    if batch:
        config["batch_config"] = {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{tmp_path}"},
        }
    run = server.run({member(0): gz(row)}, **config)
    assert run.returncode == 0, run.stderr
    if batch:
        (path,) = tmp_path.glob("*.json.gz")
        written = gzip.decompress(path.read_bytes())
        records = [json.loads(line) for line in written.splitlines()]
    else:
        written = run.stdout.encode()
        records = run.records(STREAM)
    assert [r["event_properties"] for r in records] == [{"name": "a\ud800b"}, {"n": 2}]
    assert b"a\\ud800b" in written
