"""Free loopback ports for lab servers: everything the lab starts listens on 127.0.0.1 only."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port that is free on 127.0.0.1 for both TCP and UDP right now.

    The kernel picks the TCP port (bind to port 0); UDP is checked too because
    a DNS server needs both. Another process may still take the port before
    the caller binds it, so servers started on it must fail loudly if it is taken.
    """
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
                return port
    raise OSError("no loopback port free for both TCP and UDP after 20 tries")


def is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` (TCP) right now.

    SO_REUSEADDR, as QEMU's user networking binds its forwards: connections of
    the previous boot left in TIME_WAIT do not keep a rebooted guest off its port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((LOOPBACK, port))
        except OSError:
            return False
    return True
