"""Console framing and login without a host: replies cut by kernel messages, damage caught, prompts answered."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from recovery.oob.base import OobError
from recovery.transport.console import ConsoleSession, setup_line
from recovery.transport.console_frame import (
    LINE_WIDTH,
    ConsoleFrameError,
    FrameReader,
    host_command,
    new_marker,
)
from recovery.transport.console_login import ConsoleLoginError, Screen, screen_of
from recovery.transport.result import TransportError

MARKER = b"RCV0123456789abcdef0123"
CAP = 4 * 1024 * 1024
SULOGIN = (
    b'You are in rescue mode. After logging in, type "journalctl -xb" to view\r\n'
    b"Give root password for maintenance\r\n(or press Control-D to continue): "
)
KMSG = b"[   21.662244] kvm: Nested Virtualization enabled\r\n"
PASSWORD = "lab-root-password"


def frame(stdout: bytes, stderr: bytes = b"", code: int = 0, marker: bytes = MARKER, cap: int = CAP) -> bytes:
    """What the host function prints for one command (onlcr turns its newlines into CR LF)."""
    lines = []
    for kind, data in ((b"o", stdout), (b"e", stderr)):
        sent = data[:cap]
        encoded = base64.b64encode(sent)
        lines += [marker + b" " + kind + b" " + encoded[i : i + LINE_WIDTH] for i in range(0, len(encoded), LINE_WIDTH)]
        lines.append(b"%s %s-end %d %s  -" % (marker, kind, len(data), hashlib.sha256(sent).hexdigest().encode()))
    lines.append(b"%s exit %d" % (marker, code))
    return b"".join(line + b"\r\n" for line in lines)


def read(data: bytes, chunk: int = 4096, cap: int = CAP, marker: bytes = MARKER) -> FrameReader:
    reader = FrameReader(marker, cap)
    for start in range(0, len(data), chunk):
        reader.feed(data[start : start + chunk])
    return reader


def test_binary_output_and_exit_status_survive_any_chunking() -> None:
    payload = bytes(range(256)) * 20
    for chunk in (1, 7, 1000, 1 << 20):
        result = read(frame(payload, b"warning\n", 3), chunk).result(0.1)
        assert (result.stdout, result.stderr, result.exit_code, result.truncated) == (payload, b"warning\n", 3, False)


def test_kernel_messages_inside_lines_are_cut_out() -> None:
    data = frame(b"x" * 5000)
    noisy = data[:100] + KMSG + data[100:1500] + KMSG + data[1500:]
    for chunk in (1, 50, 1 << 20):
        assert read(noisy, chunk).result(0.1).stdout == b"x" * 5000


def test_noise_around_the_frame_is_ignored() -> None:
    noise = b"\x1b[?2004h\x1b]0;owned\x07[  OK  ] Started Journal Service.\r\n\x13"
    stale = frame(b"old", marker=b"RCV" + b"f" * 20)
    data = noise + stale + KMSG + b"junk before " + frame(b"new")[:-2] + b"\x11\r\n" + noise
    assert read(data).result(0.1).stdout == b"new"


def test_lost_bytes_are_an_error_not_a_guess() -> None:
    data = bytearray(frame(b"y" * 3000))
    data[200] = ord("A") if data[200] != ord("A") else ord("B")
    with pytest.raises(ConsoleFrameError, match="sha256"):
        read(bytes(data)).result(0.1)


def test_missing_end_line_is_an_error() -> None:
    data = b"".join(line + b"\n" for line in frame(b"z").split(b"\r\n") if b"o-end" not in line)
    with pytest.raises(ConsoleFrameError, match="no end line"):
        read(data).result(0.1)


def test_garbled_line_with_the_marker_is_an_error() -> None:
    data = MARKER + b" o not*base64\r\n" + frame(b"")
    with pytest.raises(ConsoleFrameError, match="bad o line"):
        read(data).result(0.1)


def test_command_damaged_in_transit_is_reported() -> None:
    reader = read(MARKER + b" garbled\r\n")
    assert reader.done
    with pytest.raises(ConsoleFrameError, match="not run"):
        reader.result(0.1)


def test_output_over_the_cap_is_marked_truncated() -> None:
    result = read(frame(b"a" * 100, cap=10), cap=10).result(0.1)
    assert result.stdout == b"a" * 10
    assert result.truncated


def test_incomplete_reply_is_not_done() -> None:
    reader = read(frame(b"partial")[:-10])
    assert not reader.done
    with pytest.raises(ConsoleFrameError, match="incomplete"):
        reader.result(0.1)


def test_endless_noise_without_newlines_stays_bounded() -> None:
    reader = FrameReader(MARKER, CAP)
    for _ in range(100):
        reader.feed(b"A" * 65536)
    reader.feed(b"\n" + frame(b"ok"))
    assert reader.result(0.1).stdout == b"ok"
    assert len(reader._pending) < 65536


def test_host_command_is_one_line_whatever_the_command() -> None:
    command = "printf 'a\\nb'\necho \"$HOME\" `id` $'\\x1b' " + "x" * 10000
    line = host_command(MARKER, command, 1000)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    name, marker, encoded, cap = line.split()
    assert (name, marker, cap) == (b"recovery_run", MARKER, b"1000")
    assert base64.b64decode(encoded).decode() == command


def test_markers_are_unique_and_never_echoed_by_the_setup_line() -> None:
    assert len({new_marker() for _ in range(1000)}) == 1000
    line, ready = setup_line(MARKER)
    assert ready not in line
    assert line.count(b"\n") == 1 and len(line) < 4095


@pytest.mark.parametrize(
    ("shown", "screen"),
    [
        (SULOGIN, Screen.PASSWORD),
        (SULOGIN + KMSG + KMSG, Screen.PASSWORD),
        (b"\r\nDebian GNU/Linux 12 web ttyS0\r\n\r\nweb login: ", Screen.LOGIN),
        (b"web login: root\r\nPassword: ", Screen.PASSWORD),
        (b"\x1b[?2004hroot@web:~# ", Screen.SHELL),
        (b"echo 'half\r\n> ", Screen.CONTINUATION),
        (b"Cannot open access to console, the root account is locked.\r\nPress Enter to continue.\r\n", Screen.LOCKED),
        (b"[  OK  ] Reached target Basic System.\r\n", Screen.UNKNOWN),
    ],
)
def test_screens_are_recognised(shown: bytes, screen: Screen) -> None:
    assert screen_of(shown) is screen


class FakeSulogin:
    """A console in single-user mode: sulogin, then a shell that runs the session's setup line."""

    def __init__(self, password: str = PASSWORD) -> None:
        self.password = password.encode()
        self.out = [b"[    1.000000] Linux version 6.1\r\n", SULOGIN, KMSG]
        self.written: list[bytes] = []
        self.shell = False

    def read(self, timeout: float) -> bytes:
        return self.out.pop(0) if self.out else b""

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if not self.shell and data == self.password + b"\n":
            self.shell = True
            self.out.append(b"\r\n\x1b[?2004hroot@web:~# ")
        elif not self.shell:
            self.out.append(b"\r\nLogin incorrect\r\n\r\n" + SULOGIN)
        elif match := re.search(rb"RECOVERY-READY (RCV[0-9a-f]+)", data):
            self.out.append(data + b"\x1b[?2004l\rRECOVERY-READY-" + match.group(1) + b"\r\n")

    def close(self) -> None:
        pass


def test_sulogin_is_answered_once_and_the_shell_set_up() -> None:
    console = FakeSulogin()
    ConsoleSession(console, PASSWORD, name="web", login_timeout=30).open()
    assert console.written[0] == PASSWORD.encode() + b"\n"
    assert console.written[1].startswith(b"set +o emacs")
    assert len(console.written) == 2


def test_a_refused_password_stops_the_login() -> None:
    session = ConsoleSession(FakeSulogin("another"), PASSWORD, name="web", login_timeout=30)
    with pytest.raises(ConsoleLoginError, match="refused the root password"):
        session.open()


def test_a_password_prompt_without_a_password_stops_the_login() -> None:
    with pytest.raises(ConsoleLoginError, match="none is configured"):
        ConsoleSession(FakeSulogin(), None, name="web", login_timeout=30).open()


def test_a_silent_console_times_out_with_what_it_showed() -> None:
    class Silent(FakeSulogin):
        def write(self, data: bytes) -> None:
            self.out.append(b"\x1b[31mnothing\r\n")

    with pytest.raises(TransportError, match="no root shell on the console within 1 s; it shows: .*nothing"):
        ConsoleSession(Silent(), PASSWORD, name="web", login_timeout=1).open()


def test_closing_a_session_whose_console_is_gone_does_not_raise() -> None:
    class Gone(FakeSulogin):
        closed = False

        def write(self, data: bytes) -> None:
            if self.shell and data.startswith(b"stty"):
                raise OobError("eu-web: console over lab BMC: the BMC closed the console")
            super().write(data)

        def close(self) -> None:
            self.closed = True

    console = Gone()
    session = ConsoleSession(console, PASSWORD, name="web", login_timeout=30).open()
    session.close()
    assert console.closed


class FakeGetty(FakeSulogin):
    """A console in multi-user mode: a getty asks for the user, then login for the password."""

    def __init__(self) -> None:
        super().__init__()
        self.out = [b"\r\nDebian GNU/Linux 12 web ttyS0\r\n\r\nweb login: "]
        self.user = b""

    def write(self, data: bytes) -> None:
        if not self.user and not self.shell:
            self.written.append(data)
            self.user = data
            self.out.append(data.replace(b"\n", b"\r\n") + b"Password: ")
        else:
            super().write(data)


def test_a_getty_login_is_answered_as_root() -> None:
    console = FakeGetty()
    ConsoleSession(console, PASSWORD, name="web", login_timeout=30).open()
    assert console.written[:2] == [b"root\n", PASSWORD.encode() + b"\n"]
    assert console.written[2].startswith(b"set +o emacs")


def test_a_kernel_message_inside_the_ready_line_does_not_hide_it() -> None:
    class Noisy(FakeSulogin):
        def write(self, data: bytes) -> None:
            super().write(data)
            if self.out and b"RECOVERY-READY-" in self.out[-1]:
                line = self.out.pop()
                cut = line.index(b"READY-") + 8
                self.out += [line[:cut], KMSG, line[cut:]]

    console = Noisy()
    ConsoleSession(console, PASSWORD, name="web", login_timeout=30).open()
    assert len(console.written) == 2
