"""The run journal: append-only, durable, hash-chained.

Each record stores the hash of the record before it, so editing, inserting or
deleting a record breaks the chain (`recover journal verify`). The hash of the
newest record is also kept in ``HEAD`` beside the database, which catches a
truncated tail; copy it off the machine to make the chain evidence: the
report prints it, and observers (:meth:`Journal.subscribe`, the collectors of
``recovery.offsite``) ship every record and so every head as it is written.

A plain hash chain proves order, not origin: whoever can write the run
directory can rewrite every record and recompute the chain. With an operator
key (``RECOVERY_JOURNAL_KEY``, a secret reference, kept outside the run
directory), every record is keyed with HMAC-SHA256, and a rewrite needs the key. SQLite with WAL and ``synchronous=FULL`` means a record that
``append`` returned is on disk before the run moves on, even after ``kill -9``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recovery.secrets import REDACTOR

GENESIS = "0" * 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    step TEXT,
    host TEXT,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
"""


class JournalError(Exception):
    """The journal could not be written (disk full, gone, read-only): the run must stop where it is."""


@dataclass(frozen=True)
class Record:
    seq: int
    ts: float
    event: str
    step: str | None
    host: str | None
    data: dict[str, Any]
    prev: str
    hash: str


@dataclass
class _Queued:
    """A record chained and waiting to be written; ``written`` is None until its write ended."""

    record: Record
    data_json: str
    written: bool | None = None
    error: str = ""


def record_hash(seq: int, ts: float, event: str, step: str | None, host: str | None,
                data_json: str, prev: str, key: bytes | None = None) -> str:
    body = json.dumps([seq, repr(ts), event, step, host, data_json, prev], separators=(",", ":")).encode()
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class Journal:
    """One run's journal database. Safe to share between the run's threads."""

    def __init__(self, path: Path, key: bytes | None = None) -> None:
        self.path = path
        self.key = key
        self.head_path = path.with_name("HEAD")
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db_lock = threading.Lock()  # the connection: one transaction or query at a time
        self._lock = threading.Lock()  # the chain's tip, what waits to be written, who writes it
        self._written = threading.Condition(self._lock)
        row = self._db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        self._tip: tuple[int, str] = (row[0], row[1]) if row else (0, GENESIS)
        self._pending: list[_Queued] = []  # chained, not yet written
        self._writing = False  # a thread is writing a batch
        self._observers: list[Callable[[Record], None]] = []

    def subscribe(self, observer: Callable[[Record], None]) -> None:
        """Call ``observer`` with every record from now on, once it is committed and HEAD names it.

        Observers are called in ``seq`` order by the one thread writing at a
        time, so what they see is the chain in order even when hosts run in
        parallel. That is why an observer must return at once (hand the record
        to a queue, never touch the network) and must not append to this
        journal itself (it would wait for the write it is part of). An
        observer that raises is logged and skipped: the record is already durable
        and the run goes on.
        """
        with self._lock:
            self._observers = [*self._observers, observer]

    def unsubscribe(self, observer: Callable[[Record], None]) -> None:
        with self._lock:
            self._observers = [o for o in self._observers if o is not observer]

    def append(self, event: str, step: str | None = None, host: str | None = None,
               **data: Any) -> Record:
        """Store one record durably; secrets are masked before anything is written.

        Returns once the record is on disk and HEAD names it (or a later one).
        Records that threads append while a write is under way are written
        together by the next one, with one sync: with a hundred hosts, each
        waits for a write or two, not for a hundred.
        """
        data_json = json.dumps(REDACTOR.data(data), sort_keys=True, default=str)  # masked before it is text
        with self._written:
            entry = self._chain(event, step, host, data_json)
            while entry.written is None and self._writing:
                self._written.wait()
            batch: list[_Queued] = []
            if entry.written is None:  # nobody is writing: this thread writes all that is queued
                self._writing = True
                batch, self._pending = self._pending, []
        if batch:
            try:
                error = self._write(batch)
            except BaseException as exc:  # interrupted: the waiting threads are told, this one stops
                self._settle(batch, exc)
                raise
            self._settle(batch, error)
        if not entry.written:
            raise JournalError(f"cannot write the journal {self.path}: {entry.error}; the run stopped here, "
                               "nothing after this point was done (free space, then `recover resume`)")
        return entry.record

    def _chain(self, event: str, step: str | None, host: str | None, data_json: str) -> _Queued:
        """The next record of the chain, queued to be written (under the lock)."""
        seq, prev = self._tip[0] + 1, self._tip[1]
        ts = time.time()
        digest = record_hash(seq, ts, event, step, host, data_json, prev, self.key)
        entry = _Queued(Record(seq, ts, event, step, host, json.loads(data_json), prev, digest), data_json)
        self._pending.append(entry)
        self._tip = (seq, digest)
        return entry

    def _settle(self, batch: list[_Queued], error: BaseException | None) -> None:
        """After a write: its records are on disk, or they and all chained onto them since are lost
        (the chain goes on from the last record on disk)."""
        with self._written:
            self._writing = False
            for entry in batch:
                entry.written, entry.error = error is None, str(error)
            if error is not None:
                for entry in self._pending:
                    entry.written, entry.error = False, f"queued behind a write that failed ({error})"
                self._pending = []
                first = batch[0].record
                self._tip = (first.seq - 1, first.prev)
            self._written.notify_all()

    def _write(self, batch: list[_Queued]) -> Exception | None:
        """Commit ``batch`` in one transaction, point HEAD at its last record, then tell the observers;
        the error if it could not be written (then none of it was)."""
        with self._db_lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)",
                                         [(e.record.seq, e.record.ts, e.record.event, e.record.step,
                                           e.record.host, e.data_json, e.record.prev, e.record.hash)
                                          for e in batch])
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                last = batch[-1].record
                _write_head(self.head_path, last.seq, last.hash)
            except (sqlite3.Error, OSError) as exc:
                return exc
        for entry in batch:
            self._notify(entry.record)
        return None

    def _notify(self, record: Record) -> None:
        for observer in self._observers:
            try:
                observer(record)
            except Exception:  # noqa: BLE001 - an observer's defect must not undo or stop a durable record
                logging.getLogger("recovery").exception("journal observer %r failed on record %d",
                                                        observer, record.seq)

    def records(self) -> list[Record]:
        with self._db_lock:
            rows = self._db.execute("SELECT * FROM records ORDER BY seq").fetchall()
        return [Record(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows]

    def verify(self) -> list[str]:
        """Problems in the chain; an empty list means it is intact."""
        with self._db_lock:
            rows = self._db.execute("SELECT * FROM records ORDER BY seq").fetchall()
        problems = []
        prev, expected_seq = GENESIS, 1
        for seq, ts, event, step, host, data_json, stored_prev, digest in rows:
            if seq != expected_seq:
                problems.append(f"record {expected_seq} is missing (next is {seq})")
            if stored_prev != prev:
                problems.append(f"record {seq} does not follow the record before it (inserted, or one deleted)")
            if record_hash(seq, ts, event, step, host, data_json, stored_prev, self.key) != digest:
                problems.append(f"record {seq} ({event}) was altered: its hash does not match its content")
            prev, expected_seq = digest, seq + 1
        if not rows:
            problems.append("the journal is empty: every run records at least its start")
        problems += _check_head(self.head_path, rows[-1][0] if rows else 0, prev)
        return problems

    def close(self) -> None:
        self._db.close()


def _write_head(path: Path, seq: int, digest: str) -> None:
    """Replace HEAD atomically and durably: a crash leaves the old head or the new one, never half."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as handle:
        handle.write(f"{seq} {digest}\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _check_head(path: Path, last_seq: int, last_hash: str) -> list[str]:
    try:
        seq_text, digest = path.read_text().split()
    except (OSError, ValueError):
        return ["HEAD is missing or unreadable: the end of the chain cannot be checked"] if last_seq else []
    if int(seq_text) != last_seq or digest != last_hash:
        return [f"HEAD names record {seq_text} but the journal ends at record {last_seq}: "
                "records were removed from the end or HEAD was replaced"]
    return []
