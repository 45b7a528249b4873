"""One place that configures structlog for fedzero's daemons and CLIs."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["auto", "console", "json"]
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def parse_level(level: str | int) -> int:
    """Return the numeric level for ``"debug"``/``"info"``/... or an int level.

    Raises:
        ValueError: ``level`` names no level.
    """
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"log level {level!r} is invalid; use one of {', '.join(_LEVELS)}"
        ) from None


def configure_logging(
    level: str | int | None = None,
    fmt: LogFormat | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog once, in a daemon's or CLI's entry point.

    Renders colourful console lines when ``stream`` is a terminal and JSON lines
    otherwise (journald and log shippers read those), unless ``fmt`` says which.

    Args:
        level: minimum level; default ``$FEDZERO_LOG_LEVEL`` or ``"info"``.
        fmt: ``"console"``, ``"json"`` or ``"auto"``; default ``$FEDZERO_LOG_FORMAT``
            or ``"auto"``.
        stream: where to write; default standard output.
    """
    stream = stream or sys.stdout
    numeric = parse_level(
        level if level is not None else os.environ.get("FEDZERO_LOG_LEVEL", "info")
    )
    chosen = fmt or os.environ.get("FEDZERO_LOG_FORMAT", "auto")
    if chosen not in ("auto", "console", "json"):
        raise ValueError(f"log format {chosen!r} is invalid; use auto, console or json")
    as_json = chosen == "json" or (chosen == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if as_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
