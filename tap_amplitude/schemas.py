"""Stream schemas, with the fragments several streams share."""

from __future__ import annotations

import typing as t

from singer_sdk import typing as th

# Free-form property bags: kept whole, never stripped (additionalProperties stays true).
PROPERTY_BAG = th.ObjectType(additional_properties=True)

_STRING_OR_NUMBER_OR_BOOL = th.CustomType({"type": ["string", "number", "boolean", "null"]})

# The 55 keys every row of a real export carries (docs/amplitude-api.md §2.3).
EVENT_PROPERTIES = th.PropertiesList(
    th.Property("uuid", th.StringType, required=True, description="Unique id of the row."),
    th.Property("$insert_id", th.StringType, description="Client-side deduplication id."),
    th.Property("$insert_key", th.StringType),
    th.Property("$schema", th.CustomType({"type": ["integer", "string", "null"]})),
    th.Property("adid", th.StringType),
    th.Property(
        "amplitude_attribution_ids",
        th.CustomType({"type": ["array", "string", "null"]}),
    ),
    th.Property("amplitude_event_type", th.StringType),
    th.Property("amplitude_id", th.IntegerType, description="Amplitude's id for the user."),
    th.Property("app", th.IntegerType, description="Amplitude project id."),
    th.Property("city", th.StringType),
    th.Property("client_event_time", th.DateTimeType),
    th.Property("client_upload_time", th.DateTimeType),
    th.Property("country", th.StringType),
    th.Property("data", PROPERTY_BAG),
    th.Property("data_type", th.StringType),
    th.Property("device_brand", th.StringType),
    th.Property("device_carrier", th.StringType),
    th.Property("device_family", th.StringType),
    th.Property("device_id", th.StringType),
    th.Property("device_manufacturer", th.StringType),
    th.Property("device_model", th.StringType),
    th.Property("device_type", th.StringType),
    th.Property("dma", th.StringType),
    th.Property("event_id", th.IntegerType),
    th.Property("event_properties", PROPERTY_BAG),
    th.Property("event_time", th.DateTimeType),
    th.Property("event_type", th.StringType),
    th.Property("global_user_properties", PROPERTY_BAG),
    th.Property("group_properties", PROPERTY_BAG),
    th.Property("groups", PROPERTY_BAG),
    th.Property("idfa", th.StringType),
    th.Property("ip_address", th.StringType),
    th.Property("is_attribution_event", _STRING_OR_NUMBER_OR_BOOL),
    th.Property("language", th.StringType),
    th.Property("library", th.StringType),
    th.Property("location_lat", th.NumberType),
    th.Property("location_lng", th.NumberType),
    th.Property("os_name", th.StringType),
    th.Property("os_version", th.StringType),
    th.Property("partner_id", th.StringType),
    th.Property("paying", _STRING_OR_NUMBER_OR_BOOL),
    th.Property("plan", PROPERTY_BAG),
    th.Property("platform", th.StringType),
    th.Property("processed_time", th.DateTimeType),
    th.Property("region", th.StringType),
    th.Property("sample_rate", th.NumberType),
    th.Property("server_received_time", th.DateTimeType),
    th.Property(
        "server_upload_time",
        th.DateTimeType,
        description="When Amplitude stored the event; the Export API selects on this.",
    ),
    th.Property("session_id", th.IntegerType, description="Session start, ms since epoch."),
    th.Property("source_id", th.StringType),
    th.Property("start_version", th.StringType),
    th.Property("user_creation_time", th.DateTimeType),
    th.Property("user_id", th.StringType),
    th.Property("user_properties", PROPERTY_BAG),
    th.Property("version_name", th.StringType),
)

# Fields every Taxonomy API property item has: event, user and group properties (§10.4).
TAXONOMY_PROPERTY_FIELDS: tuple[th.Property[t.Any], ...] = (
    th.Property("description", th.StringType),
    th.Property("type", th.StringType, description="string, number, boolean, enum or any."),
    th.Property("regex", th.StringType, description="Pattern values must match."),
    th.Property(
        "enum_values",
        th.CustomType({"type": ["string", "array", "null"], "items": {"type": "string"}}),
        description="Allowed values: a comma-separated string (or a list) as Amplitude sends it.",
    ),
    th.Property("is_array_type", th.BooleanType),
    th.Property("is_hidden", th.BooleanType),
    th.Property(
        "classifications",
        th.ArrayType(th.StringType),
        description="PII, SENSITIVE or REVENUE (needs Data Access Controls).",
    ),
)

# An annotation category; Amplitude names it ``name`` or ``category`` (§12.2), the tap ``name``.
ANNOTATION_CATEGORY = th.ObjectType(
    th.Property("id", th.IntegerType),
    th.Property("name", th.StringType),
)
