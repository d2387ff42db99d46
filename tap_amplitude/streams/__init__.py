"""Stream classes, grouped by API family; the tap offers every class listed here."""

from __future__ import annotations

from tap_amplitude.streams.annotations import AnnotationCategoriesStream
from tap_amplitude.streams.charts import ChartResultsStream
from tap_amplitude.streams.cohort_members import CohortMembersStream
from tap_amplitude.streams.dashboard import (
    ActiveUsersStream,
    AnnotationsStream,
    AverageSessionLengthStream,
    CohortsStream,
    EventTypesStream,
)
from tap_amplitude.streams.export_events import ExportEventsStream
from tap_amplitude.streams.merged_ids import MergedIdsStream
from tap_amplitude.streams.privacy import DeletionJobsStream, UserProfilesStream
from tap_amplitude.streams.taxonomy import (
    EventCategoriesStream,
    EventPropertiesStream,
    GroupPropertiesStream,
    UserPropertiesStream,
)
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
    MergedIdsStream,
    EventCategoriesStream,
    EventPropertiesStream,
    UserPropertiesStream,
    GroupPropertiesStream,
    CohortMembersStream,
    AnnotationCategoriesStream,
    ChartResultsStream,
)

__all__ = ["STREAM_TYPES"]
