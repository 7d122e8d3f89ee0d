"""The traffic-log spec's records and their files. Nothing else parses the format."""

from stillwatch.events.io import (
    RecordError,
    RecordWriter,
    read_events_in_order,
    read_records,
    write_records,
)
from stillwatch.events.records import (
    ACTIONS,
    RECORD_TYPES,
    Account,
    Campaign,
    ErrorInfo,
    Label,
    RequestEvent,
    Response,
    Usage,
    Verdict,
)
from stillwatch.events.timefmt import format_ts, parse_ts

__all__ = [
    "ACTIONS",
    "RECORD_TYPES",
    "Account",
    "Campaign",
    "ErrorInfo",
    "Label",
    "RecordError",
    "RecordWriter",
    "RequestEvent",
    "Response",
    "Usage",
    "Verdict",
    "format_ts",
    "parse_ts",
    "read_events_in_order",
    "read_records",
    "write_records",
]
