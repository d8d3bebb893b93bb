"""The run's log file: where library chatter goes instead of the operator's terminal.

Python's logging prints records of loggers without a handler to stderr
("last resort"); paramiko's transport thread logs a failed banner read with a
traceback that way while a host boots. During a run, every logger writes to
the run directory's ``run.log``; outside a run, nothing reaches the terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"


def quiet() -> None:
    """No log record reaches the terminal raw (the CLI calls this once at start)."""
    logging.lastResort = logging.NullHandler()
    logging.getLogger("paramiko").setLevel(logging.WARNING)


class _RunLogHandler(logging.FileHandler):
    """A log file that never turns its own trouble (a full disk) into noise on the terminal.

    The journal is what must be written; when it cannot be, the run stops and
    says so. A log line lost on the same full disk needs no second message.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            pass


@contextmanager
def to_file(path: Path) -> Iterator[None]:
    """Every log record of this process goes to ``path`` (mode 0600) while the block runs."""
    quiet()
    handler = _RunLogHandler(path, encoding="utf-8", errors="backslashreplace")
    path.chmod(0o600)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()
