"""`contain`: cut the host off through out-of-band control before anything else touches it.

A compromised OS may ignore a graceful shutdown (or use the time to cover its
tracks), so the default is to cut the power at once; `graceful = true` asks
first and forces after `grace` seconds.
"""

from __future__ import annotations


from pydantic import Field

from recovery.config.base import Strict
from recovery.engine.registry import Check, StepContext, StepKind, StepOutputs, register
from recovery.oob.base import OobDriver, OobTimeout, PowerState


class ContainParams(Strict):
    graceful: bool = Field(False, description="Ask the OS to shut down first.")
    grace: float = Field(60.0, gt=0, description="Seconds to wait for a graceful shutdown.")


class ContainOutputs(StepOutputs):
    power: str = "off"
    forced: bool = False


@register
class ContainStep(StepKind):
    kind = "contain"
    summary = "power the host off through out-of-band control"
    Params = ContainParams
    Outputs = ContainOutputs

    def check(self, ctx: StepContext) -> Check:
        return Check.DONE if ctx.here.driver().power_state() is PowerState.OFF else Check.NOT_DONE

    def apply(self, ctx: StepContext) -> ContainOutputs:
        driver = ctx.here.driver()
        forced = self._power_off(ctx, driver)
        driver.wait_power(PowerState.OFF, ctx.timeout)
        return ContainOutputs(forced=forced)

    def _power_off(self, ctx: StepContext, driver: OobDriver) -> bool:
        if ctx.params.graceful:
            driver.power_off(graceful=True)
            try:
                driver.wait_power(PowerState.OFF, ctx.params.grace)
                return False
            except OobTimeout:
                ctx.note(f"{ctx.host}: no shutdown within {ctx.params.grace:g} s; cutting the power")
        driver.power_off(graceful=False)
        return True
