"""One agent process per host channel, started once, answering framed requests until it ends.

A new python3 and its imports cost about a second on a slow guest, and a
shell command per request (``run``) several processes more; a request line on
an open channel costs a few milliseconds (SSH) or the line's own speed (a
serial console). So a session's first served call opens a channel running
``agent.py serve`` (see :mod:`recovery.transport.channel`), waits for the
agent to say it serves, and every later call of that session (every client
made on it, every step) sends its request line there and reads until its
frame ends. Calls made side by side (a step's threads, one per dataset) are
answered side by side: a quick one never waits behind a long ``zfs diff``.
The frame and its checks are the client's, as for one call.

The agent leaves after SERVE_IDLE seconds without a request; an agent quiet
for nearly that long is asked to leave and a new one started, so a request is
never sent to one that is leaving. An agent whose reply went wrong (late,
damaged, too large) is not used again: what it sends next could be the old
reply.
"""

from __future__ import annotations

import secrets
import shlex
import threading
import time
import weakref
from typing import Protocol

from recovery.errors import AdapterError
from recovery.transport.channel import Channel, ChannelClosed
from recovery.transport.result import TransportError
from recovery.zfs.agent import BAD_REQUEST, MARK, SERVING

#: Seconds a served agent waits for its next request before it leaves.
SERVE_IDLE = 300.0
#: An agent quiet for longer than this is replaced rather than asked: it may be leaving just now.
FRESH = SERVE_IDLE - 60.0
#: How long the host gets to start python3 and the agent (a loaded, emulated guest needs seconds).
START_TIMEOUT = 90.0
#: What the agent is told when the channel closes: leave now.
FAREWELL = b"stop\n"


class Opens(Protocol):
    def open_channel(self, command: str, farewell: bytes) -> Channel: ...


class ServedReplyError(AdapterError):
    """The served agent did not answer in a way that can be trusted (or at all)."""


def serve_command(python: str, bootstrap: str, token: str) -> str:
    """The command that runs the agent in ``serve`` mode; its output is read through the channel."""
    return f"{shlex.quote(python)} -I -c {shlex.quote(bootstrap)} serve {token} {SERVE_IDLE:g} 2>/dev/null"


class ServedAgent:
    """The agent on one channel. Threads ask at once: each sends its line and waits for its own
    frame; whichever waits reads the channel for all of them (the agent answers side by side)."""

    def __init__(self, transport: Opens, python: str, bootstrap: str, host: str) -> None:
        self.python, self.host = python, host
        token = secrets.token_hex(8)
        self._channel = transport.open_channel(serve_command(python, bootstrap, token), FAREWELL)
        self._sending = threading.Lock()
        self._arrived = threading.Condition()
        self._output = bytearray()  # what arrived since nobody waited, from offset self._base on
        self._base = 0
        self._waiting = 0
        self._reading = False
        self._broken: str | None = None
        self._last = time.monotonic()
        try:
            self._await(b"%s %s" % (SERVING, token.encode()), START_TIMEOUT, 1 << 20)
        except ServedReplyError as exc:
            self.close()
            raise ServedReplyError(f"{host}: the agent did not start: {exc}") from None

    @property
    def usable(self) -> bool:
        return self._broken is None and not self._channel.closed and time.monotonic() - self._last < FRESH

    def exchange(self, line: bytes, nonce: str, timeout: float, cap: int) -> bytes:
        """What the agent wrote from when ``line`` was sent up to the end of ``nonce``'s frame (other
        requests' frames may be among it: the reader keeps only this nonce's lines)."""
        end = b"%s v1 %s end" % (MARK.encode(), nonce.encode())
        with self._arrived:
            self._waiting += 1
            start = self._base + len(self._output)
        try:
            with self._sending:
                self._channel.send(line + b"\n")
            return self._await(end, timeout, cap, start)
        except ChannelClosed as exc:
            raise ServedReplyError(str(exc)) from None
        finally:
            with self._arrived:
                self._waiting -= 1
                self._last = time.monotonic()
                if not self._waiting:  # nobody needs what arrived so far
                    self._base += len(self._output)
                    self._output = bytearray()

    def close(self) -> None:
        try:
            self._channel.close()
        except TransportError:
            pass  # a console that cannot be given back says so at its next use

    def _await(self, wanted: bytes, timeout: float, cap: int, start: int | None = None) -> bytes:
        deadline = time.monotonic() + timeout
        with self._arrived:
            start = self._base if start is None else start
            seen = start
            while True:
                mine = self._output[start - self._base:]
                if (at := mine.find(wanted, max(0, seen - start - len(wanted)))) >= 0:
                    return bytes(mine[:at + len(wanted)])
                if BAD_REQUEST in mine:
                    raise ServedReplyError("the agent could not read a request and left")
                if self._broken is not None:
                    raise ServedReplyError(self._broken)
                if len(mine) > cap:
                    raise ServedReplyError(f"more than {cap} bytes without the end of the reply")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ServedReplyError(f"no answer within {timeout:.0f} s")
                seen = start + len(mine)
                if self._reading:
                    self._arrived.wait(min(remaining, 1.0))
                else:
                    self._read(min(remaining, 1.0))

    def _read(self, timeout: float) -> None:
        """Read the channel for every waiter (called with the condition held; released meanwhile)."""
        self._reading = True
        self._arrived.release()
        try:
            data, broken = self._channel.receive(timeout), None
        except ChannelClosed as exc:
            data, broken = b"", f"the agent's channel ended ({exc})"
        finally:
            self._arrived.acquire()
            self._reading = False
        self._output += data
        self._broken = self._broken or broken
        self._arrived.notify_all()


_AGENTS: weakref.WeakKeyDictionary[object, ServedAgent] = weakref.WeakKeyDictionary()
_STARTING: weakref.WeakKeyDictionary[object, threading.Lock] = weakref.WeakKeyDictionary()
_REGISTRY = threading.Lock()


def served_agent(transport: Opens, python: str, bootstrap: str, host: str) -> ServedAgent:
    """This session's agent, started now if it has none (or one that may be leaving)."""
    with _REGISTRY:
        starting = _STARTING.setdefault(transport, threading.Lock())
    with starting:  # one start per session; other hosts' sessions start theirs meanwhile
        with _REGISTRY:
            agent = _AGENTS.get(transport)
        if agent is not None and agent.python == python and agent.usable:
            return agent
        forget(transport)
        agent = ServedAgent(transport, python, bootstrap, host)
        with _REGISTRY:
            _AGENTS[transport] = agent
        return agent


def forget(transport: object) -> None:
    """Stop this session's agent, if it has one: it is not trusted with another request."""
    with _REGISTRY:
        agent = _AGENTS.pop(transport, None)
    if agent is not None:
        agent.close()
