"""The rehearsal's grading probes: every trace looked for in one login, and a reply of the wrong shape refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from recovery import rehearsal
from recovery.transport.result import Result, TransportError


class ShellGuest:
    """Runs each command with this machine's sh, counting the logins a guest would have taken."""

    name = "eu-web"

    def __init__(self, reply: bytes | None = None) -> None:
        self.logins = 0
        self.reply = reply

    def run(self, command: str) -> Result:
        self.logins += 1
        done = subprocess.run(["sh", "-c", command], capture_output=True, timeout=30, check=False)
        stdout = done.stdout if self.reply is None else self.reply
        return Result(stdout, done.stderr, done.returncode, 0.0)


def test_every_trace_is_looked_for_in_one_login(tmp_path: Path) -> None:
    planted, gone, keyed = tmp_path / "telnetd", tmp_path / "closer.cgi", tmp_path / "authorized_keys"
    planted.write_text("x")
    keyed.write_text("ssh-ed25519 AAAA intruder@2005\n")
    traces = [{"path": str(planted)}, {"path": str(gone)},
              {"path": str(keyed), "marker": "intruder@2005"}, {"path": str(tmp_path / "it's here; true")}]
    guest = ShellGuest()
    assert rehearsal._left(guest, traces) == [str(planted), f"{keyed} (still modified)"]
    assert guest.logins == 1
    keyed.write_text("ssh-ed25519 AAAA webmaster\n")
    assert rehearsal._left(guest, traces) == [str(planted)]


def test_no_traces_means_no_login() -> None:
    guest = ShellGuest()
    assert rehearsal._left(guest, []) == []
    assert guest.logins == 0


@pytest.mark.parametrize("reply", [b"", b"yes\n", b"yes\nno\nno\n", b"yes\nmaybe\n", b"\x1b[2Jyes\nno\n"])
def test_a_reply_of_the_wrong_shape_stops_the_grading(tmp_path: Path, reply: bytes) -> None:
    traces = [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "b")}]
    with pytest.raises(TransportError, match="eu-web: 2 probes") as caught:
        rehearsal._left(ShellGuest(reply), traces)
    assert "\x1b" not in str(caught.value)


def test_held_evidence_is_read_from_one_listing() -> None:
    listing = (b"tank/home@incident-1\trecovery-evidence\tWed Dec  2 06:00 2026\n"
               b"tank/apache@incident-1\tsomeone-else\tWed Dec  2 06:00 2026\n")
    guest = ShellGuest(listing)
    assert rehearsal._held(guest, ["tank/home@incident-1", "tank/apache@incident-1", "rpool/ROOT/debian@incident-1"]) \
        == ["tank/home@incident-1"]
    assert guest.logins == 1
