"""``access``: assemble each person's access package (GDPR Art. 15, CCPA).

Per person, a folder (0700) under ``--out`` holds (each file 0600):

* ``user_search.json``: the user search matches;
* ``identities.json``: mapped users (§15.2) and merged Amplitude ids (§15.3);
* ``profiles.json``: profiles with user properties and cohort ids (US only, §7);
* ``events/``: every event, from the DSAR API (§14) or, with ``--events-from-activity``,
  from the User Activity API (§5);
* ``manifest.json``: what was asked, when, from which project and region, each file's row
  count and sha256, and what could not be included and why.

DSAR requests take up to days (§14.5). Each is recorded in the audit log (``dsar-requesting``
before the POST, ``dsar-requested`` with its id after), and the command returns once
``--wait`` runs out; running it again resumes polling and finishes the package. A request is
never made twice for the same person, Amplitude id and dates unless ``--new-request`` is
given (for requests that failed or whose outputs expired).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import typing as t
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import click
import requests

from tap_amplitude.privacy.audit import AuditLog
from tap_amplitude.privacy.base import (
    DAY,
    DEFAULT_AUDIT_LOG,
    EPILOG,
    CliError,
    Shield,
    checked_ids,
    cli,
    config_option,
    emit,
    finite_seconds,
    host_of,
    key_hash,
    load_config,
    note,
    now_text,
    open_tap,
    private_dir,
    region_of,
    resolve_config,
    run_state,
    write_private,
)
from tap_amplitude.privacy.dsar import (
    DsarClient,
    OutputsExpiredError,
    uses_org_keys,
)
from tap_amplitude.privacy.identities import Identities
from tap_amplitude.privacy.lookup import profiles_of
from tap_amplitude.streams.privacy import UserProfilesStream, profile_api_available
from tap_amplitude.streams.users import UserSearchStream

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from tap_amplitude.privacy.dsar import Download

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
# Without --start-day: from the person's first use (User Activity), else this far back.
DEFAULT_LOOKBACK_DAYS = 2 * 365
# Polling backoff while --wait lasts: 1 s, doubling, at most 15 minutes (§14.5 leaves about
# one poll every 15 minutes per user within the cost budget).
FIRST_POLL_SECONDS = 1.0
MAX_POLL_SECONDS = 900.0
ACTIVITY_PAGE = 1000
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


@dataclass
class Package:
    """One person's folder and manifest, as built so far."""

    folder: Path
    manifest: dict[str, t.Any] = field(default_factory=dict)

    def add_file(self, name: str, data: bytes, rows: int, what: str) -> None:
        """Write a file of the package (0600) and list it in the manifest."""
        path = self.folder / name
        private_dir(path.parent)
        write_private(path, data)
        self.record(name, rows, hashlib.sha256(data).hexdigest(), len(data), what)

    def add_json(self, name: str, payload: t.Any, rows: int, what: str) -> None:
        """:meth:`add_file` for a JSON document."""
        text = json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n"
        self.add_file(name, text.encode("utf-8"), rows, what)

    def record(self, name: str, rows: int, sha256: str, size: int, what: str) -> None:
        """List (or re-list) a file in the manifest."""
        files = [f for f in self.manifest.setdefault("files", []) if f["path"] != name]
        files.append({"path": name, "what": what, "rows": rows, "bytes": size, "sha256": sha256})
        self.manifest["files"] = sorted(files, key=lambda entry: entry["path"])

    def exclude(self, what: str, why: str) -> None:
        """Say what is not in the package, and why (once per ``what``)."""
        entries = [e for e in self.manifest.setdefault("not_included", []) if e["what"] != what]
        self.manifest["not_included"] = [*entries, {"what": what, "why": why}]

    def include(self, what: str) -> None:
        """Forget an earlier exclusion of ``what`` (it is in the package now)."""
        self.manifest["not_included"] = [
            e for e in self.manifest.get("not_included", []) if e["what"] != what
        ]

    def save(self) -> None:
        """Write ``manifest.json`` (0600)."""
        self.manifest["updated_at"] = now_text()
        text = json.dumps(self.manifest, ensure_ascii=False, indent=2, default=str) + "\n"
        write_private(self.folder / MANIFEST, text.encode("utf-8"))


@cli.command(epilog=EPILOG)
@config_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...", callback=checked_ids)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the packages: one sub-folder per person (created 0700, files 0600).",
)
@click.option(
    "--start-day",
    type=DAY,
    help="First day of events, YYYY-MM-DD (default: the person's first use).",
)
@click.option(
    "--end-day",
    type=DAY,
    help="Last day of events, YYYY-MM-DD (default: today, UTC).",
)
@click.option(
    "--events-from-activity",
    is_flag=True,
    help="Read events from the User Activity API instead of the DSAR API (see its limits).",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    callback=lambda _ctx, param, value: finite_seconds(param, value),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Keep polling pending DSAR requests this long (with backoff) before returning.",
)
@click.option(
    "--new-request",
    is_flag=True,
    help="Ask Amplitude again where an earlier DSAR request failed or its outputs expired.",
)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_AUDIT_LOG,
    show_default=True,
    help="JSON-lines log where DSAR request ids are recorded (and read back to resume).",
)
def access(  # noqa: PLR0913, PLR0917 - one parameter per option
    config_path: Path | None,
    ids: tuple[str, ...],
    out: Path,
    start_day: datetime | None,
    end_day: datetime | None,
    events_from_activity: bool,  # noqa: FBT001 - click flag
    wait: float,
    new_request: bool,  # noqa: FBT001 - click flag
    audit_log: Path,
) -> int:
    """Assemble each person's access package (GDPR Art. 15 / CCPA).

    For each ID (an email or user id, a device id, or an Amplitude id): user search
    matches, mapped and merged ids, profile and cohort ids (US only), and every event
    through the DSAR API, written to a folder per person under --out with a manifest.json
    (row counts, sha256, what could not be included and why). The folders and files are
    readable by their owner only.

    DSAR requests take up to 3 days. The request ids are recorded in the audit log and
    the command returns after --wait seconds; run the same command again to resume
    polling and finish the packages: nothing is requested twice. The DSAR API may need
    organization keys (org_api_key, org_secret_key in the config).
    """
    config = load_config(resolve_config(config_path))
    first = start_day.date() if start_day else None
    last = end_day.date() if end_day else None
    if first and last and last < first:
        raise click.BadParameter("must not be before --start-day", param_hint="--end-day")
    try:
        private_dir(out)
    except OSError as exc:
        raise CliError(f"cannot create {out} ({exc.strerror or exc}); nothing was asked") from exc
    audit = AuditLog(audit_log, config["api_key"])
    state = run_state()
    state.resume_hint = (
        f"DSAR requests made so far are recorded in {audit_log}. Run the same command again "
        "to resume; nothing is requested twice."
    )
    if not profile_api_available(config):
        note("the User Profile API is not available in the EU region; packages have no profiles.")
    deadline = time.monotonic() + wait
    with open_tap(config) as tap, _package_writes(out):
        builder = _Builder(
            config=config,
            audit=audit,
            search=UserSearchStream(tap=tap),
            profiles=UserProfilesStream(tap=tap) if profile_api_available(config) else None,
            identities=Identities(tap=tap),
            dsar=None if events_from_activity else DsarClient(tap=tap),
            first=first,
            last=last,
            new_request=new_request,
        )
        packages = [builder.start(term, out) for term in dict.fromkeys(ids)]
        if builder.dsar is not None:
            builder.poll(packages, deadline)
    pending = 0
    for package in packages:
        manifest = package.manifest
        pending += manifest["status"] == "pending"
        emit(
            {
                "id": manifest["asked"]["id"],
                "status": manifest["status"],
                "folder": str(package.folder),
                "files": len(manifest.get("files", [])),
                "not_included": manifest.get("not_included", []),
                "dsar_requests": [r["request_id"] for r in manifest.get("dsar_requests", [])],
            }
        )
    if pending:
        note(
            f"{pending} package(s) wait for DSAR requests (they take up to 3 days); request "
            f"ids are in {audit_log}. Run the same command again to resume; nothing is "
            "requested twice."
        )
    return 0


@dataclass
class _Builder:
    """Builds packages: lookups first, then events (DSAR or User Activity)."""

    config: dict[str, t.Any]
    audit: AuditLog
    search: UserSearchStream
    profiles: UserProfilesStream | None
    identities: Identities
    dsar: DsarClient | None
    first: date | None
    last: date | None
    new_request: bool

    # -- a package's first run: lookups ------------------------------------------------

    def start(self, term: str, out: Path) -> Package:
        """Open (or resume) ``term``'s package; look the person up on its first run."""
        folder = private_dir(out / folder_name(term))
        package = Package(folder)
        existing = _read_manifest(folder / MANIFEST)
        if existing is not None and existing.get("asked", {}).get("id") == term:
            package.manifest = existing
            if self._same_dates(existing):
                renew = [
                    r
                    for r in existing.get("dsar_requests", [])
                    if r.get("status") in {"failed", "expired"}
                ]
                if self.new_request and renew and self.dsar is not None:
                    existing["status"] = "pending"  # asked again below
                return package
        package.manifest = self._lookup(term, package)
        package.save()
        if self.dsar is None:
            self._events_from_activity(package)
            package.save()
        return package

    def _same_dates(self, manifest: dict[str, t.Any]) -> bool:
        """Whether a resumed package was asked for the same days (unless none were given)."""
        asked = manifest.get("asked", {})
        return (self.first is None or asked.get("start_day") == self.first.isoformat()) and (
            self.last is None or asked.get("end_day") == self.last.isoformat()
        )

    def _lookup(self, term: str, package: Package) -> dict[str, t.Any]:
        """User search, identities and profiles; the manifest that records them."""
        today = datetime.now(tz=timezone.utc).date()
        package.manifest = {
            "manifest_version": MANIFEST_VERSION,
            "status": "pending",
            "created_at": now_text(),
            "project": {
                "api_key_sha256_12": key_hash(self.config["api_key"]),
                "host": host_of(self.config),
                "region": region_of(self.config),
            },
            "files": [],
            "not_included": [],
            "dsar_requests": [],
        }
        matches = [
            {key: value for key, value in match.items() if key != "search_term"}
            for match in self.search.request_records({"search_term": term})
        ]
        package.add_json("user_search.json", matches, len(matches), "user search matches")
        amplitude_ids = list(dict.fromkeys(int(m["amplitude_id"]) for m in matches))
        user_ids = list(dict.fromkeys(str(m["user_id"]) for m in matches if m.get("user_id")))
        mapped = self.identities.mapped_users(user_ids) if user_ids else []
        activities = [self.identities.activity(amplitude_id) for amplitude_id in amplitude_ids]
        merged = {
            str(a.amplitude_id): {
                "canonical_amplitude_id": a.canonical_amplitude_id,
                "merged_amplitude_ids": a.merged_amplitude_ids,
            }
            for a in activities
        }
        package.add_json(
            "identities.json",
            {"mapped_users": [m.as_json() for m in mapped], "amplitude_ids": merged},
            len(mapped) + sum(len(a.merged_amplitude_ids) for a in activities),
            "mapped users (user mapping) and merged Amplitude ids (User Activity)",
        )
        if self.profiles is not None:
            found = profiles_of(self.profiles, term, matches)
            package.add_json("profiles.json", found, len(found), "profiles and cohort ids")
        else:
            package.exclude(
                "profiles",
                "the User Profile API does not exist in the EU region (user properties are "
                "still in the events)",
            )
        if mapped:
            package.exclude(
                "events of mapped users",
                "mapped users are listed in identities.json; their events are under their "
                "own ids (ask for them separately)",
            )
        used = [a.first_used for a in activities if a.first_used]
        start = self.first or (
            date.fromisoformat(min(used)) if used else today - timedelta(DEFAULT_LOOKBACK_DAYS)
        )
        end = self.last or today
        source = "dsar" if self.dsar is not None else "user_activity"
        package.manifest.update(
            asked={
                "id": term,
                "start_day": start.isoformat(),
                "end_day": end.isoformat(),
                "events_source": source,
            },
            amplitude_ids=amplitude_ids,
            user_ids=user_ids,
        )
        if not amplitude_ids:
            package.exclude("events", f"Amplitude has no user matching {term!r}")
        return package.manifest

    # -- events from the DSAR API ------------------------------------------------------

    def poll(self, packages: list[Package], deadline: float) -> None:
        """Make missing requests, then poll with backoff until done or ``deadline``."""
        for package in packages:
            if package.manifest["status"] == "pending":
                self._request_missing(package)
        pause = FIRST_POLL_SECONDS
        while True:
            for package in packages:
                if package.manifest["status"] == "pending":
                    self._check(package)
                    package.save()
            waiting = [p for p in packages if p.manifest["status"] == "pending"]
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                return
            time.sleep(min(pause, left))
            pause = min(pause * 2, MAX_POLL_SECONDS)

    def _request_missing(self, package: Package) -> None:
        """A DSAR request per Amplitude id that has none yet (recorded in the audit log)."""
        assert self.dsar is not None  # noqa: S101 - only called with a DSAR client
        manifest = package.manifest
        asked = manifest["asked"]
        known = {r["amplitude_id"]: r for r in manifest.get("dsar_requests", [])}
        for amplitude_id in manifest.get("amplitude_ids", []):
            request = known.get(amplitude_id)
            if request is not None and not (
                self.new_request and request.get("status") in {"failed", "expired"}
            ):
                continue
            with self.audit.locked(on_wait=_waiting(self.audit.path)):
                recorded = None if self.new_request else self._recorded(asked, amplitude_id)
                request_id = recorded or self._create(asked, amplitude_id)
            entry = {"request_id": request_id, "amplitude_id": amplitude_id, "status": "staging"}
            others = [
                r for r in manifest.get("dsar_requests", []) if r["amplitude_id"] != amplitude_id
            ]
            manifest["dsar_requests"] = [*others, entry]
            package.include(f"events of Amplitude id {amplitude_id}")
        package.save()

    def _recorded(self, asked: dict[str, t.Any], amplitude_id: int) -> int | None:
        """The request an earlier run made for the same person, id and days, if any."""
        found = None
        for entry in self.audit.entries():
            if (
                entry.get("event") == "dsar-requested"
                and entry.get("project") == self.audit.project
                and entry.get("amplitude_id") == amplitude_id
                and entry.get("start_day") == asked["start_day"]
                and entry.get("end_day") == asked["end_day"]
            ):
                found = int(entry["request_id"])
        return found

    def _create(self, asked: dict[str, t.Any], amplitude_id: int) -> int:
        """POST one request; its id is on disk before a signal can stop the run."""
        assert self.dsar is not None  # noqa: S101
        body = {
            "amplitudeId": amplitude_id,
            "startDate": asked["start_day"],
            "endDate": asked["end_day"],
        }
        line = {
            "project": self.audit.project,
            "dsar_keys": "organization" if uses_org_keys(self.config) else "project",
            "query": asked["id"],
            "amplitude_id": amplitude_id,
            "start_day": asked["start_day"],
            "end_day": asked["end_day"],
        }
        self.audit.append({"time": now_text(), "event": "dsar-requesting", **line})
        shield = Shield()
        try:
            with shield.installed(), shield.holding():
                request_id = self.dsar.create(body)
                self.audit.append(
                    {
                        "time": now_text(),
                        "event": "dsar-requested",
                        **line,
                        "request_id": request_id,
                    }
                )
        except Exception as exc:
            self.audit.append(
                {"time": now_text(), "event": "dsar-not-requested", **line, "error": str(exc)}
            )
            raise
        return request_id

    def _check(self, package: Package) -> None:
        """Read each request's status; download the outputs of those that are done."""
        assert self.dsar is not None  # noqa: S101
        manifest = package.manifest
        for request in manifest.get("dsar_requests", []):
            if request.get("status") in {"done", "failed", "expired"}:
                continue
            status = self.dsar.status(int(request["request_id"]))
            request["status"] = status["status"] or "unknown"
            request["expires"] = status.get("expires")
            what = f"events of Amplitude id {request['amplitude_id']}"
            if request["status"] == "failed":
                reason = status.get("failReason") or "no reason given"
                package.exclude(
                    what,
                    f"DSAR request {request['request_id']} failed ({reason}); run again with "
                    "--new-request to ask again",
                )
                self._log(request, "dsar-failed", reason=reason)
            elif request["status"] == "done":
                self._download(package, request, status["urls"], what)
        requests_ = manifest.get("dsar_requests", [])
        if all(r.get("status") in {"done", "failed", "expired"} for r in requests_):
            manifest["status"] = "complete"
            manifest["completed_at"] = now_text()
            self.audit.append(
                {
                    "time": now_text(),
                    "event": "access-package-complete",
                    "project": self.audit.project,
                    "query": manifest["asked"]["id"],
                    "files": len(manifest.get("files", [])),
                    "not_included": [e["what"] for e in manifest.get("not_included", [])],
                }
            )

    def _download(
        self, package: Package, request: dict[str, t.Any], urls: list[str], what: str
    ) -> None:
        """Save every output of a done request, checked; expired outputs are excluded."""
        assert self.dsar is not None  # noqa: S101
        request["outputs"] = len(urls)
        private_dir(package.folder / "events")
        saved: list[Download] = []
        try:
            for index, url in enumerate(urls):
                name = f"events/dsar-{request['request_id']}-{index}.json.gz"
                saved.append(self.dsar.download(url, package.folder / name))
                got = saved[-1]
                package.record(
                    name, got.rows, got.sha256, got.size, f"{what} (DSAR output {index})"
                )
        except OutputsExpiredError:
            request["status"] = "expired"
            package.exclude(
                what,
                f"the outputs of DSAR request {request['request_id']} expired on "
                f"{request.get('expires')} before they were downloaded; run again with "
                "--new-request to ask again",
            )
            self._log(request, "dsar-expired")
            return
        if not urls:
            package.exclude(what, f"DSAR request {request['request_id']} returned no events")
        self._log(request, "dsar-downloaded", outputs=len(urls), rows=sum(s.rows for s in saved))

    def _log(self, request: dict[str, t.Any], event: str, **extra: t.Any) -> None:
        self.audit.append(
            {
                "time": now_text(),
                "event": event,
                "project": self.audit.project,
                "amplitude_id": request["amplitude_id"],
                "request_id": request["request_id"],
                **extra,
            }
        )

    # -- events from the User Activity API ---------------------------------------------

    def _events_from_activity(self, package: Package) -> None:
        """Every event of each Amplitude id, paged from User Activity, as gzip JSON lines."""
        manifest = package.manifest
        asked = manifest["asked"]
        for amplitude_id in manifest.get("amplitude_ids", []):
            lines = [
                json.dumps(event, ensure_ascii=False).encode("utf-8")
                for event in self._activity_events(amplitude_id)
                if asked["start_day"] <= str(event.get("event_time") or "")[:10] <= asked["end_day"]
            ]
            data = gzip_lines(lines)
            package.add_file(
                f"events/activity-{amplitude_id}.json.gz",
                data,
                len(lines),
                f"events of Amplitude id {amplitude_id} (User Activity API)",
            )
        package.exclude(
            "events from the DSAR API",
            "--events-from-activity: events come from the User Activity API (1,000 per "
            "request, 360 requests per hour shared with user search, the user's stream as "
            "Amplitude shows it); use the DSAR API for a complete, official copy",
        )
        manifest["status"] = "complete"
        manifest["completed_at"] = now_text()

    def _activity_events(self, amplitude_id: int) -> t.Iterator[dict[str, t.Any]]:
        offset = 0
        while True:
            page = self.identities.activity_page(amplitude_id, offset, ACTIVITY_PAGE)
            yield from page
            if len(page) < ACTIVITY_PAGE:
                return
            offset += len(page)


@contextlib.contextmanager
def _package_writes(out: Path) -> Iterator[None]:
    """A package file that cannot be written (disk full, permissions) ends the run in one line.

    What was written is kept, and the DSAR requests made are in the audit log, so running
    the same command again resumes.
    """
    try:
        yield
    except requests.RequestException:
        raise  # an OSError too, but a network failure: reported as one
    except OSError as exc:
        where = exc.filename or out
        raise CliError(
            f"cannot write the access package in {where} ({exc.strerror or exc}); free some "
            "space or fix --out, then run the same command again to resume: nothing is "
            "requested twice"
        ) from exc


def gzip_lines(lines: list[bytes]) -> bytes:
    """JSON lines as one gzip member (no timestamp, so equal content gives equal bytes)."""
    import gzip  # noqa: PLC0415 - only for --events-from-activity

    return gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)


def folder_name(term: str) -> str:
    """A folder name for a person: the id itself when safe, else a cleaned id and a hash."""
    safe = _UNSAFE.sub("_", term)[:80].lstrip(".") or "id"
    if safe == term:
        return safe
    return f"{safe}-{hashlib.sha256(term.encode()).hexdigest()[:8]}"


def _read_manifest(path: Path) -> dict[str, t.Any] | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: [[[[… nested too deep
        return None
    return payload if isinstance(payload, dict) else None


def _waiting(path: Path) -> t.Callable[[], None]:
    def waiting() -> None:
        note(f"another {'amplitude-privacy'} run holds {path}; waiting for it...")

    return waiting
