"""The playbook: an ordered list of declarative steps and the order hosts go through them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from recovery.config.base import Name, Strict

OnFailure = Literal["stop", "continue", "skip-host"]


class Order(Strict):
    """Which hosts go through the per-host steps together.

    ``serial = 1`` takes hosts one by one (as in the 2009 recovery); ``serial = N``
    in batches of N; ``priority`` lists groups of host names that go first, in
    that order (hosts not listed follow). Within a batch hosts run in parallel.
    """

    serial: int = Field(1, ge=1)
    priority: list[list[Name]] = Field(default_factory=list)


class Step(Strict):
    kind: Name
    name: Name | None = Field(None, description="Unique step name; defaults to the kind.")
    targets: list[Name] = Field(
        default_factory=list,
        description="Hosts or groups this step applies to (default: every host of the run).",
    )
    params: dict[str, Any] = Field(default_factory=dict)
    confirm: bool = Field(False, description="Destructive: the operator must type the target name.")
    timeout: float = Field(300.0, gt=0, description="Seconds for one attempt.")
    retries: int = Field(0, ge=0, le=20)
    retry_wait: float = Field(2.0, ge=0, description="Seconds before the first retry (doubles).")
    on_failure: OnFailure = "skip-host"
    serial: int | None = Field(None, ge=1, description="Override the playbook's order.serial.")

    @property
    def id(self) -> str:
        return self.name or self.kind


class Playbook(Strict):
    description: str = ""
    order: Order = Field(default_factory=Order)
    steps: list[Step] = Field(min_length=1)
