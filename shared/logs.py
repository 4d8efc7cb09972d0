"""Structured logging: one JSON object a line, with the study UID and correlation id; readable lines
on a terminal.

``bind_study(...)`` sets the study context for the current task or thread; every log line written
inside it carries ``study_uid`` and ``correlation_id``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone

_study_uid: ContextVar[str | None] = ContextVar("study_uid", default=None)
_correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


@contextmanager
def bind_study(study_uid: str | None, correlation_id: str | None) -> Iterator[None]:
    """Attach a study and its correlation id to every log line written in this block."""
    study_token = _study_uid.set(study_uid)
    correlation_token = _correlation_id.set(correlation_id)
    try:
        yield
    finally:
        _study_uid.reset(study_token)
        _correlation_id.reset(correlation_token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "study_uid": getattr(record, "study_uid", None) or _study_uid.get(),
            "correlation_id": getattr(record, "correlation_id", None) or _correlation_id.get(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Human-readable lines that still show the study context."""

    def format(self, record: logging.LogRecord) -> str:
        study = _study_uid.get()
        context = f" [study={study} corr={_correlation_id.get()}]" if study else ""
        text = f"{self.formatTime(record)} {record.levelname:<7} {record.name}{context}: "
        text += record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to the ``sys.stderr`` of the moment, not the one at configuration time:
    a CLI runner or test harness that swaps stderr and closes its stream must not break logging."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


class StudyContextFilter(logging.Filter):
    """Adds the study context to the message of readable lines (JSON lines carry it as fields)."""

    def filter(self, record: logging.LogRecord) -> bool:
        study = getattr(record, "study_uid", None) or _study_uid.get()
        if study and not getattr(record, "_mdd_context", False):
            correlation = getattr(record, "correlation_id", None) or _correlation_id.get()
            record.msg = f"{record.getMessage()} [study={study} corr={correlation}]"
            record.args = None
            record._mdd_context = True
        return True


def _terminal_handler() -> logging.Handler:
    """Coloured, aligned lines for a person at a terminal (rich)."""
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False,
                          log_time_format="%H:%M:%S")
    handler.addFilter(StudyContextFilter())
    return handler


def configure_logging(level: str = "INFO", json_lines: bool | None = True) -> None:
    """Send every logger's output to stderr in the chosen format (idempotent).

    ``json_lines=None`` chooses: readable lines when stderr is a terminal, JSON lines otherwise
    (a file, a pipe, a log collector).
    """
    if json_lines is None and sys.stderr.isatty():
        handler: logging.Handler = _terminal_handler()
    else:
        handler = StderrHandler()
        handler.setFormatter(JsonFormatter() if json_lines is not False else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pynetdicom", "uvicorn.access", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
