"""``TRACKGATE_LOG_FORMAT``: text lines, or one JSON object a line; bad values are refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trackgate.schemas.settings import settings_from_env

SCRIPT = """
import logging, sys
from trackgate.schemas.settings import configure_logging
configure_logging("INFO", sys.argv[1])
log = logging.getLogger("trackgate.workers.jobs")
log.info("batch_stored batch_id=%s n_events=%d", "b1", 3)
log.debug("not shown")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("job_failed batch_id=%s", "b1")
logging.getLogger("uvicorn.error").info("Started server process [%d]", 7, extra={"color_message": "x"})
"""


def run(log_format: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, log_format], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr.splitlines()


def test_json_is_one_object_a_line_with_the_event_name():
    lines = run("json")
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) == 3
    first, failed, uvicorn = records
    assert first["message"] == "batch_stored batch_id=b1 n_events=3"
    assert (first["event"], first["level"], first["logger"]) == (
        "batch_stored",
        "INFO",
        "trackgate.workers.jobs",
    )
    assert first["time"].endswith("+00:00")
    assert failed["event"] == "job_failed" and "ZeroDivisionError" in failed["exc_info"]
    assert uvicorn["message"] == "Started server process [7]" and "event" not in uvicorn
    assert "color_message" not in uvicorn


def test_text_is_one_line_a_record_but_for_tracebacks():
    lines = run("text")
    assert lines[0].endswith("INFO trackgate.workers.jobs batch_stored batch_id=b1 n_events=3")
    assert any("ZeroDivisionError" in line for line in lines)
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRACKGATE_LOG_FORMAT", "xml"),
        ("TRACKGATE_METRICS", "yes"),
        ("TRACKGATE_WORKER_METRICS_PORT", "70000"),
    ],
)
def test_bad_values_are_refused(variable, value):
    with pytest.raises(ValueError, match=variable):
        settings_from_env({variable: value})
