"""Secrets are referenced (``env:NAME`` or ``file:/path``), resolved late, and redacted everywhere."""

from __future__ import annotations

import os
import threading
from pathlib import Path


class SecretError(Exception):
    """A referenced secret is missing or unreadable."""


def resolve(ref: str, where: str) -> str:
    """Return the secret a reference points at; ``where`` names the config key for errors.

    The value is registered with :data:`REDACTOR` before it is returned, so it can
    never be written to the journal, a log or a report by accident.
    """
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"{where}: environment variable {name} is not set")
    elif kind == "file":
        try:
            value = Path(name).expanduser().read_text().strip()
        except OSError as exc:
            raise SecretError(f"{where}: cannot read secret file {name}: {exc.strerror}") from None
    else:
        raise SecretError(f"{where}: secret reference {ref!r} must start with 'env:' or 'file:'")
    if not value:
        raise SecretError(f"{where}: secret {ref} is empty")
    REDACTOR.add(value)
    return value


class Redactor:
    """Replaces every known secret value in text or bytes by ``***``."""

    MASK = "***"

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) >= 4:  # shorter values would mask ordinary text
            with self._lock:
                self._values.add(value)

    def text(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, self.MASK)
        return text

    def data(self, data: bytes) -> bytes:
        for value in sorted(self._values, key=len, reverse=True):
            data = data.replace(value.encode(), self.MASK.encode())
        return data


REDACTOR = Redactor()
