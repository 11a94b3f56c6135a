"""``log_format = "json"``: every log line of every process is one JSON object (child/log_lines);
"text" stays the lines people read."""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import subprocess
import sys
from typing import Any

import pytest

from child.log_lines import JsonFormatter, role_and_id
from sharder.config import SimulatorSection
from sharder.simulated import SimulatorChild
from tests.sharder_run import PROJECT_ROOT, running_sharder, stop

REQUIRED = ("time", "level", "role", "id", "logger", "message")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def formatted(
    msg: object,
    *args: object,
    name: str = "tests.log_format",
    extra: dict[str, object] | None = None,
    exc_info: Any = None,
    stack: str | None = None,
) -> str:
    """A record as ``logger.info(msg, *args, extra=...)`` makes it, formatted as worker 3's."""
    logger = logging.getLogger(name)
    record = logger.makeRecord(
        name, logging.INFO, __file__, 1, msg, args, exc_info, extra=extra, sinfo=stack
    )
    return JsonFormatter("worker", 3).format(record)


def line_of(msg: object, *args: object, **keywords: Any) -> dict[str, Any]:
    text = formatted(msg, *args, **keywords)
    assert "\n" not in text and "\r" not in text
    line: dict[str, Any] = json.loads(text)
    return line


def test_a_line_has_the_fields_in_order() -> None:
    line = line_of("shard %d of %s", 2, "worker-3")
    assert list(line) == list(REQUIRED)
    assert TIME.fullmatch(line["time"])
    assert line["level"] == "INFO"
    assert (line["role"], line["id"]) == ("worker", 3)
    assert line["logger"] == "tests.log_format"
    assert line["message"] == "shard 2 of worker-3"


def test_the_time_is_utc_to_the_millisecond() -> None:
    record = logging.makeLogRecord({"name": "sharder", "msg": "x"})
    record.created, record.msecs = 1_796_247_763.889, 889.0
    line = json.loads(JsonFormatter("master", None).format(record))
    assert line["time"] == "2026-12-02T21:42:43.889Z"
    assert (line["role"], line["id"]) == ("master", None)


def test_the_shard_comes_from_extra() -> None:
    line = line_of("identified", extra={"shard": 5})
    assert line["shard"] == 5
    assert "fields" not in line
    assert line_of("identified", name="hikari.gateway.1", extra={"shard": 5})["shard"] == 5


def test_the_shard_comes_from_a_hikari_shard_logger() -> None:
    assert line_of("ready", name="hikari.gateway.7")["shard"] == 7
    for name in ("hikari.gateway", "hikari.gateway.7x", "hikari.bot", "worker"):
        assert "shard" not in line_of("ready", name=name)


def test_a_shard_in_extra_that_is_no_number_stays_a_field() -> None:
    for odd in ("five", True):
        line = line_of("odd", extra={"shard": odd})
        assert "shard" not in line
        assert line["fields"] == {"shard": odd}


def test_an_exception_is_its_traceback() -> None:
    try:
        raise ValueError("bad frame\nsecond line")
    except ValueError:
        line = line_of("decoding failed", exc_info=sys.exc_info())
    assert line["message"] == "decoding failed"
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith("ValueError: bad frame\nsecond line")


def test_a_stack_is_kept() -> None:
    stack = 'Stack (most recent call last):\n  File "x.py", line 1, in <module>'
    assert line_of("where am I", stack=stack)["stack"] == stack


def test_extra_values_are_fields_as_json_or_as_repr() -> None:
    circular: list[object] = []
    circular.append(circular)
    extra = {
        "guild": 42,
        "names": ["a", "é"],
        "nested": {"ok": None},
        "data": b"\x00bytes",
        "ratio": math.nan,
        "keyed": {(1, 2): "tuple key"},
        "circular": circular,
        "unprintable": Unprintable(),
    }
    fields = line_of("odd", extra=extra)["fields"]
    assert list(fields) == list(extra)
    assert fields["guild"] == 42
    assert fields["names"] == ["a", "é"]
    assert fields["nested"] == {"ok": None}
    assert fields["data"] == repr(b"\x00bytes")
    assert fields["ratio"] == "nan"
    assert fields["keyed"] == "{(1, 2): 'tuple key'}"
    assert fields["circular"] == "[[...]]"
    assert fields["unprintable"].startswith("<tests.test_log_format.Unprintable object at 0x")


def test_a_message_that_does_not_format_is_still_a_line() -> None:
    assert line_of("%d guilds", "many")["message"] == "'%d guilds' % ('many',)"
    unprintable = line_of(Unprintable())["message"]
    assert unprintable.startswith("<tests.test_log_format.Unprintable object at 0x")


def test_newlines_and_non_ascii_stay_on_one_line() -> None:
    message = "première ligne\nzweite Zeile 🎉\r\n"
    text = formatted(message, extra={"note": "a\nb"})
    assert "première" in text and "🎉" in text  # as they are, not escaped as \u00e8
    line = line_of(message, extra={"note": "a\nb"})
    assert line["message"] == message
    assert line["fields"] == {"note": "a\nb"}


@pytest.mark.parametrize(
    ("label", "role", "id"),
    [("worker-0", "worker", 0), ("compute-12", "compute", 12), ("rest-gate", "rest-gate", None)],
)
def test_a_child_label_is_its_role_and_id(label: str, role: str, id: int | None) -> None:
    assert role_and_id(label) == (role, id)


CONFIGURED = """
import logging, sys
from child import log_lines
log_format, role, id = sys.argv[1:]
log_lines.configure("INFO", log_format, role, None if id == "-" else int(id))
logging.getLogger("sharder.test").debug("not at INFO")
logging.getLogger("sharder.test").info("hello")
"""


def configured_line(log_format: str, role: str, id: str) -> str:
    """The stderr of a fresh process that set its logging up with ``configure`` and logged."""
    ran = subprocess.run(
        [sys.executable, "-c", CONFIGURED, log_format, role, id],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert ran.stdout == ""
    return ran.stderr


@pytest.mark.parametrize(
    ("role", "id", "label"),
    [("master", "-", ""), ("simulator", "-", ""), ("worker", "2", "worker-2 "),
     ("rest-gate", "-", "rest-gate ")],
)  # fmt: skip
def test_text_lines_are_as_they_were(role: str, id: str, label: str) -> None:
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(
        f"{stamp} INFO {label}sharder.test: hello\n", configured_line("text", role, id)
    )


def test_configure_json_writes_json_lines_at_the_level() -> None:
    line = json.loads(configured_line("json", "compute", "1"))
    assert (line["role"], line["id"], line["message"]) == ("compute", 1, "hello")


def log_from_compute(tasks: object) -> None:
    """A compute entry point that registers nothing and logs: a compute worker whose tasks go
    well has nothing of its own to say."""
    logging.getLogger("tests.log_format").info("loaded", extra={"shard": 1, "tasks": ["none"]})


async def test_every_line_of_a_json_sharder_is_json() -> None:
    async with running_sharder(
        shards=2,
        workers=2,
        guilds=8,
        top='log_format = "json"',
        compute='entry_point = "tests.test_log_format:log_from_compute"',
    ) as sharder:
        await sharder.wait_ready()
        stop(sharder)  # the lines of its shutdown too
        assert sharder.process.returncode == 0
        log = sharder.log()
    parsed = []
    for text in log.splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            pytest.fail(f"not a JSON line: {text!r}")
        assert isinstance(line, dict) and all(field in line for field in REQUIRED), text
        assert TIME.fullmatch(line["time"]), text
        parsed.append(line)
    assert {(line["role"], line["id"]) for line in parsed} >= {
        ("master", None), ("worker", 0), ("worker", 1), ("compute", 0), ("rest-gate", None)
    }  # fmt: skip
    assert any(line["logger"].startswith("hikari.gateway.") and "shard" in line for line in parsed)
    [compute] = [line for line in parsed if line["role"] == "compute"]
    assert (compute["shard"], compute["fields"]) == (1, {"tasks": ["none"]})


def test_the_simulator_logs_json_lines_when_told() -> None:
    simulator = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--port", "0", "--guilds", "2",
         "--log-level", "INFO", "--log-format", "json"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert simulator.stdout is not None
        while not simulator.stdout.readline().startswith("token:"):
            pass
        simulator.send_signal(signal.SIGINT)
        _, stderr = simulator.communicate(timeout=30)
    finally:
        simulator.kill()
        simulator.wait()
    lines = [json.loads(text) for text in stderr.splitlines()]
    assert lines and all((line["role"], line["id"]) == ("simulator", None) for line in lines)


def test_the_master_passes_its_log_format_to_the_simulator() -> None:
    flags = SimulatorChild(SimulatorSection(), 2, "json").flags
    assert flags[flags.index("--log-format") + 1] == "json"
