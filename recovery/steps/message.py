"""`message`: tell the operator something at this point of the run (journaled)."""

from __future__ import annotations

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import StepContext, StepKind, StepOutputs, register


class MessageParams(Strict):
    text: str = Field(min_length=1)


class MessageOutputs(StepOutputs):
    text: str = ""


@register
class MessageStep(StepKind):
    kind = "message"
    scope = "run"
    summary = "show a message to the operator"
    Params = MessageParams
    Outputs = MessageOutputs
    repeatable = True

    def describe(self, params: MessageParams) -> str:
        return f"message: {params.text[:60]}"

    def apply(self, ctx: StepContext) -> MessageOutputs:
        ctx.note(ctx.params.text)
        return MessageOutputs(text=ctx.params.text)
