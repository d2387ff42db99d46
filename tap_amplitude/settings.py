"""Settings: the one place that reads input files, types setting values and checks them.

Values come from JSON files (``--config``, where numbers arrive as ``Decimal``), from
``TAP_AMPLITUDE_*`` environment variables (always text) and from Meltano (which sends
``kind: decimal`` values as floats such as ``24.0``). Each is brought to the type its setting
declares before the JSON schema is checked: ``24.0`` for an integer setting is ``24``, ``30.5``
for a number setting is a float, ``"true"`` from the environment is a boolean, ``'["a","b"]'``
is an array.

Every message names the setting (and the environment variable or file it came from) and what
was expected, and never the value: values may be keys, and a wrong value in the wrong field
(a secret pasted into ``start_date``) is still a secret.
"""

from __future__ import annotations

import decimal
import errno
import json
import math
import os
import sys
import tempfile
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from dotenv import find_dotenv, load_dotenv
from typing_extensions import override

from tap_amplitude.timestamps import parse_datetime

# No Amplitude project has data this old (Amplitude started in 2012); earlier dates are typos.
EARLIEST_DATE = datetime(2000, 1, 1, tzinfo=timezone.utc)
# Far enough for any schedule; later dates overflow the date arithmetic of windows.
LATEST_DATE = datetime(2999, 12, 31, tzinfo=timezone.utc)

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "on", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "off", "0"})
TEMP_ENV_VARIABLES = ("TMPDIR", "TEMP", "TMP")  # the order tempfile.gettempdir() reads them
# Streams that spool downloads to temporary files (the Export API's zip archives).
SPOOLING_STREAMS = frozenset({"export_events"})
_PROBE_BYTES = 64 * 1024
_DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT}
)
_ERRNO_REASONS: dict[int, str] = {
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "is not a directory",
    errno.EACCES: "is not writable (permission denied)",
    errno.EPERM: "is not writable (operation not permitted)",
    errno.EROFS: "is on a read-only file system",
    errno.ENOSPC: "is full (no space left on the device)",
    errno.EDQUOT: "is full (disk quota exceeded)",
}


class SettingsError(Exception):
    """A problem the user fixes in a file, the environment or the machine; one line, no value."""


# ----------------------------------------------------------------------------------------
# files


def read_json_file(path: str, what: str) -> dict[str, t.Any]:
    """The JSON object in a config, state or catalog file (``-`` reads stdin).

    Numbers with a fraction are ``Decimal``, as the SDK reads them.

    Raises:
        SettingsError: the file is missing, unreadable, not JSON or not a JSON object.
    """
    label = f"{what} file '{path}'"
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:  # noqa: PTH123 - a str path as given
                text = handle.read()
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{label} is not UTF-8 text; save it as UTF-8 JSON") from exc
    except OSError as exc:
        reason = _ERRNO_REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)
        if exc.errno in {errno.EACCES, errno.EPERM}:
            reason = "cannot be read (permission denied)"
        elif exc.errno == errno.EISDIR:
            reason = "is a directory, not a file"
        raise SettingsError(f"{label} {reason}") from exc
    try:
        data = json.loads(text, parse_float=decimal.Decimal)
    except ValueError as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        raise SettingsError(f"{label} is not valid JSON{where}") from exc
    except RecursionError as exc:
        raise SettingsError(f"{label} nests arrays or objects too deeply to be read") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{label} must hold a JSON object, not {_kind(data)}")
    return data


def state_problem(state: Mapping[str, t.Any]) -> str | None:
    """What makes a state object unusable, if anything (its shape, never its content)."""
    bookmarks = state.get("bookmarks", {})
    if not isinstance(bookmarks, dict) or not all(
        isinstance(value, dict) for value in bookmarks.values()
    ):
        return "'bookmarks' must be a JSON object holding one object per stream"
    for stream, bookmark in bookmarks.items():
        partitions = bookmark.get("partitions")
        if partitions is not None and (
            not isinstance(partitions, list)
            or not all(
                isinstance(entry, dict) and isinstance(entry.get("context", {}), dict)
                for entry in partitions
            )
        ):
            return (
                f"'bookmarks.{str(stream)[:60]}.partitions' must be an array of objects, each "
                "with a 'context' object; correct it, or remove the stream's entry to start "
                "it again from start_date"
            )
    return None


def catalog_problem(catalog: Mapping[str, t.Any]) -> str | None:
    """What makes a catalog object unusable, if anything (its shape, never its content)."""
    streams = catalog.get("streams")
    if not isinstance(streams, list):
        return "it needs a 'streams' array (write one with --discover)"
    for index, entry in enumerate(streams):
        if not isinstance(entry, dict) or not isinstance(entry.get("tap_stream_id"), str):
            return f"streams[{index}] is not a catalog entry with a 'tap_stream_id'"
        if not isinstance(entry.get("metadata", []), list) or not isinstance(
            entry.get("schema"), dict
        ):
            return (
                f"streams[{index}] ('{entry['tap_stream_id'][:60]}') needs 'schema' as an "
                "object and 'metadata' as an array (write the catalog with --discover)"
            )
    return None


@dataclass(frozen=True)
class ReplicationChoice:
    """How a stream is read: its replication key, method and key properties."""

    replication_key: str | None
    replication_method: str
    key_properties: tuple[str, ...]


def catalog_choice_problem(
    stream: str, own: ReplicationChoice, chosen: ReplicationChoice, properties: t.Iterable[str]
) -> str | None:
    """A catalog's replication edit the stream cannot honour, if any.

    Each stream resumes on one fixed key (the Export API windows by upload time), so a
    different key or method would label STATE with something it does not hold, and a key
    property outside the schema would leave every row without its key.
    """
    fix = "remove the change, or write the catalog again with --discover"
    if chosen.replication_key != own.replication_key:
        resumes = (
            f"can only resume on '{own.replication_key}'"
            if own.replication_key
            else "has none: it is read in full on every run"
        )
        return (
            f"The catalog gives stream '{shown_names([stream])}' the replication-key "
            f"'{shown_names([chosen.replication_key or ''])}', but the stream {resumes}; {fix}."
        )
    if chosen.replication_method != own.replication_method:
        if own.replication_method == "INCREMENTAL":
            instead = (
                f"is always read incrementally on '{own.replication_key}'. To read it again "
                "from start_date, run without its bookmark (meltano run --full-refresh, or "
                "drop it from the state file)"
            )
        else:
            instead = "has no replication key: it is read in full on every run"
        return (
            f"The catalog sets replication-method '{shown_names([chosen.replication_method])}' for "
            f"stream '{shown_names([stream])}', which {instead}; remove replication-method from "
            "the catalog."
        )
    missing = [key for key in chosen.key_properties if key not in set(properties)]
    if missing:
        return (
            f"The catalog gives stream '{shown_names([stream])}' key properties its records do not "
            f"have ({shown_names(missing)}); list properties of its schema, or {fix}."
        )
    return None


_NAMES_SHOWN = 5


def shown_names(names: t.Iterable[object], width: int = 60) -> str:
    """Names (from a catalog, a state, a listing) for a message: each cut short, the first few."""
    shown = [str(name)[:width] for name in names]
    return ", ".join(shown[:_NAMES_SHOWN]) + (", …" if len(shown) > _NAMES_SHOWN else "")


# A bookmark this far past the clock was not written by a run of this tap (every replication
# key is a time at or before the run: upload, merge, download, chart-run times, dates in the
# project's time zone); resuming from it would skip everything up to it with exit 0.
BOOKMARK_AHEAD = timedelta(days=1)


def bookmark_problems(state: Mapping[str, t.Any], replication_keys: Mapping[str, str]) -> list[str]:
    """Bookmarks a stream could not resume from: not an ISO 8601 date-time, or in the future.

    Every replication key of this tap is a date or a date-time; the values are not echoed.
    """
    latest = datetime.now(tz=timezone.utc) + BOOKMARK_AHEAD
    problems = []
    for stream, bookmark in state.get("bookmarks", {}).items():
        if stream not in replication_keys:
            continue
        partitions = bookmark.get("partitions")
        entries = [bookmark, *(partitions if isinstance(partitions, list) else [])]
        for entry in entries:
            value = entry.get("replication_key_value") if isinstance(entry, dict) else None
            if value is not None and not is_timestamp(value):
                problems.append(
                    f"the bookmark of '{stream}' (replication_key_value of "
                    f"{replication_keys[stream]}) is not an ISO 8601 date-time; correct it, or "
                    "remove the stream's entry to start again from start_date"
                )
                break
            labelled = entry.get("replication_key")
            if value is not None and labelled not in (None, replication_keys[stream]):
                problems.append(
                    f"the bookmark of '{stream}' is labelled replication_key "
                    f"'{str(labelled)[:60]}', but the stream resumes on "
                    f"{replication_keys[stream]}, so the value is not a point it can resume "
                    "from; remove the stream's entry to start again from start_date (or use "
                    "the state this tap wrote)"
                )
                break
            if value is not None and parse_datetime(value) > latest:
                problems.append(
                    f"the bookmark of '{stream}' (replication_key_value of "
                    f"{replication_keys[stream]}) is in the future, so resuming from it would "
                    "skip everything up to it; the state is not from a run of this tap (or the "
                    "clock is wrong): correct it, or remove the stream's entry to start again "
                    "from start_date"
                )
                break
    return problems


def is_timestamp(value: t.Any) -> t.TypeGuard[str]:
    """Whether ``value`` is an ISO 8601 date or date-time string."""
    if not isinstance(value, str):
        return False
    try:
        parse_datetime(value)
    except ValueError:
        return False
    return True


@dataclass
class ConfigInput:
    """What ``--config`` gave: the files' settings, and whether ``ENV`` was among them.

    Files merge left to right. This is the shape the SDK's ``--discover`` and ``--test``
    callbacks read.
    """

    config: dict[str, t.Any] = field(default_factory=dict)
    parse_env: bool = False


def read_config_files(values: t.Iterable[str]) -> ConfigInput:
    """``--config`` values: JSON files (later ones win) or ``ENV``.

    Raises:
        SettingsError: a file is missing, unreadable, not JSON or not a JSON object.
    """
    given = ConfigInput()
    for value in values:
        if value == "ENV":
            given.parse_env = True
        else:
            given.config |= read_json_file(value, "config")
    return given


# ----------------------------------------------------------------------------------------
# environment


@dataclass(frozen=True)
class EnvText:
    """A setting's raw text from an environment variable, typed later by ``coerce_config``."""

    variable: str
    text: str

    @override
    def __repr__(self) -> str:
        """The variable only: the text may be a key."""
        return f"EnvText({self.variable})"


def load_dotenv_file() -> None:
    """Variables from a ``.env`` file in the working directory or a parent.

    They fill in what the environment does not set: a variable set by the shell or by
    Meltano wins over a stale file. (The SDK looks upward from its own install folder and
    lets the file win.)
    """
    load_dotenv(find_dotenv(usecwd=True), override=False)


def environment_values(
    schema: Mapping[str, t.Any], prefix: str, environ: Mapping[str, str]
) -> dict[str, EnvText]:
    """``<PREFIX><SETTING>`` variables for every top-level setting, as untyped text.

    A blank variable of a non-string setting counts as unset (Meltano exports empty ones).
    """
    values: dict[str, EnvText] = {}
    for key, subschema in schema.get("properties", {}).items():
        variable = prefix + key.upper().replace("-", "_")
        text = environ.get(variable)
        if text is None:
            continue
        if not text.strip() and "string" not in _types(subschema):
            continue
        values[key] = EnvText(variable, text)
    return values


# ----------------------------------------------------------------------------------------
# typing values


def coerce_config(config: MutableMapping[str, t.Any], schema: Mapping[str, t.Any]) -> None:
    """Bring every setting to its declared type, in place; what cannot be typed stays as is.

    ``null`` for a setting with a default means the default. Values left untyped are reported
    by the schema check that follows (``schema_problems``), by name.
    """
    for key, subschema in schema.get("properties", {}).items():
        if key not in config:
            continue
        if config[key] is None and "default" in subschema:
            del config[key]  # the schema check fills the default in
            continue
        config[key] = coerce_value(config[key], subschema)


def coerce_value(value: t.Any, schema: Mapping[str, t.Any]) -> t.Any:  # noqa: PLR0911
    """One value in its schema's type where that is lossless, else unchanged."""
    if isinstance(value, EnvText):
        try:
            return coerce_value(parse_text(value.text, schema), schema)
        except ValueError:
            return value
    types = _types(schema)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        if "integer" in types and _is_whole(value):
            return int(value)
        if "number" in types and isinstance(value, decimal.Decimal) and value.is_finite():
            return int(value) if value == value.to_integral_value() else float(value)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_value(item, schema["items"]) for item in value]
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        typed = dict(value)
        coerce_config(typed, schema)
        return typed
    return value


def parse_text(text: str, schema: Mapping[str, t.Any]) -> t.Any:  # noqa: C901, PLR0911
    """A setting's value from environment text, by its schema type.

    Raises:
        ValueError: the text is not a value of that type.
    """
    types = _types(schema)
    stripped = text.strip()
    if "integer" in types:
        number = _number(stripped)
        if not _is_whole(number):
            raise ValueError(stripped)
        return int(number)
    if "number" in types:
        return _number(stripped)
    if "boolean" in types:
        if stripped.lower() in TRUE_WORDS:
            return True
        if stripped.lower() in FALSE_WORDS:
            return False
        raise ValueError(stripped)
    if "array" in types:
        if stripped.startswith(("[", "{")):
            parsed = json.loads(stripped, parse_float=decimal.Decimal)
            if not isinstance(parsed, list):
                raise ValueError(stripped)
            return parsed
        # The SDK's older form: comma-separated items.
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [parse_text(item, items or {}) for item in stripped.split(",") if item.strip()]
    if "object" in types:
        parsed = json.loads(stripped, parse_float=decimal.Decimal)
        if not isinstance(parsed, dict):
            raise ValueError(stripped)
        return parsed
    return text


def _number(text: str) -> decimal.Decimal:
    try:
        number = decimal.Decimal(text)
    except decimal.InvalidOperation as exc:
        raise ValueError(text) from exc
    if not number.is_finite():
        raise ValueError(text)
    return number


def _is_whole(value: t.Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return value.is_finite() and value == value.to_integral_value()


def _types(schema: Mapping[str, t.Any]) -> list[str]:
    declared = schema.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


# ----------------------------------------------------------------------------------------
# checking values


def schema_problems(errors: Iterable[t.Any], origins: Mapping[str, str] | None = None) -> list[str]:
    """JSON-schema errors as ``setting: what was expected`` lines, never with the value."""
    problems: list[str] = []
    for error in errors:
        problem = describe_error(error, origins or {})
        if problem not in problems:
            problems.append(problem)
    return problems


def describe_error(error: t.Any, origins: Mapping[str, str]) -> str:  # noqa: PLR0911
    """One value-free line for a ``jsonschema.ValidationError`` (its message embeds the value)."""
    path = _setting_path(list(error.absolute_path))
    top = str(error.absolute_path[0]) if error.absolute_path else ""
    instance = error.instance
    if isinstance(instance, EnvText):
        expected = _expected(error.schema if isinstance(error.schema, dict) else {})
        return f"{path} (environment variable {instance.variable}): expected {expected}"
    where = path or "config"
    if top in origins:
        where = f"{path} (environment variable {origins[top]})"
    keyword, allowed = error.validator, error.validator_value
    if keyword == "required":
        missing = [key for key in allowed if key not in instance]
        prefix = f"{path}." if path else ""
        return ", ".join(f"{prefix}{key}" for key in missing) + ": required setting is missing"
    if keyword == "type":
        expected = _expected(error.schema if isinstance(error.schema, dict) else {})
        if "integer" in _types(error.schema) and isinstance(instance, (float, decimal.Decimal)):
            return f"{where}: expected a whole number, got a number with a fraction"
        return f"{where}: expected {expected}, got {_kind(instance)}"
    if keyword == "enum":
        return f"{where}: must be one of {', '.join(str(option) for option in allowed)}"
    bounds = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "greater than",
        "exclusiveMaximum": "less than",
    }
    if keyword in bounds:
        return f"{where}: must be {bounds[keyword]} {allowed}"
    if keyword == "pattern":
        return f"{where}: must match the pattern {allowed}"
    if keyword == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(str(key) for key in instance if key not in known)
        return f"{where}: unknown key(s) {', '.join(extra)}"
    return f"{where}: does not match the setting's '{keyword}' rule"


def _setting_path(parts: list[t.Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _expected(schema: Mapping[str, t.Any]) -> str:
    names = {
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "array": "an array (in the environment: a JSON array)",
        "object": "an object (in the environment: a JSON object)",
    }
    kinds = [names.get(kind, kind) for kind in _types(schema) if kind != "null"]
    return " or ".join(kinds) or "a valid value"


def _kind(value: t.Any) -> str:
    """The JSON kind of a value, for messages that must not show the value."""
    kinds: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (type(None), "null"),
        (bool, "a boolean"),  # before int: bool is an int
        (int, "an integer"),
        ((float, decimal.Decimal), "a number"),
        (str, "a string"),
        (list, "an array"),
        (dict, "an object"),
    )
    return next((name for kind, name in kinds if isinstance(value, kind)), "an unsupported value")


def secret_problems(
    config: Mapping[str, t.Any],
    schema: Mapping[str, t.Any],
    origins: Mapping[str, str] | None = None,
) -> list[str]:
    """Blank required strings or secrets, and secrets an HTTP header cannot carry unchanged."""
    problems: list[str] = []
    origins = origins or {}

    def name(key: str) -> str:
        return f"{key} (environment variable {origins[key]})" if key in origins else key

    properties = schema.get("properties", {})
    secrets = [key for key, subschema in properties.items() if subschema.get("secret")]
    for key in dict.fromkeys([*schema.get("required", []), *secrets]):
        value = config.get(key)
        if isinstance(value, str) and not value.strip():
            problems.append(f"{name(key)}: is empty")
    for key, subschema in schema.get("properties", {}).items():
        value = config.get(key)
        if not subschema.get("secret") or not isinstance(value, str) or not value.strip():
            continue
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            problems.append(
                f"{name(key)}: contains characters outside Latin-1, which HTTP authentication "
                "cannot send; copy the key again from Amplitude (Settings > Projects)"
            )
            continue
        if value != value.strip() or any(ord(char) < 32 or ord(char) == 127 for char in value):  # noqa: PLR2004
            problems.append(
                f"{name(key)}: has leading or trailing whitespace or control characters; "
                "copy the key again without them"
            )
    return problems


# Longer than any request Amplitude answers; beyond it the socket layer refuses the value.
MAX_REQUEST_TIMEOUT_SECONDS = 86_400


def request_timeout_problem(value: t.Any) -> str | None:
    """Why a ``request_timeout`` is unusable (NaN, infinite, not above 0, over a day), if it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        return "must be a number of seconds above 0"
    if not 0 < value <= MAX_REQUEST_TIMEOUT_SECONDS:  # NaN fails both comparisons
        return f"must be a number of seconds above 0 and at most {MAX_REQUEST_TIMEOUT_SECONDS}"
    return None


def config_problems(config: Mapping[str, t.Any]) -> list[str]:
    """Cross-field problems with settings that pass the schema, each naming the setting."""
    problems: list[str] = []
    dates: dict[str, t.Any] = {}
    for key in ("start_date", "end_date"):
        if isinstance(config.get(key), str) and not config[key].strip():
            problems.append(f"{key}: is empty; give a date-time or remove the setting")
        elif config.get(key):
            try:
                dates[key] = parse_datetime(str(config[key]))
            except ValueError:
                problems.append(f"{key}: is not an ISO 8601 date-time (e.g. 2024-03-01T00:00:00Z)")
    problems += [
        f"{key}: is before {EARLIEST_DATE:%Y-%m-%d}; Amplitude holds no data that old (use the "
        "project's first day)"
        for key, moment in dates.items()
        if moment < EARLIEST_DATE
    ]
    problems += [
        f"{key}: is after {LATEST_DATE:%Y-%m-%d}; check the year"
        for key, moment in dates.items()
        if moment > LATEST_DATE
    ]
    if "start_date" in dates and "end_date" in dates and dates["end_date"] <= dates["start_date"]:
        problems.append("end_date: must be after start_date")
    problems += _value_problems(config)
    problems += [
        f"{key}: expected a string, got null"
        for key in ("api_key", "secret_key")
        if key in config and config[key] is None
    ]
    missing_keys = [key for key in ("api_key", "secret_key") if key not in config]
    if missing_keys and not config.get("storage_export_url"):
        problems.append(
            ", ".join(missing_keys) + ": required setting is missing (only reading "
            "storage_export_url needs no keys)"
        )
    if config.get("storage_export_url"):
        from tap_amplitude.storage.source import scheme_problem  # noqa: PLC0415 - no cycle

        problem = scheme_problem(str(config["storage_export_url"]))
        if problem:
            problems.append(f"storage_export_url: {problem}")
    return problems


def _value_problems(config: Mapping[str, t.Any]) -> list[str]:
    """Values the schema lets through but requests cannot use: the timeout, the base URLs."""
    problems: list[str] = []
    if config.get("request_timeout") is not None:
        problem = request_timeout_problem(config["request_timeout"])
        if problem:
            problems.append(f"request_timeout: {problem}")
    problems += [f"{key}: {why}" for key, why in base_url_problems(config).items()]
    return problems


def base_url_problems(config: Mapping[str, t.Any]) -> dict[str, str]:
    """``api_url`` and ``profile_api_url`` values that cannot be used, with the reason."""
    problems = {}
    for key in ("api_url", "profile_api_url"):
        if config.get(key) is not None and (problem := _url_problem(config[key])):
            problems[key] = problem
    return problems


def _url_problem(value: t.Any) -> str | None:
    """Why a base URL setting cannot be used: blank, or not an http(s) URL with a host."""
    text = str(value)
    if not text.strip():
        return "is empty; remove it to use the region's host, or give a URL"
    if any(char.isspace() for char in text):
        return "contains spaces or line breaks; copy the URL again"
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return "is not an http(s) URL (e.g. https://amplitude.com)"
    try:
        parts.port  # noqa: B018 - raises for a port outside 0-65535
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    return None


# ----------------------------------------------------------------------------------------
# the temporary directory


def temp_dir_problem() -> str | None:
    """Why export downloads could not be spooled to the temporary directory, if they could not.

    A directory named by TMPDIR (or TEMP, TMP) that is unusable is a problem even though
    Python would quietly fall back to /tmp: the user chose it, likely for its space.
    """
    for variable in TEMP_ENV_VARIABLES:
        chosen = os.environ.get(variable)
        if chosen:
            problem = _unwritable(chosen)
            if problem:
                return f"{variable}={chosen}: {problem}"
            break
    try:
        directory = tempfile.gettempdir()
    except OSError:
        return "no usable temporary directory: set TMPDIR to a writable directory"
    problem = _unwritable(directory)
    return f"temporary directory {directory}: {problem}" if problem else None


def _unwritable(directory: str) -> str | None:
    """Why a small file cannot be written in ``directory`` (None if it can)."""
    if not os.path.isdir(directory):  # noqa: PTH112
        reason = "is not a directory" if os.path.exists(directory) else "does not exist"  # noqa: PTH110
        return f"{reason}; it needs to be a writable directory with free space"
    try:
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.write(b"\0" * _PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return f"{disk_reason(exc)}; it needs write access and free space"
    return None


def disk_reason(exc: OSError) -> str:
    """A short reason for a failed write."""
    return _ERRNO_REASONS.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def is_disk_error(exc: OSError) -> bool:
    """Whether an OSError is about writing files (space, permissions, read-only, missing)."""
    return exc.errno in _DISK_ERRNOS


def disk_error_message(exc: OSError) -> str:
    """One line for a write that failed mid-run, naming the file or temporary directory."""
    directory = tempfile.gettempdir()
    target = str(exc.filename) if exc.filename else f"the temporary directory {directory}"
    return (
        f"Could not write to {target}: {disk_reason(exc)}. Export downloads are spooled to "
        f"{directory}; it needs write access and free space (point TMPDIR at another "
        "directory if needed). Run again to resume from the last STATE."
    )
