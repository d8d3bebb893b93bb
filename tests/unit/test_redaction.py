"""Secrets of any length and alphabet are masked before serialization and before truncation."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from recovery.hostile import for_terminal
from recovery.secrets import REDACTOR, Redactor

SECRETS = ['pa"ss', "back\\slash", "gehéim", "Zq"]


@pytest.fixture
def redactor() -> Redactor:
    fresh = Redactor()
    for secret in SECRETS:
        fresh.add(secret)
    return fresh


def serialized_forms(secret: str) -> list[str]:
    return [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]


class Outputs(BaseModel):
    key: str


def record() -> dict[str, object]:
    return {
        "error": 'login failed for pa"ss and back\\slash',
        "nested": [{"password": "gehéim"}, ("Zq", 3, None, True, 1.5)],
        "key Zq": {"set": {"Zq"}},
        "model": Outputs(key="xZqx"),
        "bytes": b"token=" + "gehéim".encode(),
    }


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_no_secret_survives_serialization_of_redacted_data(redactor: Redactor, ensure_ascii: bool) -> None:
    data = redactor.data(record())
    stored = json.dumps(data, sort_keys=True, ensure_ascii=ensure_ascii, default=str)
    json.loads(stored)  # still valid JSON, even with a two-character secret masked everywhere
    for secret in SECRETS:
        for form in serialized_forms(secret):
            assert form not in stored, (secret, form)
    assert data["nested"][1][1:] == [3, None, True, 1.5]  # non-strings are untouched


def test_short_secret_is_masked_inside_strings_not_around_them(redactor: Redactor) -> None:
    assert redactor.data({"note": "aZqb", "n": 7}) == {"note": "a***b", "n": 7}


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_text_also_masks_secrets_inside_json_text(redactor: Redactor, ensure_ascii: bool) -> None:
    text = redactor.text(json.dumps({"e": SECRETS[:3]}, ensure_ascii=ensure_ascii))
    assert all(form not in text for secret in SECRETS[:3] for form in serialized_forms(secret))


def test_terminal_text_is_masked_before_it_is_cut_or_escaped() -> None:
    secret = "cut-me-\x07-secret"
    REDACTOR.add(secret)
    shown = for_terminal("x" * 95 + secret, limit=100)
    assert "cut-me" not in shown and "secret" not in shown
