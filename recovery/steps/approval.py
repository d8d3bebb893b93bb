"""`approval`: the run pauses until the operator acknowledges (or `--yes` was given)."""

from __future__ import annotations

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import StepContext, StepFailed, StepKind, StepOutputs, register


class ApprovalParams(Strict):
    text: str = Field(min_length=1, description="What the operator approves.")


class ApprovalOutputs(StepOutputs):
    approved: bool = False


@register
class ApprovalStep(StepKind):
    kind = "approval"
    scope = "run"
    summary = "wait for the operator's approval"
    Params = ApprovalParams
    Outputs = ApprovalOutputs
    repeatable = True  # asking again is always safe

    def describe(self, params: ApprovalParams) -> str:
        return f"approval: {params.text[:60]}"

    def apply(self, ctx: StepContext) -> ApprovalOutputs:
        if not ctx.acknowledge(ctx.params.text):
            raise StepFailed("not approved by the operator")
        return ApprovalOutputs(approved=True)
