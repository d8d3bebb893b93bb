"""`http_check`: an HTTP probe from the commander, by default the host's inventory health checks."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from pydantic import Field

from recovery.config.base import Strict
from recovery.config.inventory import HealthCheck
from recovery.engine.registry import StepContext, StepFailed, StepKind, StepOutputs, register
from recovery.hostile import for_terminal

BODY_CAP = 1024 * 1024


class HttpCheckParams(Strict):
    url: str | None = Field(None, description="Probe this URL instead of the host's health checks.")
    status: int = Field(200, ge=100, le=599)
    contains: str = ""


def probe(check: HealthCheck, timeout: float) -> str | None:
    """None when the check passes, otherwise what was wrong (safe to show)."""
    request = urllib.request.Request(check.url, headers={"User-Agent": "recovery-health"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read(BODY_CAP)
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(BODY_CAP)
    except (urllib.error.URLError, OSError) as exc:
        return f"{check.url}: no answer ({getattr(exc, 'reason', exc)})"
    if status != check.status:
        return f"{check.url}: status {status}, expected {check.status}"
    if check.contains and check.contains.encode() not in body:
        return f"{check.url}: body lacks {check.contains!r} (starts {for_terminal(body, 80)!r})"
    return None


class HttpCheckOutputs(StepOutputs):
    checks: int = 0
    duration: float = 0.0


@register
class HttpCheckStep(StepKind):
    kind = "http_check"
    summary = "probe the host's health checks over HTTP"
    Params = HttpCheckParams
    Outputs = HttpCheckOutputs
    repeatable = True  # a probe changes nothing: always probe afresh

    def describe(self, params: HttpCheckParams) -> str:
        return f"http_check: {params.url}" if params.url else self.summary

    def _checks(self, ctx: StepContext) -> list[HealthCheck]:
        params: HttpCheckParams = ctx.params
        if params.url:
            return [HealthCheck(url=params.url, status=params.status, contains=params.contains)]
        checks = ctx.inventory.hosts[ctx.host].health if ctx.host else []
        if not checks:
            raise StepFailed(f"{ctx.host}: no health checks in the inventory and no 'url' given")
        return checks

    def apply(self, ctx: StepContext) -> HttpCheckOutputs:
        start = time.monotonic()
        problems = [p for c in self._checks(ctx) if (p := probe(c, ctx.timeout))]
        if problems:
            raise StepFailed("; ".join(problems), transient=True)  # a service still starting answers later
        return HttpCheckOutputs(checks=len(self._checks(ctx)), duration=round(time.monotonic() - start, 3))
