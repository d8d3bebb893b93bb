"""The hash chain catches an edited, inserted or deleted record and a cut tail."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from recovery.engine.journal import Journal, JournalError, record_hash
from recovery.secrets import REDACTOR


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    for i in range(5):
        j.append("step_succeeded", f"s{i}", "h1", outputs={"i": i})
    yield j
    j.close()


def raw(j: Journal) -> sqlite3.Connection:
    db = sqlite3.connect(j.path, isolation_level=None)
    db.execute("DROP TRIGGER records_no_update")
    db.execute("DROP TRIGGER records_no_delete")
    return db


def test_intact_chain_verifies(journal):
    assert journal.verify() == []
    records = journal.records()
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert all(b.prev == a.hash for a, b in zip(records, records[1:]))


def test_update_and_delete_are_refused_by_the_database(journal):
    db = sqlite3.connect(journal.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE records SET event='x' WHERE seq=2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM records WHERE seq=2")


def test_edited_record_is_detected(journal):
    raw(journal).execute("""UPDATE records SET data='{"outputs": {"i": 99}}' WHERE seq=3""")
    assert journal.verify() == ["record 3 (step_succeeded) was altered: its hash does not match its content"]


def test_deleted_record_is_detected(journal):
    raw(journal).execute("DELETE FROM records WHERE seq=2")
    assert journal.verify() == [
        "record 2 is missing (next is 3)",
        "record 3 does not follow the record before it (inserted, or one deleted)",
    ]


def test_inserted_record_is_detected_even_with_a_valid_own_hash(journal):
    db = raw(journal)
    rows = db.execute("SELECT * FROM records WHERE seq >= 3 ORDER BY seq DESC").fetchall()
    for row in rows:  # shift 3..5 up by one to make room
        db.execute("UPDATE records SET seq=? WHERE seq=?", (row[0] + 1, row[0]))
    prev = db.execute("SELECT hash FROM records WHERE seq=2").fetchone()[0]
    digest = record_hash(3, 1.0, "step_succeeded", "forged", "h1", "{}", prev)
    db.execute("INSERT INTO records VALUES (3, 1.0, 'step_succeeded', 'forged', 'h1', '{}', ?, ?)",
               (prev, digest))
    problems = journal.verify()
    assert "record 4 does not follow the record before it (inserted, or one deleted)" in problems


def test_cut_tail_is_detected_through_head(journal):
    raw(journal).execute("DELETE FROM records WHERE seq=5")
    assert journal.verify() == [
        "HEAD names record 5 but the journal ends at record 4: "
        "records were removed from the end or HEAD was replaced"
    ]


def test_secrets_are_masked_before_storage(tmp_path):
    REDACTOR.add("tsig-secret-value")
    j = Journal(tmp_path / "j.sqlite")
    j.append("step_failed", "s", "h", error="bad key tsig-secret-value")
    assert b"tsig-secret-value" not in (tmp_path / "j.sqlite").read_bytes()
    assert j.records()[0].data["error"] == "bad key ***"


@pytest.mark.parametrize("secret", ['pa"ss\\wörd', "Xq", "ü€"])
def test_secrets_of_any_shape_never_reach_the_journal_file(tmp_path, secret):
    REDACTOR.add(secret)
    j = Journal(tmp_path / "journal.sqlite")
    j.append("step_failed", "s", "h", error=f"login with {secret} refused", nested={"k": [secret]})
    j.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for form in (secret.encode(), json.dumps(secret).encode()[1:-1], json.dumps(secret, ensure_ascii=False).encode()[1:-1]):
        assert form not in stored


def test_a_keyed_chain_cannot_be_recomputed_without_the_key(tmp_path):
    keyed = Journal(tmp_path / "journal.sqlite", key=b"operator key")
    for i in range(3):
        keyed.append("step_succeeded", f"s{i}", "h1", outputs={"i": i})
    assert keyed.verify() == []
    db = raw(keyed)  # an intruder with the run directory but not the key rewrites record 2 and the chain after it
    rows = db.execute("SELECT * FROM records ORDER BY seq").fetchall()
    prev = rows[0][7]
    for seq, ts, event, step, host, data, _, _ in rows[1:]:
        data = data.replace('"i": 1', '"i": 9')
        digest = record_hash(seq, ts, event, step, host, data, prev)  # all they can compute: no key
        db.execute("UPDATE records SET data=?, prev=?, hash=? WHERE seq=?", (data, prev, digest, seq))
        prev = digest
    (tmp_path / "HEAD").write_text(f"3 {prev}\n")
    assert any("was altered" in p for p in Journal(tmp_path / "journal.sqlite", key=b"operator key").verify())


def test_an_empty_journal_is_reported_broken(tmp_path):
    assert Journal(tmp_path / "journal.sqlite").verify() == ["the journal is empty: every run records at least its start"]


# -- appends from many threads: written together, in order, durable when append returns ----------


def test_threads_appending_at_once_share_writes_and_the_chain_stays_in_order(tmp_path, monkeypatch):
    j = Journal(tmp_path / "journal.sqlite")
    writes = []
    real_write = j._write

    def counted(batch):
        writes.append(len(batch))
        time.sleep(0.005)  # a write takes a while (a sync): appenders queue up behind it
        return real_write(batch)

    monkeypatch.setattr(j, "_write", counted)
    seen = []
    j.subscribe(lambda record: seen.append(record.seq))
    returned = []

    def host(n: int) -> None:
        for i in range(10):
            record = j.append("step_succeeded", f"s{i}", f"h{n}")
            assert record.seq in {r.seq for r in j.records()}  # on disk once append returned
            returned.append(record.seq)

    threads = [threading.Thread(target=host, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(returned) == list(range(1, 201)) and seen == list(range(1, 201))
    assert j.verify() == [] and sum(writes) == 200
    assert len(writes) < 200, "every record was written on its own"
    assert (tmp_path / "HEAD").read_text().split()[0] == "200"


def test_a_failed_write_fails_its_records_and_those_queued_behind_it_and_the_chain_goes_on(tmp_path, monkeypatch):
    j = Journal(tmp_path / "journal.sqlite")
    j.append("run_started")
    gate, failing = threading.Event(), [True]
    real_write = j._write

    def full_once(batch):
        if failing:
            gate.wait(10)  # the others queue behind this write
            failing.clear()
            return OSError(28, "No space left on device")
        return real_write(batch)

    monkeypatch.setattr(j, "_write", full_once)
    errors = []

    def append(n: int) -> None:
        try:
            j.append("step_started", "s", f"h{n}")
        except JournalError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=append, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    while len(j._pending) < 4:  # the first is being written, four wait behind it
        time.sleep(0.001)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 5 and all("cannot write the journal" in e and "recover resume" in e for e in errors)
    assert sum("queued behind a write that failed" in e for e in errors) == 4
    after = j.append("run_resumed")
    assert after.seq == 2 and j.verify() == []  # nothing of the failed write is on disk; the chain goes on
