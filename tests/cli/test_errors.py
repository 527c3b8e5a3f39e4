"""What the ``trackgate`` command says when it cannot run: one line that names what to do, never a
traceback (missing settings, servers that cannot be reached, a database never migrated, bad options)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import make_conninfo

from trackgate.cli import main

UNREACHABLE_DB = "postgresql://127.0.0.1:1/x"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/3"


@pytest.fixture
def env(monkeypatch) -> Iterator[pytest.MonkeyPatch]:
    """No TRACKGATE_* from the machine: each test sets what it means to."""
    for name in list(os.environ):
        if name.startswith("TRACKGATE_") and not name.startswith("TRACKGATE_TEST_"):
            monkeypatch.delenv(name)
    yield monkeypatch


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_error_line(result: Result) -> str:
    """The output is exactly one ``Error: ...`` line (no usage block, no traceback)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("command", ["serve", "up"])
def test_a_first_party_prefix_that_hides_served_paths_is_one_line(env, command):
    env.setenv("TRACKGATE_DATABASE_URL", UNREACHABLE_DB)
    env.setenv("TRACKGATE_REDIS_URL", "redis://127.0.0.1:1/0")
    env.setenv("TRACKGATE_FIRST_PARTY_PREFIX", "/v1")
    result = invoke(command)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "TRACKGATE_FIRST_PARTY_PREFIX=/v1 would hide /v1/" in line and "e.g. /t" in line


@pytest.mark.parametrize(
    "args",
    [
        ("sources", "list"),
        ("sources", "add", "segment", "--name", "web"),
        ("events", "list"),
        ("events", "show", "0190b7a4-0000-7000-8000-000000000000"),
        ("admin", "create-key"),
        ("migrate",),
        ("profiles", "show", "u1"),
        ("quarantine", "list"),
        ("destinations", "status"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_a_missing_database_url_is_one_line_naming_the_variable(env, args):
    result = invoke(*args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "set TRACKGATE_DATABASE_URL" in line and "trackgate up" in line


def test_a_missing_redis_url_names_that_variable(env):
    env.setenv("TRACKGATE_DATABASE_URL", UNREACHABLE_DB)
    result = invoke("worker", "--burst")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "TRACKGATE_REDIS_URL" in line and "TRACKGATE_DATABASE_URL" not in line


def test_events_tail_needs_redis_and_says_so_in_one_line(env):
    result = invoke("events", "tail")
    assert result.exit_code == 2
    assert "set TRACKGATE_REDIS_URL" in one_error_line(result)
    env.setenv("TRACKGATE_REDIS_URL", UNREACHABLE_REDIS)
    unreachable = invoke("events", "tail")
    assert unreachable.exit_code == 1
    assert one_error_line(unreachable).startswith("Error: cannot connect to Redis:")


def test_commands_that_feed_the_pipeline_name_both_missing_urls(env):
    result = invoke("replay", "dead-letters")
    assert result.exit_code == 2
    assert "set TRACKGATE_DATABASE_URL and TRACKGATE_REDIS_URL" in one_error_line(result)


def test_a_bad_setting_is_a_usage_error_naming_it(env):
    env.setenv("TRACKGATE_PORT", "eighty")
    result = invoke("serve")
    assert result.exit_code == 2
    assert "TRACKGATE_PORT='eighty': expected int" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("sources", "list"),
        ("events", "list"),
        ("migrate",),
        ("profiles", "show", "u1"),
        ("quarantine", "list"),
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_an_unreachable_database_is_one_line_saying_what_to_do(env, args):
    env.setenv("TRACKGATE_DATABASE_URL", UNREACHABLE_DB)
    result = invoke(*args)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("Error: cannot connect to PostgreSQL:")
    assert "port 1 failed: Connection refused" in line and "TRACKGATE_DATABASE_URL" in line


def test_an_unreachable_database_from_a_real_process_prints_no_traceback(env):
    """``python -m trackgate`` as a user runs it: stderr is the one line, stdout is empty."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKGATE_")}
    child_env["TRACKGATE_DATABASE_URL"] = UNREACHABLE_DB
    done = subprocess.run(
        [sys.executable, "-m", "trackgate", "events", "list"],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        'Error: cannot connect to PostgreSQL: connection to server at "127.0.0.1", port 1 failed:'
        " Connection refused. Start it, or point TRACKGATE_DATABASE_URL at one that runs"
    ]


def test_an_unreachable_redis_is_one_line(env, database_url):
    env.setenv("TRACKGATE_DATABASE_URL", database_url)
    env.setenv("TRACKGATE_REDIS_URL", UNREACHABLE_REDIS)
    result = invoke("worker", "--burst")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith("Error: cannot connect to Redis:") and "TRACKGATE_REDIS_URL" in line


@pytest.fixture
def empty_database(servers) -> Iterator[str]:
    """A database on the test server with no trackgate tables."""
    admin_url = servers[0]
    name = f"trackgate_empty_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_conninfo(admin_url, dbname=name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_never_migrated_says_run_migrate(env, empty_database):
    env.setenv("TRACKGATE_DATABASE_URL", empty_database)
    result = invoke("events", "list")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "no trackgate tables" in line and line.endswith("run `trackgate migrate`")
    assert invoke("migrate").exit_code == 0
    assert invoke("events", "list").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("events", "list", "--limit", "0"), "0 is not in the range 1<=x<=1000000"),
        (("events", "list", "--limit", "99999999999999999999"), "is not in the range 1<=x<=1000000"),
        (("quarantine", "list", "--limit", "-5"), "-5 is not in the range 1<=x<=1000000"),
        (("serve", "--port", "70000"), "70000 is not in the range 0<=x<=65535"),
        (("replay", "dead-letters", "--since", "yesterday"), "an ISO time or an age like 30m"),
        (("events", "list", "--limit", "abc"), "'abc' is not a valid integer"),
        (("reports", "aggregate", "--date", "nonsense"), "'nonsense' is not a date"),
        (("admin", "create-key", "--role", "god"), "'god' is not one of 'admin', 'user'"),
        (("sources", "nosuch"), "No such command 'nosuch'"),
        (("events", "list", "--since", "99999999999999999999d"), "too far back"),
        (("replay", "dead-letters", "--since", "3000000d"), "too far back"),
    ],
    ids=[
        "events-limit",
        "events-limit-too-large",
        "quarantine-limit",
        "serve-port",
        "replay-since",
        "events-limit-text",
        "reports-date",
        "admin-role",
        "no-such-command",
        "events-since-overflow",
        "replay-since-before-year-1",
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it(env, args, message):
    env.setenv("TRACKGATE_DATABASE_URL", UNREACHABLE_DB)
    env.setenv("TRACKGATE_REDIS_URL", UNREACHABLE_REDIS)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result)  # not click's usage block: one line, and where to read more
    assert message in line and line.endswith("--help`)"), line


def test_up_on_a_port_in_use_is_one_line_before_anything_starts(env, tmp_path):
    env.setenv("TRACKGATE_DATABASE_URL", UNREACHABLE_DB)  # never reached: the port is checked first
    env.setenv("TRACKGATE_REDIS_URL", UNREACHABLE_REDIS)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("up", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 1
    assert one_error_line(result) == (
        f"Error: 127.0.0.1:{port} is in use (Address already in use); pick another with --port or"
        " TRACKGATE_PORT"
    )
    assert not (tmp_path / "data").exists()
