"""Exit codes of `recover`, documented in `recover --help` and the README."""

from __future__ import annotations

import enum


class Exit(enum.IntEnum):
    OK = 0  # every step done (or skipped by the operator) on every host
    FAILED = 1  # the run finished, but some steps failed on some hosts
    USAGE = 2  # bad command line, config error, unknown target or run
    REFUSED = 3  # not started: confirmation declined or impossible
    STOPPED = 4  # a step with on_failure = "stop" failed; the run stopped early
    NEEDS_OPERATOR = 5  # a step was in flight at a crash and cannot be re-checked: retry or skip it
    JOURNAL_TAMPERED = 6  # `recover journal verify` found a broken hash chain
    JOURNAL_FAILED = 7  # the journal could not be written (disk full?): the run stopped where it was
    CHECK_WARN = 8  # `recover check`: no FAIL, but some item WARNs (FAIL exits 1)
    INTERRUPTED = 130  # Ctrl-C; `recover resume RUN` continues


