"""Structured JSON logs in pino's shape (mesh/logger.ts), so every language's lines read alike.

One line per event on stdout: ``level`` (pino's numbers), ``time`` (ms since the epoch), ``pid``,
``name``, the logger's bindings, the event's fields, then ``msg``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

#: pino's level numbers.
LEVELS: dict[str, int] = {"trace": 10, "debug": 20, "info": 30, "warn": 40, "error": 50, "fatal": 60}
#: Levels PROTOMESH_LOG_LEVEL accepts (as mesh/settings.ts LOG_LEVELS); "silent" logs nothing.
LEVEL_NAMES = ("silent", "fatal", "error", "warn", "info", "debug", "trace")
DEFAULT_LOG_LEVEL = "info"


class Logger:
    """A pino-shaped logger; ``child`` adds bindings. Lines are written and flushed synchronously."""

    def __init__(
        self,
        name: str | None = None,
        level: str = DEFAULT_LOG_LEVEL,
        stream: IO[str] | None = None,
        bindings: dict[str, Any] | None = None,
    ) -> None:
        if level not in LEVEL_NAMES:
            raise ValueError(f"log level must be one of {', '.join(LEVEL_NAMES)}, got {level!r}")
        self.name = name
        self.level = level
        self._threshold = LEVELS.get(level, 100)
        self._stream = stream
        self._bindings = dict(bindings or {})

    def child(self, **bindings: Any) -> Logger:
        """A logger whose lines carry ``bindings`` after this one's."""
        return Logger(self.name, self.level, self._stream, {**self._bindings, **bindings})

    def is_enabled(self, level: str) -> bool:
        """Whether a line at ``level`` would be written."""
        return LEVELS[level] >= self._threshold

    def log(self, level: str, msg: str, **fields: Any) -> None:
        """Writes one line at ``level`` unless the logger's level is above it."""
        number = LEVELS[level]
        if number < self._threshold:
            return
        line: dict[str, Any] = {"level": number, "time": int(time.time() * 1000), "pid": os.getpid()}
        if self.name is not None:
            line["name"] = self.name
        line.update(self._bindings)
        line.update(fields)
        line["msg"] = msg
        stream = self._stream or sys.stdout
        stream.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")
        stream.flush()

    def debug(self, msg: str, **fields: Any) -> None:
        self.log("debug", msg, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self.log("info", msg, **fields)

    def warn(self, msg: str, **fields: Any) -> None:
        self.log("warn", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.log("error", msg, **fields)

    def fatal(self, msg: str, **fields: Any) -> None:
        self.log("fatal", msg, **fields)
