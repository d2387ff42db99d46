"""``lookup`` (data discovery) and ``jobs`` (deletion jobs): read-only commands."""

from __future__ import annotations

import typing as t
from datetime import datetime, timedelta, timezone

import click

from tap_amplitude.privacy.base import (
    DAY,
    EPILOG,
    checked_ids,
    cli,
    config_option,
    day_of,
    emit,
    load_config,
    note,
    open_tap,
    resolve_config,
)
from tap_amplitude.streams.privacy import (
    JOBS_LOOKAHEAD_DAYS,
    DeletionJobsStream,
    UserProfilesStream,
    profile_api_available,
)
from tap_amplitude.streams.users import UserSearchStream

if t.TYPE_CHECKING:
    from pathlib import Path


@cli.command(epilog=EPILOG)
@config_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...", callback=checked_ids)
def lookup(config_path: Path | None, ids: tuple[str, ...]) -> None:
    """Show what Amplitude holds about each person (data discovery).

    Each ID (an email or user id, a device id, or an Amplitude id) gives one JSON line: the
    user-search matches, their Amplitude ids and user ids, and, in the US region, each
    matched user's profile (user properties, cohort ids, and recommendations if the config
    has rec_id). The User Profile API does not exist in the EU region; there profiles are
    null. Nothing is changed in Amplitude.
    """
    config = load_config(resolve_config(config_path))
    if not profile_api_available(config):
        note(
            "the User Profile API is not available in the EU region; "
            "showing user search results only (profiles: null)."
        )
    with open_tap(config) as tap:
        search = UserSearchStream(tap=tap)
        profiles = UserProfilesStream(tap=tap) if profile_api_available(config) else None
        for term in dict.fromkeys(ids):
            emit(discover(term, search, profiles))


def discover(
    term: str, search: UserSearchStream, profiles: UserProfilesStream | None
) -> dict[str, t.Any]:
    """Everything Amplitude holds for one search term."""
    matches = [
        {key: value for key, value in match.items() if key != "search_term"}
        for match in search.request_records({"search_term": term})
    ]
    return {
        "query": term,
        "found": bool(matches),
        "matches": matches,
        "amplitude_ids": list(dict.fromkeys(m["amplitude_id"] for m in matches)),
        "user_ids": list(dict.fromkeys(m["user_id"] for m in matches if m.get("user_id"))),
        "profiles": None if profiles is None else profiles_of(profiles, term, matches),
    }


def profiles_of(
    stream: UserProfilesStream, term: str, matches: list[dict[str, t.Any]]
) -> list[dict[str, t.Any]]:
    """Profiles of the matched users; an anonymous device match is looked up by device id."""
    found: list[dict[str, t.Any]] = []
    asked: set[tuple[str, str]] = set()
    for match in matches:
        user_id = match.get("user_id")
        if user_id:
            key = ("user_id", str(user_id))
        elif match.get("match_type") == "match_user_or_device_id":
            key = ("device_id", term)
        else:
            continue
        if key in asked:
            continue
        asked.add(key)
        profile = stream.fetch(**{key[0]: key[1]})
        if profile is not None:
            found.append(profile)
    return found


# ----------------------------------------------------------------------------------------
# jobs


@cli.command(epilog=EPILOG)
@config_option
@click.option(
    "--start-day",
    type=DAY,
    help=f"First job day, YYYY-MM-DD (default: {JOBS_LOOKAHEAD_DAYS} days ago, UTC).",
)
@click.option(
    "--end-day",
    type=DAY,
    help=f"Last job day, YYYY-MM-DD (default: today + {JOBS_LOOKAHEAD_DAYS} days).",
)
def jobs(config_path: Path | None, start_day: datetime | None, end_day: datetime | None) -> None:
    """List deletion jobs scheduled between two days, one JSON line per job.

    Each job has its day, status (staging: still editable; submitted: locked; done), the
    Amplitude ids in it with requester and request day, and active_scrub_done_date. Ranges
    longer than Amplitude's six-month limit are split into several requests.
    """
    config = load_config(resolve_config(config_path))
    today = datetime.now(tz=timezone.utc).date()
    first = day_of(start_day, today - timedelta(days=JOBS_LOOKAHEAD_DAYS))
    last = day_of(end_day, today + timedelta(days=JOBS_LOOKAHEAD_DAYS))
    if last < first:
        raise click.BadParameter("must not be before --start-day", param_hint="--end-day")
    with open_tap(config) as tap:
        for job in DeletionJobsStream(tap=tap).jobs(first, last):
            emit(job)
