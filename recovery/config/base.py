"""Shared pieces of the inventory and playbook models."""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    """A config table: unknown keys are an error that suggests the closest known key."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = {f.alias or name for name, f in cls.model_fields.items()}
            for key in data:
                if key not in allowed:
                    raise ValueError(unknown_key_message(key, allowed))
        return data


def unknown_key_message(key: object, allowed: set[str]) -> str:
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
    return f"unknown key '{key}'{hint}"


_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")


def _check_secret_ref(value: str) -> str:
    if not _REF.match(value):
        raise ValueError(
            "a secret must be a reference 'env:VARIABLE' or 'file:/path', never the secret itself"
        )
    return value


#: A reference to a secret; resolved only when a run needs it (see recovery.secrets).
SecretRef = Annotated[str, AfterValidator(_check_secret_ref)]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"'{value}' is not a valid name (letters, digits, '.', '_', '-')")
    return value


Name = Annotated[str, AfterValidator(_check_name)]
