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


@contextmanager
def to_file(path: Path) -> Iterator[None]:
    """Every log record of this process goes to ``path`` (mode 0600) while the block runs."""
    quiet()
    handler = logging.FileHandler(path, encoding="utf-8", errors="backslashreplace")
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
