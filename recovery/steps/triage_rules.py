"""Triage rules a playbook may add before the defaults (shared by `diff` and `find_clean`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from recovery.config.base import Strict
from recovery.zfs.triage import Rule, RuleError, playbook_rules


class TriageParams(Strict):
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Rules tried before the built-in web-server rules (first match wins).",
    )
    default_rules: bool = True

    @field_validator("rules")
    @classmethod
    def _rules_parse(cls, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            playbook_rules(rules)
        except RuleError as exc:
            raise ValueError(str(exc)) from None
        return rules

    def compiled(self) -> tuple[Rule, ...]:
        return playbook_rules(self.rules, defaults=self.default_rules)
