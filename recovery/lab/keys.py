"""Lab key material: the operator's key pair and each guest's SSH host key.

Keys are made on the commander side so the commander knows every guest's host
key before the guest boots and can pin it (never trust on first use).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only, atomically, so no half key is ever read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def generate_ed25519(path: Path, comment: str) -> str:
    """Create an OpenSSH ed25519 key pair at ``path`` and ``path.pub``; return the public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    line = f"{public} {comment}\n"
    write_private(path, private)
    path.with_name(path.name + ".pub").write_text(line)
    return line


def ensure_ed25519(path: Path, comment: str) -> str:
    """The key pair at ``path``, generated the first time: the operator keeps one identity."""
    pub = path.with_name(path.name + ".pub")
    if path.exists() and pub.exists():
        return pub.read_text()
    return generate_ed25519(path, comment)


def ensure_password(path: Path) -> Path:
    """A random root password stored at ``path`` (mode 0600), generated the first time."""
    if not path.exists():
        write_private(path, (secrets.token_urlsafe(18) + "\n").encode())
    return path
