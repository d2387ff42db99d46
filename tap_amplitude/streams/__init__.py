"""Stream classes, grouped by API family; the tap offers every class listed here."""

from __future__ import annotations

from tap_amplitude.streams.dashboard import (
    ActiveUsersStream,
    AnnotationsStream,
    AverageSessionLengthStream,
    CohortsStream,
    EventTypesStream,
)
from tap_amplitude.streams.export_events import ExportEventsStream
from tap_amplitude.streams.privacy import DeletionJobsStream, UserProfilesStream
from tap_amplitude.streams.users import UserActivityStream, UserSearchStream

STREAM_TYPES = (
    ExportEventsStream,
    EventTypesStream,
    UserSearchStream,
    UserActivityStream,
    UserProfilesStream,
    DeletionJobsStream,
    CohortsStream,
    AnnotationsStream,
    ActiveUsersStream,
    AverageSessionLengthStream,
)

__all__ = ["STREAM_TYPES"]
