"""configure_logging: JSON lines off a terminal, console on one, level filtering."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from fedzero.core import configure_logging


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    log = structlog.get_logger("t").bind(run_id=7)
    log.debug("hidden")
    log.info("round_completed", round=3, replies=12)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["event"] == "round_completed"
    assert event["run_id"] == 7
    assert event["level"] == "info"
    assert "timestamp" in event


def test_console_format_and_env_level(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setenv("FEDZERO_LOG_LEVEL", "debug")
    configure_logging(fmt="console", stream=out)
    structlog.get_logger("t").debug("visible", k=1)
    assert "visible" in out.getvalue()
    assert "k=1" in out.getvalue()


def test_bad_level_is_named() -> None:
    with pytest.raises(ValueError, match="log level 'loud' is invalid"):
        configure_logging("loud", stream=io.StringIO())
