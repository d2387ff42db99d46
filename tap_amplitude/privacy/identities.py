"""Other ids of a person: mapped users (§15.2) and merged Amplitude ids (§15.3).

Both lookups go through :meth:`~tap_amplitude.client.AmplitudeStream.send`, so they share
the project's limits (User Activity draws on the 360-per-hour user lookup budget) and the
SDK's retries. The user-mapping answer is read leniently (docs/amplitude-api.md §15.2):

* with or without a ``mappings`` wrapper (the doc's table vs its example);
* an unknown user as ``{}``, ``null``, a missing key or empty lists;
* entries as ``{"user_id", "amplitude_id"}`` objects or bare user-id strings.

``user_ids`` is sent as the doc's example does: a form body on a GET, one ``user_ids=`` per id.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from tap_amplitude.client import AmplitudeStream

if t.TYPE_CHECKING:
    from collections.abc import Iterable


USERMAP_PATH = "/api/2/usermap"
ACTIVITY_PATH = "/api/2/useractivity"
MAX_USERMAP_IDS = 100


@dataclass(frozen=True)
class MappedUser:
    """A user mapped to or from another, and which way."""

    user_id: str
    amplitude_id: int | None
    direction: str  # "mapped_from": it maps into the asked user; "mapped_to": the reverse
    of: str  # the user id it was found for

    def reason(self) -> str:
        """Why the id belongs to the same person, in words."""
        if self.direction == "mapped_from":
            return f"user mapping: {self.user_id} is mapped into {self.of}"
        return f"user mapping: {self.of} is mapped into {self.user_id}"

    def as_json(self) -> dict[str, t.Any]:
        """The entry for the manifest or a dry run."""
        return {
            "user_id": self.user_id,
            "amplitude_id": self.amplitude_id,
            "direction": self.direction,
            "of": self.of,
        }


@dataclass
class Activity:
    """What User Activity's ``userData`` says about an Amplitude id."""

    amplitude_id: int
    canonical_amplitude_id: int | None = None
    merged_amplitude_ids: list[int] = field(default_factory=list)
    first_used: str | None = None
    user_id: str | None = None


class Identities(AmplitudeStream):
    """Looks up mapped users and merged Amplitude ids (not a tap stream: no records)."""

    name = "identities"
    path = USERMAP_PATH
    schema: t.ClassVar[dict[str, t.Any]] = {"type": "object", "properties": {}}

    def mapped_users(self, user_ids: Iterable[str]) -> list[MappedUser]:
        """Every user mapped into, or out of, each of ``user_ids`` (batches of 100)."""
        asked = list(dict.fromkeys(user_ids))
        found: list[MappedUser] = []
        for start in range(0, len(asked), MAX_USERMAP_IDS):
            batch = asked[start : start + MAX_USERMAP_IDS]
            prepared = self.build_prepared_request(
                method="GET",
                url=f"{self.url_base}{USERMAP_PATH}",
                headers=self.http_headers,
                data={"user_ids": batch},
            )
            response = self.send(prepared)
            found += parse_usermap(response.json(), batch)
        return list(dict.fromkeys(found))

    def activity(self, amplitude_id: int) -> Activity:
        """``userData`` of one Amplitude id (one User Activity request, one event)."""
        prepared = self.build_prepared_request(
            method="GET",
            url=f"{self.url_base}{ACTIVITY_PATH}",
            headers=self.http_headers,
            params={"user": amplitude_id, "limit": 1},
        )
        payload = self.send(prepared).json()
        data = payload.get("userData") if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            return Activity(amplitude_id)
        merged = [int(value) for value in data.get("merged_amplitude_ids") or [] if _is_int(value)]
        canonical = data.get("canonical_amplitude_id")
        return Activity(
            amplitude_id,
            int(canonical) if _is_int(canonical) else None,
            merged,
            str(data["first_used"])[:10] if data.get("first_used") else None,
            str(data["user_id"]) if data.get("user_id") else None,
        )

    def activity_page(self, amplitude_id: int, offset: int, limit: int) -> list[dict[str, t.Any]]:
        """One page of the user's events, newest first (``offset`` counts from the newest)."""
        prepared = self.build_prepared_request(
            method="GET",
            url=f"{self.url_base}{ACTIVITY_PATH}",
            headers=self.http_headers,
            params={"user": amplitude_id, "offset": offset, "limit": limit},
        )
        payload = self.send(prepared).json()
        events = payload.get("events") if isinstance(payload, dict) else None
        return [event for event in events or [] if isinstance(event, dict)]


def parse_usermap(payload: t.Any, asked: list[str]) -> list[MappedUser]:
    """The mapped users in a ``/api/2/usermap`` answer, whatever its variant."""
    wrapped = isinstance(payload, dict) and isinstance(payload.get("mappings"), dict)
    if wrapped and "mappings" not in asked:
        payload = payload["mappings"]
    if not isinstance(payload, dict):
        return []
    found: list[MappedUser] = []
    for user_id in asked:
        value = payload.get(user_id)
        if not isinstance(value, dict):
            continue
        for direction in ("mapped_from", "mapped_to"):
            entries = value.get(direction)
            for entry in entries if isinstance(entries, list) else []:
                other = _entry(entry)
                if other is not None and other[0] != user_id:
                    found.append(MappedUser(other[0], other[1], direction, user_id))
    return found


def _entry(entry: t.Any) -> tuple[str, int | None] | None:
    """``(user_id, amplitude_id)`` of one mapping entry."""
    if isinstance(entry, str) and entry:
        return entry, None
    if isinstance(entry, dict) and entry.get("user_id"):
        amplitude_id = entry.get("amplitude_id")
        return str(entry["user_id"]), int(amplitude_id) if _is_int(amplitude_id) else None
    return None


def _is_int(value: t.Any) -> t.TypeGuard[int | str]:
    """An integer, or a string of digits (never a bool)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.isdigit())
