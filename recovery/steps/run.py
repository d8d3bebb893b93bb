"""`run`: a shell command on the host, with an expected exit code and an optional check."""

from __future__ import annotations

import hashlib

from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import Check, StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.hostile import for_terminal


class RunParams(Strict):
    command: str = Field(min_length=1)
    expect_exit: list[int] = Field(default_factory=lambda: [0])
    unless: str | None = Field(
        None, description="Check command: exit 0 means the step's effect is already there."
    )


class RunOutputs(StepOutputs):
    exit_code: int | None = None
    duration: float = 0.0
    stdout_sha256: str = ""
    stdout: str = ""  # for_terminal-safe excerpt
    stderr: str = ""
    truncated: bool = False


@register
class RunStep(StepKind):
    kind = "run"
    summary = "run a command on the host"
    Params = RunParams
    Outputs = RunOutputs

    def describe(self, params: RunParams) -> str:
        return f"run: {params.command}"

    def check(self, ctx: StepContext) -> Check:
        params: RunParams = ctx.params
        if params.unless is None:
            return Check.UNKNOWN
        result = ctx.here.session().run(params.unless, timeout=ctx.timeout)
        return Check.DONE if result.exit_code == 0 else Check.NOT_DONE

    def apply(self, ctx: StepContext) -> RunOutputs:
        params: RunParams = ctx.params
        result = ctx.here.session().run(params.command, timeout=ctx.timeout)
        outputs = RunOutputs(
            exit_code=result.exit_code,
            duration=round(result.duration, 3),
            stdout_sha256=hashlib.sha256(result.stdout).hexdigest(),
            stdout=for_terminal(result.stdout, 500),
            stderr=for_terminal(result.stderr, 500),
            truncated=result.truncated,
        )
        if result.exit_code not in params.expect_exit:
            raise StepFailed(
                f"exit code {result.exit_code} (expected {', '.join(map(str, params.expect_exit))}); "
                f"stderr: {outputs.stderr or '(empty)'}"
            )
        return outputs
