"""SSH sessions to managed hosts, on Fabric, with the host key pinned.

Fabric accepts unknown host keys by default (AutoAddPolicy) and reads the
user's ~/.ssh config and known_hosts; here the only accepted key is the one
pinned in the inventory, and nothing is read from the operator's SSH config.

Commands run on a raw Paramiko channel of the Fabric connection rather than
through ``Connection.run``: Invoke decodes output to text with replacement
characters, and output from a compromised host must be kept byte for byte
(and capped) before anything is judged or shown.
"""

from __future__ import annotations

import base64
import hashlib
import select
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

from recovery.hostile import OUTPUT_CAP, CappedBuffer, for_terminal
from recovery.transport.channel import ChannelClosed
from recovery.transport.files import copy_bounded, private_file
from recovery.transport.result import Result, TransportError


class HostKeyRefused(TransportError):
    """The host offered no key or a key other than the pinned one: never retried."""

    transient = False


class LoginRefused(TransportError):
    """The host answered and refused the login (wrong key, or not allowed from here)."""

    transient = False


@dataclass(frozen=True)
class SshTarget:
    """Where and how to log in; ``host_keys`` are pinned 'TYPE BASE64' strings."""

    name: str
    address: str
    port: int
    user: str
    key_file: str
    host_keys: tuple[str, ...]
    gateway: "SshTarget | None" = None
    connect_timeout: float = 10.0


def pinned_keys_from_known_hosts(path: str, address: str, port: int) -> tuple[str, ...]:
    """The keys a known_hosts file holds for this address (hashed entries included)."""
    lookup = address if port == 22 else f"[{address}]:{port}"
    try:
        known = paramiko.HostKeys(str(Path(path).expanduser()))
    except OSError as exc:
        raise HostKeyRefused(f"cannot read known_hosts file {path}: {exc.strerror}") from None
    entry = known.lookup(lookup) or {}
    return tuple(f"{kind} {key.get_base64()}" for kind, key in entry.items())


class _PinnedPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        offered = f"{key.get_name()} {key.get_base64()}"
        raise HostKeyRefused(
            f"{self.target.name}: host key refused: the host offered {key.get_name()} "
            f"SHA256:{_fingerprint(key)}, which is not the key pinned in the inventory "
            f"({_pinned_summary(self.target)}); if the host was legitimately rebuilt, "
            f"update its pin (offered key: {offered[:80]}...)"
        )


def _fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def _pinned_summary(target: SshTarget) -> str:
    if not target.host_keys:
        return "no key pinned"
    parts = []
    for entry in target.host_keys:
        kind, blob = entry.split()[:2]
        key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
        parts.append(f"{kind} SHA256:{_fingerprint(key)}")
    return ", ".join(parts)


def _connection(target: SshTarget) -> Connection:
    config = Config(overrides={"load_ssh_configs": False, "run": {"in_stream": False}})
    gateway = _connection(target.gateway) if target.gateway else None
    conn = Connection(
        host=target.address,
        port=target.port,
        user=target.user,
        config=config,
        gateway=gateway,
        connect_timeout=int(target.connect_timeout),
        connect_kwargs={
            "key_filename": [str(Path(target.key_file).expanduser())],
            "look_for_keys": False,
            "allow_agent": False,
            # a host under load (or an emulated guest) may take a while to say hello
            "banner_timeout": max(target.connect_timeout, 30.0),
            "auth_timeout": max(target.connect_timeout, 30.0),
        },
    )
    _pin(conn.client, target)
    return conn


def _pin(client: paramiko.SSHClient, target: SshTarget) -> None:
    """Trust exactly the pinned keys; anything else (unknown or changed) is refused."""
    client.set_missing_host_key_policy(_PinnedPolicy(target))
    name = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
    store = client.get_host_keys()
    for entry in target.host_keys:
        kind, blob = entry.split()[:2]
        key = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
        store.add(name, kind, key)


class SshSession:
    """One logged-in SSH connection: ``run``, ``put`` and ``get``."""

    def __init__(self, target: SshTarget, output_cap: int = OUTPUT_CAP) -> None:
        self.target = target
        self.output_cap = output_cap
        self._conn = _connection(target)

    def open(self) -> "SshSession":
        try:
            self._conn.open()
        except HostKeyRefused:
            raise
        except paramiko.BadHostKeyException as exc:
            raise HostKeyRefused(
                f"{self.target.name}: host key CHANGED: the host offered "
                f"{exc.key.get_name()} SHA256:{_fingerprint(exc.key)} but "
                f"{_pinned_summary(self.target)} is pinned; refusing to connect "
                "(possible impersonation, or the host was rebuilt: update the pin)"
            ) from None
        except paramiko.AuthenticationException as exc:
            raise LoginRefused(f"{self.target.name}: SSH login as {self.target.user} refused: {exc}") from None
        except (OSError, socket.timeout, paramiko.SSHException, EOFError) as exc:
            raise TransportError(
                f"{self.target.name}: cannot connect to {self.target.address}:{self.target.port}: {exc}"
            ) from None
        _no_delay(self._conn.client.get_transport())
        return self

    def run(self, command: str, timeout: float = 300.0, stdin: bytes | None = None) -> Result:
        """Run a shell command; output kept as bytes, capped; a timeout closes the channel."""
        start = time.monotonic()
        channel = self.channel(command)
        try:
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out, err = CappedBuffer(self.output_cap), CappedBuffer(self.output_cap)
            _pump(channel, out, err, start + timeout, self.target.name, command)
            code = channel.recv_exit_status()
        finally:
            channel.close()
        if code == -1:  # paramiko's word for "the channel closed without an exit status"
            raise TransportError(f"{self.target.name}: the SSH connection was lost while the command ran "
                                 f"(no exit status): {for_terminal(command, 80)}")
        return Result(out.getvalue(), err.getvalue(), code, time.monotonic() - start,
                      truncated=out.truncated or err.truncated)

    def channel(self, command: str) -> paramiko.Channel:
        """A channel running ``command``, for a caller that streams both ways (a console); it closes it."""
        self.open()
        transport = self._conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(f"{self.target.name}: SSH connection is closed")
        channel = transport.open_session(timeout=self.target.connect_timeout)
        try:
            channel.exec_command(command)
        except BaseException:
            channel.close()
            raise
        return channel

    def open_channel(self, command: str, farewell: bytes = b"") -> "SshChannel":
        """``command`` running on its own exec channel, for a caller that talks to it (a served agent)."""
        try:
            channel = self.channel(command)
            channel.set_combine_stderr(True)  # one stream, read and bounded by the caller
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TransportError(f"{self.target.name}: cannot open a channel: {exc}") from None
        return SshChannel(channel, farewell, self.target.name)

    def put(self, local: str, remote: str) -> None:
        self.open()
        self._conn.put(local, remote)

    def get(self, remote: str, local: str, max_bytes: int) -> int:
        """Copy ``remote`` into a new file ``local`` (mode 0600, whatever the host says), at most ``max_bytes``.

        The host chooses the file's size and mode as it likes; neither is
        trusted: the copy stops with an error past ``max_bytes`` and the local
        mode is ours. Returns the bytes copied.
        """
        self.open()
        try:
            with self._conn.sftp().open(remote, "rb") as source, private_file(local) as sink:
                # Many reads in flight (a boot environment's stream is hundreds of MB), never past the
                # bound: the size the host states is only believed up to max_bytes.
                source.prefetch(min(source.stat().st_size or 0, max_bytes + 1), max_concurrent_requests=64)
                return copy_bounded(source.read, sink.write, max_bytes, f"{self.target.name}:{remote}")
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TransportError(f"{self.target.name}: copying {for_terminal(remote, 120)} failed: {exc}") from None

    def fetch(self, command: str, local: str, max_bytes: int, timeout: float = 300.0, large: bool = False) -> int:
        """The standard output of ``command`` streamed into a new private file ``local``, at most
        ``max_bytes``; ``timeout`` is how long the stream may stall. A command that fails (or says
        nothing of how it ended) is a :class:`TransportError` naming its exit status.

        A ``large`` stream goes through the system's ``ssh`` where it can (1.6x as fast:
        :mod:`recovery.transport.openssh`), after this session has checked the host key; anything
        else through a channel of this session, which saves ``ssh`` its own login (a second or more
        on a slow host, more than a small increment takes to copy)."""
        from recovery.transport import openssh  # it builds on this module's target and errors

        if large and openssh.usable_for(self.target):
            self.open()
            return openssh.fetch(self.target, command, local, max_bytes, timeout)
        channel = self.channel(command)
        what = f"{self.target.name}: {for_terminal(command, 120)}"
        try:
            channel.shutdown_write()
            channel.settimeout(timeout)
            with private_file(local) as sink:
                copied = copy_bounded(channel.recv, sink.write, max_bytes, what)
            code = channel.recv_exit_status()
            errors = channel.recv_stderr(4096) if channel.recv_stderr_ready() else b""
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise TransportError(f"{what}: the stream broke off: {exc}") from None
        finally:
            channel.close()
        if code != 0:
            raise TransportError(f"{what}: exit {code}: {for_terminal(errors, 300)}", transient=False)
        return copied

    def close(self) -> None:
        self._conn.close()
        if self._conn.gateway:
            self._conn.gateway.close()

    def __enter__(self) -> "SshSession":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class SshChannel:
    """A program on an SSH exec channel (see :mod:`recovery.transport.channel`)."""

    def __init__(self, channel: paramiko.Channel, farewell: bytes, host: str) -> None:
        self._channel, self._farewell, self._host = channel, farewell, host
        self._ended = False

    def send(self, data: bytes) -> None:
        if self.closed:
            raise ChannelClosed(f"{self._host}: the channel's program has ended")
        try:
            self._channel.sendall(data)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._ended = True
            raise ChannelClosed(f"{self._host}: channel lost: {exc}") from None

    def receive(self, timeout: float) -> bytes:
        if self._ended:
            raise ChannelClosed(f"{self._host}: the channel's program has ended")
        self._channel.settimeout(max(timeout, 0.001))
        try:
            data = self._channel.recv(65536)
        except socket.timeout:
            return b""
        except (OSError, paramiko.SSHException, EOFError) as exc:
            data, why = b"", f"channel lost: {exc}"
        else:
            why = "the channel's program has ended"
        if not data:
            self._ended = True
            raise ChannelClosed(f"{self._host}: {why}")
        return data

    @property
    def closed(self) -> bool:
        return self._ended or self._channel.closed or self._channel.exit_status_ready()

    def close(self) -> None:
        try:
            if self._farewell and not self.closed:
                self._channel.sendall(self._farewell)
        except (OSError, paramiko.SSHException, EOFError):
            pass
        finally:
            self._ended = True
            self._channel.close()


def _no_delay(transport: paramiko.Transport | None) -> None:
    """Small request packets go out at once; with Nagle each new channel waited ~40 ms for an ACK."""
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _pump(channel: paramiko.Channel, out: CappedBuffer, err: CappedBuffer,
          deadline: float, host: str, command: str) -> None:
    """Drain stdout and stderr until the command exits or the deadline passes."""
    while True:
        while channel.recv_ready():
            out.write(channel.recv(65536))
        while channel.recv_stderr_ready():
            err.write(channel.recv_stderr(65536))
        if channel.exit_status_ready() and not (channel.recv_ready() or channel.recv_stderr_ready()):
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransportError(
                f"{host}: command did not finish within its timeout: {for_terminal(command, 60)}"
            )
        select.select([channel], [], [], min(remaining, 0.5))
