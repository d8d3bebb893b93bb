"""Secrets are referenced (``env:NAME`` or ``file:/path``), resolved late, and redacted everywhere."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel


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
    """Masks every known secret value, whatever its length, by ``***``.

    Journals and reports must mask a secret *before* serializing (JSON escapes
    ``"``, ``\\`` and non-ASCII letters, so the serialized form no longer holds
    the secret as it was registered) and before cutting text short (a cut can
    leave a prefix readable): :meth:`data` masks inside the values of a data
    structure, :meth:`text` inside plain text.
    """

    MASK = "***"

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Register a secret; even one character is masked (a short password is still a password)."""
        if not value:
            return
        with self._lock:
            self._values.add(value)
            forms = {form for v in self._values for form in _forms(v)}
            self._forms = tuple(sorted(forms, key=len, reverse=True))

    def text(self, text: str) -> str:
        """Plain text with every secret masked, also as it appears escaped inside JSON text."""
        for form in self._forms:
            text = text.replace(form, self.MASK)
        return text

    def data(self, data: Any) -> Any:
        """A copy of ``data`` ready to serialize, with every secret masked inside its strings.

        Dicts (keys too), lists, tuples and sets are walked; a pydantic model is
        walked as its JSON-mode dump; numbers, booleans and None stay as they
        are; anything else becomes ``str()`` first, as ``json.dumps(default=str)`` would.
        """
        if data is None or isinstance(data, (bool, int, float)):
            return data
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, bytes):
            return self._bytes(data)
        if isinstance(data, Mapping):
            return {self.data(key): self.data(value) for key, value in data.items()}
        if isinstance(data, (list, tuple, set, frozenset)):
            return [self.data(item) for item in data]
        if isinstance(data, BaseModel):
            return self.data(data.model_dump(mode="json"))
        return self.text(str(data))

    def _bytes(self, data: bytes) -> bytes:
        for form in self._forms:
            data = data.replace(form.encode("utf-8", errors="surrogateescape"), self.MASK.encode())
        return data


def _forms(value: str) -> set[str]:
    """The secret itself and how it reads inside JSON text (escaped with and without ``ensure_ascii``)."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}


REDACTOR = Redactor()
