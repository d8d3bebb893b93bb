"""`approval`: the run pauses until the operator acknowledges (or `--yes` was given)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import StepContext, StepFailed, StepKind, register


class ApprovalParams(Strict):
    text: str = Field(min_length=1, description="What the operator approves.")


@register
class ApprovalStep(StepKind):
    kind = "approval"
    scope = "run"
    summary = "wait for the operator's approval"
    Params = ApprovalParams
    repeatable = True  # asking again is always safe

    def describe(self, params: ApprovalParams) -> str:
        return f"approval: {params.text[:60]}"

    def apply(self, ctx: StepContext) -> dict[str, Any]:
        if not ctx.acknowledge(ctx.params.text):
            raise StepFailed("not approved by the operator")
        return {"approved": True}
