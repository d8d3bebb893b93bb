"""Traffic driver for any other system: operator-supplied divert, restore and verification commands.

The commands run locally as argv lists (never through a shell). The
verification command is told which routing to check in the environment
variable ``RECOVERY_TRAFFIC`` (``diverted`` or ``normal``) and exits 0 only
if the system routes that way; it is how :meth:`CommandDriver.state` reads
the routing, and how a change is confirmed.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from recovery.hostile import OUTPUT_CAP, for_terminal
from recovery.traffic.base import (
    TrafficConflict,
    TrafficError,
    TrafficRefused,
    TrafficState,
    TrafficUnverified,
)
from recovery.transport.result import Result

DIVERTED = "diverted"
NORMAL = "normal"
ENV_VAR = "RECOVERY_TRAFFIC"
POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class CommandTraffic:
    """The commands for one service; ``name`` labels it in states and errors."""

    name: str
    divert: tuple[str, ...]
    restore: tuple[str, ...]
    verify: tuple[str, ...]
    timeout: float = 30.0
    verify_timeout: float = 10.0


class CommandDriver:
    """Runs a service's commands and reports its routing as ``diverted`` or ``normal``."""

    def __repr__(self) -> str:
        return "CommandDriver()"

    def state(self, service: CommandTraffic) -> TrafficState:
        for routing in (DIVERTED, NORMAL):
            if _run(service, service.verify, routing).ok:
                return _state(service, routing)
        raise TrafficError(f"{_target(service)}: verification says neither {DIVERTED} nor {NORMAL}")

    def divert(self, service: CommandTraffic, expected: TrafficState) -> TrafficState:
        return self._apply(service, expected, DIVERTED, service.divert)

    def restore(self, service: CommandTraffic, expected: TrafficState, wanted: TrafficState) -> TrafficState:
        routing = dict(wanted.routes).get(service.name, NORMAL)
        return self._apply(service, expected, routing, service.restore if routing == NORMAL else service.divert)

    def _apply(
        self, service: CommandTraffic, expected: TrafficState, routing: str, argv: tuple[str, ...]
    ) -> TrafficState:
        current = self.state(service)
        if current.same_routes(_state(service, routing)):
            return current
        if not current.same_routes(expected):
            raise TrafficConflict(
                f"{_target(service)}: routing changed since the plan saw {expected.describe()}: "
                f"now {current.describe()}; nothing was changed"
            )
        result = _run(service, argv, routing)
        if not result.ok:
            raise TrafficRefused(
                f"{_target(service)}: {argv[0]} exited with {result.exit_code}: {for_terminal(result.stderr, 500)}"
            )
        return self._verify(service, routing)

    def _verify(self, service: CommandTraffic, routing: str) -> TrafficState:
        deadline = time.monotonic() + service.verify_timeout
        while not _run(service, service.verify, routing).ok:
            if time.monotonic() >= deadline:
                raise TrafficUnverified(
                    f"{_target(service)}: verification did not confirm {routing} within {service.verify_timeout:.0f} s"
                )
            time.sleep(POLL_INTERVAL)
        return _state(service, routing)


def _run(service: CommandTraffic, argv: tuple[str, ...], routing: str) -> Result:
    """Run one command with the routing it is about; a missing program or a hang is an error."""
    if not argv:
        raise TrafficError(f"{_target(service)}: empty command")
    env = {**os.environ, ENV_VAR: routing}
    started = time.monotonic()
    try:
        done = subprocess.run(
            list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=service.timeout
        )
    except subprocess.TimeoutExpired:
        raise TrafficError(f"{_target(service)}: {argv[0]} did not finish within {service.timeout:.0f} s") from None
    except OSError as exc:
        raise TrafficError(f"{_target(service)}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    return Result(
        stdout=done.stdout[:OUTPUT_CAP],
        stderr=done.stderr[:OUTPUT_CAP],
        exit_code=done.returncode,
        duration=time.monotonic() - started,
        truncated=max(len(done.stdout), len(done.stderr)) > OUTPUT_CAP,
    )


def _state(service: CommandTraffic, routing: str) -> TrafficState:
    return TrafficState.of(_target(service), [(service.name, routing)])


def _target(service: CommandTraffic) -> str:
    return f"command traffic {service.name}"
