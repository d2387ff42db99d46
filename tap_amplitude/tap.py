"""``tap-amplitude``: the Singer tap class, its settings, and how failures reach the user."""

from __future__ import annotations

import re
import sys
import typing as t
from functools import cached_property
from urllib.parse import urlsplit

import requests
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, RetriableAPIError

from tap_amplitude.client import DEFAULT_PROFILE_API_URL, REGION_HOSTS, AmplitudeError
from tap_amplitude.streams import STREAM_TYPES
from tap_amplitude.timestamps import parse_datetime

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override


class TapAmplitude(Tap):
    """Singer tap for Amplitude: raw events, event types, user lookups and more."""

    name = "tap-amplitude"
    package_name = "tap-amplitude"

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType(nullable=False),
            required=True,
            secret=True,
            title="API key",
            description="Project API key (Amplitude: Settings > Projects > General).",
        ),
        th.Property(
            "secret_key",
            th.StringType(nullable=False),
            required=True,
            secret=True,
            title="Secret key",
            description="Project secret key, paired with the API key for Basic auth.",
        ),
        th.Property(
            "start_date",
            th.DateTimeType(nullable=False),
            required=True,
            title="Start date",
            description=(
                "First upload hour to export (UTC) and lower bound for date streams. "
                "A start_date later than the saved bookmark wins."
            ),
        ),
        th.Property(
            "end_date",
            th.DateTimeType,
            title="End date",
            description=(
                "Exclusive upper bound (UTC). Default: now minus export_lag_hours, "
                "floored to the hour."
            ),
        ),
        th.Property(
            "region",
            th.StringType,
            default="us",
            allowed_values=list(REGION_HOSTS),
            title="Data region",
            description="us (https://amplitude.com) or eu (https://analytics.eu.amplitude.com).",
        ),
        th.Property(
            "api_url",
            th.StringType,
            title="API base URL",
            description=(
                "Override for the /api/... base URL, e.g. a proxy or the bundled simulator "
                "(http://127.0.0.1:8765). Default: the region's host."
            ),
        ),
        th.Property(
            "profile_api_url",
            th.StringType,
            default=DEFAULT_PROFILE_API_URL,
            title="User Profile API base URL",
            description="Override for the User Profile API base URL (US only).",
        ),
        th.Property(
            "user_ids",
            th.ArrayType(th.StringType),
            default=[],
            title="Users to look up",
            description="Emails, user ids, device ids or user-id prefixes for user_search.",
        ),
        th.Property(
            "amplitude_ids",
            th.ArrayType(th.IntegerType),
            default=[],
            title="Amplitude ids",
            description="Amplitude ids whose activity is read (looked up like user_ids).",
        ),
        th.Property(
            "export_window_hours",
            th.IntegerType(minimum=1, maximum=8760),
            default=24,
            title="Export window (hours)",
            description=(
                "Hours per Export API request; windows Amplitude finds too large are split "
                "in halves automatically, down to one hour."
            ),
        ),
        th.Property(
            "export_lag_hours",
            th.IntegerType(minimum=0),
            default=2,
            title="Export lag (hours)",
            description="Newest hours left for a later run (exportable ~2 h after receipt).",
        ),
        th.Property(
            "project_id",
            th.IntegerType,
            title="Project id",
            description=(
                "Amplitude project id; when set, records of every stream carry it as `app`, "
                "so several projects can be loaded side by side (export rows always do)."
            ),
        ),
        th.Property(
            "request_timeout",
            th.NumberType(exclusive_minimum=0),
            default=300,
            title="Request timeout (seconds)",
            description="Timeout for each HTTP request.",
        ),
        th.Property(
            "rec_id",
            th.StringType,
            title="Recommendation id(s)",
            description=(
                "user_profiles: also fetch these recommendations (an id, or several "
                "comma-separated) from the User Profile API."
            ),
        ),
        th.Property(
            "active_users_group_by_country",
            th.BooleanType,
            default=False,
            title="Active users per country",
            description=(
                "active_users: count per country (g=country) instead of project-wide. If "
                "Amplitude refuses the group-by, the stream falls back to project-wide counts "
                "with one warning."
            ),
        ),
        th.Property(
            "rate_limits",
            th.ObjectType(
                th.Property(
                    "cost_per_5_minutes",
                    th.IntegerType(minimum=1),
                    description="Dashboard query cost per 5 minutes (Amplitude: 1000).",
                ),
                th.Property(
                    "cost_per_hour",
                    th.IntegerType(minimum=1),
                    description="Dashboard query cost per hour (Amplitude: 108000).",
                ),
                th.Property(
                    "user_lookups_per_hour",
                    th.IntegerType(minimum=1),
                    description="User search and user activity requests per hour (Amplitude: 360).",
                ),
                additional_properties=False,
            ),
            title="Rate limits",
            description=(
                "The project's Amplitude REST budget this tap may use; defaults are Amplitude's "
                "(Dashboard cost 1000 per 5 minutes and 108000 per hour, 360 user searches and "
                "activity reads per hour). Taps running in parallel on one project share "
                "Amplitude's budget: give each a share (e.g. halve them for two), or raise "
                "them if Amplitude granted the project higher limits."
            ),
        ),
    ).to_dict()

    @override
    def discover_streams(self) -> list[Stream]:
        """Every stream; needs neither credentials nor network."""
        return [stream_class(tap=self) for stream_class in STREAM_TYPES]

    @cached_property
    def http_session(self) -> requests.Session:
        """The one pooled HTTP session all streams share."""
        session = requests.Session()
        session.headers["User-Agent"] = f"{self.name}/{self.plugin_version}"
        return session

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Schema checks, then the cross-field checks a schema cannot express."""
        errors = super()._validate_config(raise_errors=raise_errors)
        if errors:
            return errors
        errors = config_problems(self.config)
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return errors

    @override
    @classmethod
    def invoke(cls, **kwargs: t.Any) -> None:
        """Run the CLI; a failure the user can fix ends with one line and exit code 1."""
        try:
            super().invoke(**kwargs)
        except (AmplitudeError, RetriableAPIError) as exc:
            cls.logger.error("%s", exc)  # noqa: TRY400 - the message is the whole story
            sys.exit(1)
        except requests.RequestException as exc:
            cls.logger.error(  # noqa: TRY400
                "Could not reach Amplitude (%s: %s); check api_url/region and the network.",
                type(exc).__name__,
                _redact_url(str(exc)),
            )
            sys.exit(1)


def config_problems(config: t.Mapping[str, t.Any]) -> list[str]:
    """Problems with settings that pass the JSON schema, each naming the setting."""
    problems: list[str] = []
    dates: dict[str, t.Any] = {}
    for key in ("start_date", "end_date"):
        if config.get(key):
            try:
                dates[key] = parse_datetime(str(config[key]))
            except ValueError:
                problems.append(f"{key}: '{config[key]}' is not an ISO 8601 date-time")
    if "start_date" in dates and "end_date" in dates and dates["end_date"] <= dates["start_date"]:
        problems.append("end_date: must be after start_date")
    for key in ("api_url", "profile_api_url"):
        value = config.get(key)
        if value:
            parts = urlsplit(str(value))
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                problems.append(f"{key}: '{value}' is not an http(s) URL")
    return problems


def _redact_url(text: str) -> str:
    """Drop any ``user:password@`` a proxy URL might carry."""
    return re.sub(r"//[^/@\s]+@", "//***@", text)
