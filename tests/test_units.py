"""Narrow unit tests: timestamp normalization, retry waits, error text, config checks."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from rfc3339_validator import validate_rfc3339

from tap_amplitude.client import MAX_WAIT_SECONDS, _retry_waits, error_summary, retry_after_seconds
from tap_amplitude.tap import config_problems
from tap_amplitude.timestamps import normalize, parse_datetime


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-03-02 00:14:05.123000", "2024-03-02T00:14:05.123000Z"),
        ("2024-03-02 00:14:05", "2024-03-02T00:14:05.000000Z"),
        ("2024-03-02T00:14:05.123", "2024-03-02T00:14:05.123000Z"),
        ("2024-03-02T01:14:05+01:00", "2024-03-02T00:14:05.000000Z"),
        ("not a time", "not a time"),
        ("", ""),
        (None, None),
    ],
)
def test_normalize(raw: str | None, expected: str | None) -> None:
    assert normalize(raw) == expected


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1)), st.booleans())
def test_normalize_is_rfc3339_and_order_preserving(moment: datetime, fraction: bool) -> None:
    raw = moment.strftime("%Y-%m-%d %H:%M:%S.%f" if fraction else "%Y-%m-%d %H:%M:%S")
    rendered = normalize(raw)
    assert rendered is not None
    assert validate_rfc3339(rendered)
    assert parse_datetime(rendered) == parse_datetime(raw)
    # one shape for every value, so string order is time order (bookmarks compare as strings)
    assert len(rendered) == len("2024-01-01T00:00:00.000000Z")


def _response(
    status: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = body
    return response


class _Failure(Exception):
    def __init__(self, response: requests.Response | None) -> None:
        super().__init__("failure")
        self.response = response


def test_retry_waits_honour_retry_after_then_back_off() -> None:
    waits = _retry_waits()
    next(waits)
    assert waits.send(_Failure(_response(429, {"Retry-After": "7"}))) == 7
    assert waits.send(_Failure(None)) == 4  # second attempt without a hint: 2**2
    assert waits.send(_Failure(_response(503))) == 8
    assert waits.send(_Failure(_response(429, {"Retry-After": "99999"}))) == MAX_WAIT_SECONDS
    for _ in range(20):
        assert waits.send(_Failure(None)) <= MAX_WAIT_SECONDS


def test_retry_after_accepts_http_dates() -> None:
    assert (
        retry_after_seconds(_response(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0
    )
    assert retry_after_seconds(_response(429, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(None) is None


def test_error_summary_reads_amplitude_envelope() -> None:
    body = (
        b'{"error":{"http_code":400,"type":"invalid","message":"Invalid chart definition",'
        b'"metadata":{"details":"Invalid user property country"}}}'
    )
    assert error_summary(_response(400, body=body)) == (
        "Invalid chart definition: Invalid user property country"
    )
    assert error_summary(_response(404, body=b"Raw data files were not found.")) == (
        "Raw data files were not found."
    )


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"start_date": "2024-03-02", "end_date": "2024-03-01"},
            "end_date: must be after start_date",
        ),
        ({"start_date": "2024-13-45"}, "start_date: is not an ISO 8601 date-time"),
        (
            {"start_date": "2024-03-01", "api_url": "ftp://x"},
            "api_url: is not an http(s) URL",
        ),
        ({"start_date": "2024-03-01", "api_url": "localhost:8765"}, "api_url"),
        ({"start_date": "2024-03-01", "api_url": ""}, "api_url: is empty"),
        ({"start_date": "2024-03-01", "profile_api_url": "  "}, "profile_api_url: is empty"),
        ({"start_date": "0001-01-01"}, "start_date: is before 2000-01-01"),
        ({"start_date": "9999-12-30"}, "start_date: is after 2999-12-31"),
        ({"start_date": "2024-03-01", "end_date": " "}, "end_date: is empty"),
        ({"start_date": "2024-03-01", "api_url": "http://x:99999"}, "api_url: has a port"),
        ({"start_date": "2024-03-01", "api_url": "http://x:1 "}, "api_url: contains spaces"),
    ],
)
def test_config_problems_name_the_setting(config: dict[str, str], problem: str) -> None:
    problems = config_problems({**KEYS, **config})
    assert len(problems) == 1
    assert problems[0].startswith(problem)


KEYS = {"api_key": "key", "secret_key": "secret"}


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({}, "api_key, secret_key: required setting is missing (only reading storage_export_url"),
        ({"api_key": "key"}, "secret_key: required setting is missing"),
        ({**KEYS, "api_key": None}, "api_key: expected a string, got null"),
        ({"storage_export_url": "file:///exports"}, None),  # the bucket's streams need no keys
    ],
)
def test_the_keys_are_required_unless_the_bucket_is_read(
    config: dict[str, str], problem: str | None
) -> None:
    problems = config_problems({"start_date": "2024-03-01T00:00:00Z", **config})
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1
        assert problems[0].startswith(problem)


def test_config_without_problems() -> None:
    assert (
        config_problems(
            {**KEYS, "start_date": "2024-03-01T00:00:00Z", "api_url": "http://127.0.0.1:1"}
        )
        == []
    )
    assert parse_datetime("2024-03-01").tzinfo == timezone.utc


def test_a_body_that_is_not_json_is_not_called_unreachable() -> None:
    from tap_amplitude.client import request_failure

    reason = request_failure(requests.exceptions.JSONDecodeError("Expecting value", "<h1>", 0))
    assert reason.startswith("Amplitude answered with a body that is not JSON")
    assert "could not reach" not in reason
