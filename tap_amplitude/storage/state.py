"""What a stream has read from the bucket, kept small: a bookmark hour and a map of objects.

The stream's state (``bookmarks.<stream>``) keeps the Export API's two keys and adds one::

    {"replication_key": "server_upload_time",
     "replication_key_value": "2024-03-05T12:00:00.000000Z",
     "storage": {"read": {"2024-03-05T11": {"187520/187520_2024-03-05_11#0.json.gz":
                                            "48213:9b2cf535f27731c974343645a3985328"}}}}

- ``replication_key_value`` (the bookmark): every upload hour before it is *closed* (its
  ``complete`` marker exists in every folder read, or :data:`CLOSE_GRACE` has passed since the
  hour ended) and every object of it has been read. It is what the Export API's state holds, so
  a project can switch sources either way.
- ``storage.read``: for each upload hour from :data:`TRAILING` before the bookmark on, the
  objects read, as ``size:ETag`` (or generation, or mtime). Each run lists these hours again:
  an object with a new key is read, one whose identity changed (a backfill rewrote it) is read
  again, the rest are skipped. Hours older than the window are dropped, so the map holds about
  ``TRAILING`` + open hours times parts per hour, however long the export has run.
"""

from __future__ import annotations

import typing as t
from datetime import timedelta

from tap_amplitude.storage.layout import HOUR, hour_key, parse_hour_key
from tap_amplitude.timestamps import format_datetime, parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import MutableMapping
    from datetime import datetime

    from tap_amplitude.storage.source import Entry

STATE_KEY = "storage"
CLOSE_GRACE = timedelta(hours=24)  # an hour without a complete marker closes this long after
TRAILING = timedelta(hours=48)  # hours below the bookmark listed again, for rewrites


class ReadState:
    """The ``storage`` part of one stream's state, edited in place as objects are read.

    The map lives in the stream's state dict itself (hours as ``YYYY-MM-DDTHH``, which sort
    as text), so recording an object costs one dict write, not a copy of the map.
    """

    def __init__(self, state: MutableMapping[str, t.Any], start: datetime) -> None:
        """Read the bookmark and the map; ``start`` (``start_date``) wins if it is later.

        Raises:
            ValueError: the state's ``storage`` value is not this module's shape.
        """
        self.state = state
        bookmark = state.get("replication_key_value")
        self.bookmark = max(start, parse_datetime(bookmark)) if bookmark else start
        storage = state.get(STATE_KEY) or {}
        read = storage.get("read", {}) if isinstance(storage, dict) else None
        if not isinstance(read, dict) or not all(isinstance(v, dict) for v in read.values()):
            msg = "its 'storage' value is not {'read': {hour: {key: identity}}}"
            raise ValueError(msg)
        for hour in read:
            parse_hour_key(hour)  # raises ValueError for anything but YYYY-MM-DDTHH
        first = hour_key(start)
        self.read: dict[str, dict[str, str]] = {
            hour: dict(read[hour]) for hour in sorted(read) if hour >= first
        }
        state[STATE_KEY] = {"read": self.read}

    def first_hour(self) -> datetime:
        """Where this run starts listing: the bookmark, or the oldest hour in the map."""
        return min([self.bookmark, *(parse_hour_key(hour) for hour in self.read)])

    def is_new(self, hour: datetime, entry: Entry) -> bool:
        """Whether ``entry`` was never read, or was rewritten since it was read."""
        return self.read.get(hour_key(hour), {}).get(entry.key) != entry.identity

    def was_read(self, hour: datetime, entry: Entry) -> bool:
        """Whether an object with this key (of any identity) was read before."""
        return entry.key in self.read.get(hour_key(hour), {})

    def mark_read(self, hour: datetime, entry: Entry) -> None:
        """Record one object as read (in the stream's state)."""
        self.read.setdefault(hour_key(hour), {})[entry.key] = entry.identity

    def forget_missing(self, hour: datetime, listed: set[str]) -> None:
        """Drop objects no longer listed for an hour (a backfill deleted them)."""
        key = hour_key(hour)
        objects = self.read.get(key)
        if objects is not None:
            for name in set(objects) - listed:
                del objects[name]
            if not objects:
                del self.read[key]

    def settle(self, hour: datetime, *, closed: bool) -> None:
        """``hour`` (the bookmark hour) is fully read: move the bookmark past it if closed."""
        if closed and hour == self.bookmark:
            self.bookmark = hour + HOUR
            oldest = hour_key(self.bookmark - TRAILING)
            for old in [key for key in self.read if key < oldest]:
                del self.read[old]

    def save(self) -> None:
        """Put the map back into the stream's state (if something replaced it)."""
        self.state[STATE_KEY] = {"read": self.read}

    @property
    def bookmark_text(self) -> str:
        """The bookmark as STATE writes it."""
        return format_datetime(self.bookmark)
