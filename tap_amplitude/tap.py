"""``tap-amplitude``: the Singer tap class, its settings, and how failures reach the user."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import typing as t
from functools import cached_property

import click
import requests
from singer_sdk import typing as th
from singer_sdk.exceptions import (
    ConfigValidationError,
    DiscoveryError,
    MappingError,
    RetriableAPIError,
)
from singer_sdk.plugin_base import JSONSchemaValidator, SingerCommand
from singer_sdk.singerlib import Catalog
from singer_sdk.tap_base import CliTestOptionValue
from typing_extensions import override

from tap_amplitude.client import (
    DEFAULT_PROFILE_API_URL,
    REGION_HOSTS,
    AmplitudeError,
    AmplitudeStream,
    request_failure,
)
from tap_amplitude.interrupt import (
    BOUNDARY,
    OUTPUT_ERRNOS,
    Interrupted,
    OutputUnwritable,
    silence_stdout,
)
from tap_amplitude.output import BoundedSingerWriter, check_batch_storage
from tap_amplitude.sdk import BatchConfig, HookedTap
from tap_amplitude.settings import (
    SPOOLING_STREAMS,
    ConfigInput,
    EnvText,
    SettingsError,
    bookmark_problems,
    catalog_problem,
    coerce_config,
    config_problems,
    disk_error_message,
    environment_values,
    is_disk_error,
    load_dotenv_file,
    read_config_files,
    read_json_file,
    schema_problems,
    secret_problems,
    shown_names,
    state_problem,
    temp_dir_problem,
)
from tap_amplitude.streams import STREAM_TYPES

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    from singer_sdk.streams import Stream

__all__ = ["TapAmplitude", "config_problems"]

INVALID_CONFIG = "Invalid configuration: "
ENV_PREFIX = "TAP_AMPLITUDE_"


class TapAmplitude(HookedTap):
    """Singer tap for Amplitude: raw events, event types, user lookups and more."""

    name = "tap-amplitude"
    package_name = "tap-amplitude"
    message_writer_class = BoundedSingerWriter

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType(nullable=False),
            secret=True,
            title="API key",
            description=(
                "Project API key (Amplitude: Settings > Projects > General). Required, except "
                "when only export_events and merged_ids are read from storage_export_url."
            ),
        ),
        th.Property(
            "secret_key",
            th.StringType(nullable=False),
            secret=True,
            title="Secret key",
            description=(
                "Project secret key, paired with the API key for Basic auth; required with it."
            ),
        ),
        th.Property(
            "org_api_key",
            th.StringType,
            secret=True,
            title="Organization API key",
            description=(
                "amplitude-privacy access: organization API key for the DSAR API, which may "
                "refuse project keys (ask Amplitude Support). Default: the project keys."
            ),
        ),
        th.Property(
            "org_secret_key",
            th.StringType,
            secret=True,
            title="Organization secret key",
            description="amplitude-privacy access: the secret paired with org_api_key.",
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
            th.IntegerType(minimum=0, maximum=8760),
            default=2,
            title="Export lag (hours)",
            description=(
                "Newest hours left for a later run (exportable ~2 h after receipt); "
                "at most 8760 (a year)."
            ),
        ),
        th.Property(
            "export_concurrency",
            th.IntegerType(minimum=1, maximum=4),
            default=3,
            title="Export downloads at once",
            description=(
                "Export windows downloaded at the same time (1-4). Records still come in "
                "upload-hour order with the same STATE; each download counts against the "
                "project's concurrent-request cap and budgets, and is spooled to the temporary "
                "directory, which needs room for up to twice this many windows."
            ),
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
            "storage_export_url",
            th.StringType,
            title="Cloud-storage export URL",
            description=(
                "Read Amplitude's S3 / GCS export instead of the Export API: the folder holding "
                "its {app_id}/ (events) and -{org_id}/ (merged ids) folders, as "
                "s3://bucket/prefix, gs://bucket/prefix or file:///path. export_events then "
                "reads the bucket (same records and keys, any volume) and merged_ids is filled. "
                "Needs tap-amplitude[s3] or [gcs]."
            ),
        ),
        th.Property(
            "storage_options",
            th.ObjectType(additional_properties=True),
            secret=True,
            title="Cloud-storage options",
            description=(
                'Passed to the fsspec filesystem (s3fs, gcsfs): e.g. {"key": …, "secret": '
                '…}, {"profile": "amplitude-reader"}, {"endpoint_url": …}, '
                '{"token": "/path/key.json"} or {"anon": true}. Default: the '
                "cloud's own credential chain (AWS environment, profile or role; "
                "GOOGLE_APPLICATION_CREDENTIALS)."
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
            "cohort_ids",
            th.ArrayType(th.StringType),
            default=[],
            title="Cohorts to download",
            description=(
                "cohort_members: ids of the cohorts whose members are downloaded. Default: "
                "every cohort the cohorts listing shows, archived ones excepted."
            ),
        ),
        th.Property(
            "cohort_member_properties",
            th.ArrayType(th.StringType),
            default=[],
            title="Cohort member properties",
            description=(
                "cohort_members: user properties downloaded with each member (Amplitude's "
                "propKeys, e.g. plan or country), kept in the record's `properties`. Default: "
                "none, the quickest export."
            ),
        ),
        th.Property(
            "cohort_download_trigger",
            th.StringType,
            default="last_modified",
            allowed_values=["last_modified", "last_computed"],
            title="Cohort download trigger",
            description=(
                "cohort_members: download a cohort again when its lastMod changed "
                "(last_modified: definition edits, fewest downloads), or also when Amplitude "
                "recomputed its members (last_computed: fresher, but more of the project's "
                "500 cohort downloads a month)."
            ),
        ),
        th.Property(
            "cohort_export_wait_seconds",
            th.IntegerType(minimum=0),
            default=600,
            title="Cohort export wait (seconds)",
            description=(
                "cohort_members: how long to poll an export Amplitude is still computing "
                "before skipping that cohort with a log line; the next run polls the same "
                "export again rather than spending another download."
            ),
        ),
        th.Property(
            "chart_ids",
            th.ArrayType(th.StringType),
            default=[],
            title="Saved charts",
            description=(
                "chart_results: ids of saved charts (the last part of a chart's URL) whose "
                "results are read, one record per chart per run."
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
                th.Property(
                    "taxonomy_cost_per_hour",
                    th.IntegerType(minimum=1),
                    description="Taxonomy API cost per hour, a GET costing 1 (Amplitude: 7200).",
                ),
                th.Property(
                    "taxonomy_concurrent_requests",
                    th.IntegerType(minimum=1),
                    description="Taxonomy API requests in flight at once (Amplitude: 4).",
                ),
                th.Property(
                    "concurrent_requests",
                    th.IntegerType(minimum=1),
                    description=(
                        "REST requests in flight at once (Amplitude: 5), per process, or across "
                        "every process sharing the backend."
                    ),
                ),
                th.Property(
                    "backend",
                    th.StringType(pattern=r"^(sqlite|postgresql|postgres|redis|rediss)://"),
                    secret=True,
                    description=(
                        "Where the budgets live, shared by every process naming the same "
                        "backend: sqlite:///path/budget.db (one machine), "
                        "postgresql://user:password@host:5432/db or redis://host:6379/0 "
                        "(several machines). Default: this process's memory."
                    ),
                ),
                additional_properties=False,
            ),
            title="Rate limits",
            description=(
                "The project's Amplitude REST budget this tap may use; defaults are Amplitude's "
                "(Dashboard cost 1000 per 5 minutes and 108000 per hour, 360 user searches and "
                "activity reads per hour, 5 concurrent requests). With `backend` every tap "
                "process and amplitude-privacy run naming it spend one shared budget; without "
                "it, taps running in parallel on one project must each get a share (e.g. halve "
                "them for two). Raise them if Amplitude granted the project higher limits."
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

    def __init__(
        self, *, config: t.Any = None, parse_env_config: bool = False, **kwargs: t.Any
    ) -> None:
        """The SDK's constructor, with ``TAP_AMPLITUDE_*`` variables read by the tap.

        They are kept as text, which ``_validate_config`` types by setting: the SDK's own
        reading crashes on a bad integer, keeps numbers as text and reads "maybe" as false.
        """
        if parse_env_config and (config is None or isinstance(config, dict)):
            config = {**(config or {}), **self.environment_settings()}
            parse_env_config = False
        super().__init__(config=config, parse_env_config=parse_env_config, **kwargs)

    @classmethod
    def environment_settings(cls) -> dict[str, t.Any]:
        """Every ``TAP_AMPLITUDE_<SETTING>`` variable (``.env`` included), as text."""
        schema = cls.config_jsonschema
        cls.append_builtin_config(schema)
        load_dotenv_file()
        values = environment_values(schema, ENV_PREFIX, os.environ)
        cls.logger.info(
            "Reading settings from the environment: %s",
            ", ".join(value.variable for value in values.values()) or "none set",
        )
        return dict(values)

    @override
    def validate_settings(self, config: dict[str, t.Any], *, raise_errors: bool) -> list[str]:
        """Type every setting, then check the schema and the cross-field rules.

        Messages name the setting and what it takes, never the value (see settings.py).
        """
        schema = self.config_jsonschema
        self.append_builtin_config(schema)
        origins = {
            key: value.variable for key, value in config.items() if isinstance(value, EnvText)
        }
        coerce_config(config, schema)
        errors = schema_problems(JSONSchemaValidator(schema).iter_errors(config), origins)
        errors += secret_problems(config, schema, origins)
        for key in [key for key, value in config.items() if isinstance(value, EnvText)]:
            del config[key]  # untypable text never reaches a stream
        if not errors:
            errors = config_problems(config)
        if errors and raise_errors:
            raise ConfigValidationError(
                INVALID_CONFIG + "; ".join(errors), errors=errors, schema=schema
            )
        if errors:  # --discover and --about go on: they need no valid settings
            self.logger.warning(
                "The config is not valid for a sync, which would stop here: %s",
                "; ".join(errors),
            )
        return errors

    def check_bookmarks(self, state: dict[str, t.Any], path: str) -> None:
        """Fail before any request if a bookmark cannot be resumed from.

        Raises:
            SettingsError: a selected stream's bookmark is not a date-time (named).
        """
        replication_keys = {
            name: stream.replication_key
            for name, stream in self.streams.items()
            if stream.replication_key and (stream.selected or stream.has_selected_descendents)
        }
        problems = bookmark_problems(state, replication_keys)
        if problems:
            raise SettingsError(f"state file '{path}': " + "; ".join(problems))

    def warn_unknown_streams(self, catalog: Catalog) -> None:
        """Name selected catalog streams this tap does not have: they produce no data."""
        for entry in catalog.streams:
            if entry.tap_stream_id not in self.streams and entry.metadata.root.selected:
                self.logger.warning(
                    "The catalog selects stream '%s', which tap-amplitude does not have; it "
                    "is skipped. Write the catalog again with --discover.",
                    entry.tap_stream_id[:60],
                )

    def check_keys(self) -> None:
        """Fail before any request if a selected stream needs the project keys and has none.

        Without ``storage_export_url`` the config check already asked for them; with it, only
        the streams that read the bucket can do without.

        Raises:
            SettingsError: naming the selected streams that call Amplitude's APIs.
        """
        if self.config.get("api_key") and self.config.get("secret_key"):
            return
        calling = [
            name
            for name, stream in self.streams.items()
            if stream.selected
            and not (isinstance(stream, AmplitudeStream) and stream.reads_storage_export)
        ]
        if calling:
            msg = (
                "Invalid configuration: api_key, secret_key: required setting is missing for "
                f"the selected streams {shown_names(calling)}"
                " (storage_export_url serves only export_events and merged_ids); set the keys, "
                "or select only those two streams."
            )
            raise SettingsError(msg)

    def check_batch_config(self) -> None:
        """Fail before any request if BATCH files could not be written where configured.

        Raises:
            SettingsError: parquet without pyarrow installed.
            BatchStorageError: the storage root does not take files.
        """
        if not self.config.get("batch_config"):
            return
        try:
            batch_config = BatchConfig.from_dict(self.config["batch_config"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            msg = (
                "Invalid configuration: batch_config needs 'encoding' (e.g. format jsonl, "
                "compression gzip) and 'storage' (e.g. root file:///data/batches)"
            )
            raise SettingsError(msg) from exc
        if batch_config.encoding.format == "parquet" and not importlib.util.find_spec("pyarrow"):
            msg = (
                "batch_config.encoding.format 'parquet' needs pyarrow, which is not installed: "
                "install it (pip install 'singer-sdk[parquet]') or use the format 'jsonl'."
            )
            raise SettingsError(msg)
        check_batch_storage(batch_config)

    def check_temp_dir(self) -> None:
        """Fail before any request if selected streams cannot spool downloads to disk.

        Raises:
            SettingsError: the temporary directory is missing, not writable or full.
        """
        if not any(
            stream.selected or stream.has_selected_descendents
            for stream in self.streams.values()
            if stream.name in SPOOLING_STREAMS
        ):
            return
        problem = temp_dir_problem()
        if problem:
            raise SettingsError(f"{problem}. Export downloads are spooled there.")

    @override
    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """``--test``: as the SDK's, with the temporary directory checked as for a sync."""
        if value != CliTestOptionValue.All.value:
            super().cb_test(ctx, param, value)
            return
        config_input: ConfigInput = ctx.params.get("config") or ConfigInput()
        tap = cls(
            config=config_input.config,
            parse_env_config=config_input.parse_env,
            validate_config=True,
        )
        tap.check_temp_dir()
        tap.run_connection_test()
        ctx.exit()

    @override
    def on_termination(self, signum: int, frame: FrameType | None) -> None:
        """Stop between two messages; the SDK's own handler exits 0 mid-write."""
        BOUNDARY.handle(signum, frame)

    @override
    @classmethod
    def cb_config(
        cls,
        ctx: click.Context,
        param: click.Option,
        value: tuple[str, ...],
    ) -> t.Any:  # a ConfigInput, shaped like the SDK's private _ConfigInput
        """``--config`` files (merged left to right) or ``ENV``; a bad file is one line."""
        return read_config_files(value)

    @override
    @classmethod
    def get_singer_command(cls) -> click.Command:
        """The SDK's command, with files read by the tap and failures reported in one line."""
        command = super().get_singer_command()
        params = [
            click.Option([f"--{param.name}"], help=param.help, type=click.STRING, metavar="FILE")
            if isinstance(param, click.Option) and param.name in {"catalog", "state"}
            else param
            for param in command.params
        ]
        return _TapCommand(
            name=command.name,
            callback=command.callback,
            params=params,
            help=command.help,
            context_settings=command.context_settings,
            logger=cls.logger,
        )

    @override
    @classmethod
    def invoke(cls, **kwargs: t.Any) -> None:
        """Run the CLI; a failure the user can fix ends with one line and exit code 1."""
        with report_failures(cls.logger):
            if kwargs.get("about"):
                cls.print_about(kwargs.get("about_format"))
                sys.exit(0)
            cls.print_version(print_fn=cls.logger.info)
            config_input: ConfigInput = kwargs.get("config") or ConfigInput()
            state_path, catalog_path = kwargs.get("state"), kwargs.get("catalog")
            state = None if state_path is None else read_state(state_path)
            catalog = None if catalog_path is None else read_catalog(catalog_path)
            tap = cls(
                config=config_input.config,
                state=state,
                catalog=catalog,
                parse_env_config=config_input.parse_env,
                validate_config=True,
            )
            if state is not None:
                tap.check_bookmarks(state, str(state_path))
            if catalog is not None:
                tap.warn_unknown_streams(catalog)
            tap.check_temp_dir()
            tap.check_batch_config()
            tap.check_keys()
            tap.sync_all()


class _DropEnvNotice(logging.Filter):
    """Drop the SDK's "Skipping parse of env var settings..." notice.

    The tap reads the environment itself (see ``TapAmplitude.__init__``) and says so; the
    SDK's line would mislead.
    """

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Skipping parse of env var settings..."


logging.getLogger(TapAmplitude.name).addFilter(_DropEnvNotice())


class _TapCommand(SingerCommand):
    """The SDK's command, reporting failures while options are processed like a sync's.

    ``--config`` files are read, and ``--test`` and ``--discover`` run, while click parses
    the options: their failures too end with one line and exit code 1.
    """

    @override
    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: t.Any,
    ) -> click.Context:
        with report_failures(self.logger):
            return super().make_context(info_name, args, parent, **extra)


def read_state(path: str) -> dict[str, t.Any]:
    """The state file's object.

    Raises:
        SettingsError: the file is unusable (named, with the reason).
    """
    state = read_json_file(path, "state")
    problem = state_problem(state)
    if problem:
        raise SettingsError(f"state file '{path}' is not Singer state: {problem}")
    return state


def read_catalog(path: str) -> Catalog:
    """The catalog file as a Catalog.

    Raises:
        SettingsError: the file is unusable (named, with the reason).
    """
    data = read_json_file(path, "catalog")
    problem = catalog_problem(data)
    if problem is None:
        try:
            return Catalog.from_dict(data)
        except (AttributeError, KeyError, TypeError, ValueError):
            problem = "an entry's schema or metadata has the wrong shape"
    raise SettingsError(f"catalog file '{path}' is not a Singer catalog: {problem}")


@contextlib.contextmanager
def report_failures(logger: logging.Logger) -> Iterator[None]:
    """Turn every failure into one ERROR line and an exit code, never a traceback.

    Exit codes: 1 for configuration, files, environment, disk and Amplitude failures (and
    the unforeseen); 130/143 when interrupted (see interrupt.py); click's usage errors exit 2.
    """
    try:
        yield
    except Interrupted as stop:
        logger.error(  # noqa: TRY400 - the message is the whole story
            "Interrupted by %s: the run is incomplete. The last STATE message written "
            "is where the next run resumes; run the same command again to continue.",
            stop.signal_name,
        )
        sys.exit(stop.exit_code)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise  # click prints these, and exits with its own codes
    except Exception as exc:
        failure = exc
        if isinstance(exc, OSError) and _is_stdout_failure(exc):  # output the SDK prints
            silence_stdout()
            failure = OutputUnwritable(os.strerror(exc.errno or 0))
        message = _failure_line(failure)
        if message is None:
            logger.debug("The failure in full:", exc_info=exc)
            message = (
                f"The run stopped on an unexpected {type(exc).__name__} ({_shortened(exc)}). "
                "If the config has stream_maps, check their expressions; otherwise please "
                "report this to tap-amplitude with the command and the log of a run with "
                "TAP_AMPLITUDE_LOGLEVEL=DEBUG (it holds no keys). The last STATE written is "
                "where the next run resumes."
            )
        logger.error("%s", message)  # noqa: TRY400
        sys.exit(1)


def _failure_line(exc: Exception) -> str | None:  # noqa: PLR0911 - one return per kind
    """The one line for a failure the user can act on; None for one nobody foresaw."""
    if isinstance(exc, OutputUnwritable):
        return (
            f"Could not write to standard output ({exc}): whatever reads the tap's output "
            "stopped or has no room left. The run is incomplete; run it again to resume from "
            "the last STATE that was written."
        )
    if isinstance(exc, ConfigValidationError):
        message = str(exc)
        if not message.startswith(INVALID_CONFIG):
            message = INVALID_CONFIG + "; ".join(exc.errors or [message])
        return message
    if isinstance(exc, (SettingsError, AmplitudeError, RetriableAPIError)):
        return str(exc)  # the message is the whole story
    if isinstance(exc, (UnicodeEncodeError, requests.RequestException)):
        return _request_failure_line(exc)
    if isinstance(exc, MappingError):
        return (
            f"stream_maps: {_shortened(exc)} Correct the expression "
            "(https://sdk.meltano.com/en/latest/stream_maps.html); "
            "a record lacking a property needs record.get('name'), not record['name']."
        )
    if isinstance(exc, DiscoveryError):
        return (
            f"The catalog does not fit this tap: {_shortened(exc)}. Write it again with --discover."
        )
    if isinstance(exc, OSError) and is_disk_error(exc):
        return disk_error_message(exc)
    return None


def _request_failure_line(exc: UnicodeEncodeError | requests.RequestException) -> str:
    """A request that could not be built, reached nothing, or got a body that is not JSON."""
    if isinstance(exc, (UnicodeEncodeError, requests.exceptions.InvalidHeader)):
        # Their text quotes the offending value, which may be a key: never shown.
        return (
            "A request to Amplitude could not be built: a setting sent in a header or in "
            "authentication (api_key, secret_key) holds characters HTTP cannot carry; copy "
            "the keys again from Amplitude (Settings > Projects)."
        )
    reason = request_failure(exc)
    return f"{reason[0].upper()}{reason[1:]}."


def _is_stdout_failure(exc: OSError) -> bool:
    """Whether a write error that names no file came from stdout.

    The tap's own files (downloads, BATCH files) name themselves in their errors; what is
    left is stdout, unless the temporary directory really is full or unwritable.
    """
    return exc.filename is None and exc.errno in OUTPUT_ERRNOS and temp_dir_problem() is None


def _shortened(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line, cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
