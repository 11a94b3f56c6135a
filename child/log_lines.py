"""Log lines of every process, as text for people or as JSON for log shippers.

The master, its children and the simulator all write to one stderr. With ``log_format = "json"``
each line is one JSON object, so that a shipper (Vector, Loki, Elasticsearch) can index it
without parsing text: when, how bad, which process (``role`` and ``id``), which logger, which
shard, the message, the traceback, and whatever a caller passed with ``extra=`` (``fields``).
Every process sets its logging up here, so the lines of all of them have the same shape.

Formatting a record never raises: a failing formatter makes ``logging`` print its own
multi-line report to stderr, which is not JSON.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The master's and the simulator's text lines never named their process; the others' did.
UNLABELLED_ROLES = frozenset({"master", "simulator"})
LABELLED_TEXT_FORMAT = "%(asctime)s %(levelname)s {label} %(name)s: %(message)s"
# hikari logs each shard under its own logger: "hikari.gateway.3".
HIKARI_SHARD_LOGGER = re.compile(r"hikari\.gateway\.(\d+)")
# Attributes every record has; any other one came from a caller's ``extra=``. ``message`` and
# ``asctime`` are set on the record by text formatters.
RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def configure(level: str, log_format: str, role: str, id: int | None = None) -> None:
    """Send this process's log records at ``level`` and above to stderr, as ``log_format``
    ("text" or "json") lines naming the process: ``role`` ("master", "worker", "standby",
    "compute", "rest-gate", "simulator") and its ``id`` among those of its role, if it has one."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(role, id))
    elif role in UNLABELLED_ROLES:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    else:
        label = role if id is None else f"{role}-{id}"
        handler.setFormatter(logging.Formatter(LABELLED_TEXT_FORMAT.format(label=label)))
    logging.basicConfig(level=level, handlers=[handler])


def role_and_id(label: str) -> tuple[str, int | None]:
    """A child's label taken apart: ("worker", 0) for "worker-0", ("rest-gate", None) for
    "rest-gate"."""
    role, _, number = label.rpartition("-")
    return (role, int(number)) if role and number.isdecimal() else (label, None)


class JsonFormatter(logging.Formatter):
    """Each record as one line of JSON, naming the process that wrote it."""

    def __init__(self, role: str, id: int | None) -> None:
        super().__init__()
        self.role = role
        self.id = id

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": utc_time(record),
            "level": record.levelname,
            "role": self.role,
            "id": self.id,
            "logger": record.name,
        }
        shard = getattr(record, "shard", None)
        shard_from_extra = isinstance(shard, int) and not isinstance(shard, bool)
        if not shard_from_extra:
            shard = hikari_shard(record.name)
        if shard is not None:
            line["shard"] = shard
        line["message"] = message_of(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)  # cached, as Formatter does
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        fields = {
            name: json_value(value)
            for name, value in vars(record).items()
            if name not in RECORD_ATTRIBUTES and not (name == "shard" and shard_from_extra)
        }
        if fields:
            line["fields"] = fields
        # Non-ASCII as it is; newlines inside strings are escaped, so the line stays one line.
        return json.dumps(line, ensure_ascii=False, default=safe_repr)


def utc_time(record: logging.LogRecord) -> str:
    """When the record was made: ISO 8601 in UTC, to the millisecond."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def hikari_shard(logger_name: str) -> int | None:
    """The shard of a hikari shard's logger name, None for any other logger."""
    match = HIKARI_SHARD_LOGGER.fullmatch(logger_name)
    return int(match[1]) if match else None


def message_of(record: logging.LogRecord) -> str:
    """The record's message; if its arguments do not fit it, the message and its arguments."""
    try:
        return record.getMessage()
    except Exception:
        return f"{safe_repr(record.msg)} % {safe_repr(record.args)}"


def json_value(value: object) -> object:
    """``value`` if it is valid JSON as it is (no NaN), else its repr."""
    try:
        json.dumps(value, allow_nan=False)
    except Exception:
        return safe_repr(value)
    return value


def safe_repr(value: object) -> str:
    """``repr(value)``, or the plain ``<type object at address>`` if that raises."""
    try:
        return repr(value)
    except Exception:
        return object.__repr__(value)
