"""One agent process per host channel, started once, answering framed requests until it ends.

A new python3 and its imports cost about a second on a slow guest, and a
shell command per request (``run``) several processes more; a request line on
an open channel costs a few milliseconds (SSH) or the line's own speed (a
serial console). So a session's first served call opens a channel running
``agent.py serve`` (see :mod:`recovery.transport.channel`), waits for the
agent to say it serves, and every later call of that session (every client
made on it, every step) sends its request line there and reads until its
frame ends. The frame and its checks are the client's, as for one call.

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
    """The agent on one channel; one exchange at a time (the pipeline batches what threads ask)."""

    def __init__(self, transport: Opens, python: str, bootstrap: str, host: str) -> None:
        self.python, self.host = python, host
        token = secrets.token_hex(8)
        self._channel = transport.open_channel(serve_command(python, bootstrap, token), FAREWELL)
        self._lock = threading.Lock()
        self._last = time.monotonic()
        ready = b"%s %s" % (SERVING, token.encode())
        try:
            self._read_until(ready, (), START_TIMEOUT, 1 << 20)
        except ServedReplyError as exc:
            self.close()
            raise ServedReplyError(f"{host}: the agent did not start: {exc}") from None

    @property
    def usable(self) -> bool:
        return not self._channel.closed and time.monotonic() - self._last < FRESH

    def exchange(self, line: bytes, nonce: str, timeout: float, cap: int) -> bytes:
        """What the agent wrote in answer to ``line``, up to and with the end of ``nonce``'s frame."""
        with self._lock:
            try:
                self._channel.send(line + b"\n")
            except ChannelClosed as exc:
                raise ServedReplyError(str(exc)) from None
            end = b"%s v1 %s end" % (MARK.encode(), nonce.encode())
            output = self._read_until(end, (BAD_REQUEST,), timeout, cap)
            self._last = time.monotonic()
            return output

    def close(self) -> None:
        try:
            self._channel.close()
        except TransportError:
            pass  # a console that cannot be given back says so at its next use

    def _read_until(self, wanted: bytes, refusals: tuple[bytes, ...], timeout: float, cap: int) -> bytes:
        output = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServedReplyError(f"no answer within {timeout:.0f} s")
            try:
                data = self._channel.receive(min(remaining, 1.0))
            except ChannelClosed as exc:
                raise ServedReplyError(f"the agent's channel ended ({exc})") from None
            seen = max(0, len(output) - len(wanted))
            output += data
            if wanted in output[seen:]:
                return bytes(output)
            if any(refusal in output[seen:] for refusal in refusals):
                raise ServedReplyError("the agent could not read the request")
            if len(output) > cap:
                raise ServedReplyError(f"more than {cap} bytes without the end of the reply")


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
