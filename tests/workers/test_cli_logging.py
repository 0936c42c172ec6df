"""One logging set-up for every command: a non-worker command (``codebus breaker
status``) logs, and reports its one-line error, in the format CODEBUS_LOG_FORMAT asks
for - JSON lines for log pipelines, text for people - with secrets masked."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

from tests.workers.test_cli import run
from workers import logs
from workers.cli_support import EXIT_SERVICE
from workers.logs import configure_cli, env_setting

REDIS_DOWN = {"CODEBUS_REDIS_URL": "redis://:secret@127.0.0.1:1/0"}


def test_json_mode_logs_and_reports_errors_as_json_lines():
    env = {**REDIS_DOWN, "CODEBUS_LOG_FORMAT": "json", "CODEBUS_LOG_LEVEL": "DEBUG"}
    out = run("breaker", "status", env=env)
    assert out.returncode == EXIT_SERVICE
    lines = [json.loads(line) for line in out.stderr.strip().splitlines()]  # all JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    # A library's debug line from the command's event loop goes through the set-up too.
    assert any(line["logger"] == "asyncio" and line["level"] == "DEBUG" for line in lines)
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["logger"] == "codebus.cli" and error["exit_code"] == EXIT_SERVICE
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in error["message"]
    assert "secret" not in out.stderr and "Traceback" not in out.stderr


def test_json_mode_reports_a_misspelled_variable_as_a_warning_line():
    env = {**REDIS_DOWN, "CODEBUS_LOG_FORMAT": "json", "CODEBUS_CONCURENCY": "4"}
    out = run("breaker", "status", env=env)
    lines = [json.loads(line) for line in out.stderr.strip().splitlines()]
    (warning,) = [line for line in lines if line["level"] == "WARNING"]
    assert warning["logger"] == "codebus.cli"
    assert "CODEBUS_CONCURENCY is not a codebus variable" in warning["message"]
    assert "CODEBUS_CONCURRENCY" in warning["message"]


def test_text_mode_keeps_the_one_error_line_and_formats_log_lines():
    env = {**REDIS_DOWN, "CODEBUS_LOG_LEVEL": "DEBUG"}
    out = run("breaker", "status", env=env)
    assert out.returncode == EXIT_SERVICE
    lines = out.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("Error: cannot reach Redis")]
    debug = [line for line in lines if " DEBUG   asyncio: " in line]
    assert debug, out.stderr
    assert "secret" not in out.stderr


def test_invalid_log_settings_fall_back_and_the_command_names_the_variable():
    assert env_setting({"CODEBUS_LOG_FORMAT": "xml", "CODEBUS_LOG_LEVEL": "LOUD"}) == (
        "INFO",
        "text",
    )
    assert env_setting({}, "WARNING") == ("WARNING", "text")
    out = run("breaker", "status", env={"CODEBUS_LOG_FORMAT": "xml"})
    assert out.returncode == 3
    assert out.stderr.strip().splitlines()[-1].startswith("Error: invalid configuration")
    assert "CODEBUS_LOG_FORMAT" in out.stderr


def test_the_handler_follows_a_swapped_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setitem(logs._state, "format", logs.current_format())
    try:
        configure_cli({"CODEBUS_LOG_FORMAT": "json", "CODEBUS_LOG_LEVEL": "WARNING"})
        assert logs.current_format() == "json"
        first, second = io.StringIO(), io.StringIO()
        monkeypatch.setattr(sys, "stderr", first)
        logging.getLogger("codebus.cli").warning("one")
        monkeypatch.setattr(sys, "stderr", second)
        logging.getLogger("codebus.cli").info("not at WARNING")
        logging.getLogger("codebus.cli").warning("two")
        assert json.loads(first.getvalue())["message"] == "one"
        assert json.loads(second.getvalue())["message"] == "two"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
