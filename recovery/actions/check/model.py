"""The result of `recover check`: items per host or service, their worst status, the exit code, the JSON shape."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

from recovery.engine.exit_codes import Exit
from recovery.hostile import for_terminal


class Status(str, enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True)
class Item:
    """One readiness item on one host (or service): what was found and, unless PASS, how to fix it.

    ``detail`` may quote a host: it is made safe for a terminal when the item is made.
    """

    name: str
    status: Status
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", for_terminal(self.detail, 600, newlines=False))


def passed(name: str, detail: str) -> Item:
    return Item(name, Status.PASS, detail)


def warned(name: str, detail: str, fix: str) -> Item:
    return Item(name, Status.WARN, detail, fix)


def failed(name: str, detail: str, fix: str) -> Item:
    return Item(name, Status.FAIL, detail, fix)


def waived(item: Item, why: str) -> Item:
    """A FAIL the inventory accepts for this host (``check.waive``): shown as WARN, with the reason."""
    if item.status is not Status.FAIL:
        return item
    return replace(item, status=Status.WARN, detail=f"waived ({why}): {item.detail}")


@dataclass
class Subject:
    """A host or a service and its items, in the order they were checked."""

    kind: str  # "host" | "service"
    name: str
    items: list[Item] = field(default_factory=list)


@dataclass
class Report:
    target: str
    subjects: list[Subject]
    deep: bool = False

    def items(self) -> list[tuple[Subject, Item]]:
        return [(subject, item) for subject in self.subjects for item in subject.items]

    def count(self, status: Status) -> int:
        return sum(item.status is status for _, item in self.items())

    @property
    def status(self) -> Status:
        return max((item.status for _, item in self.items()), key=_RANK.__getitem__, default=Status.PASS)

    def failures(self) -> list[str]:
        """``subject:item`` of every FAIL: what `recover TARGET` names when it refuses to start."""
        return [f"{subject.name}:{item.name}" for subject, item in self.items() if item.status is Status.FAIL]

    def exit_code(self) -> Exit:
        return {Status.PASS: Exit.OK, Status.WARN: Exit.CHECK_WARN, Status.FAIL: Exit.FAILED}[self.status]

    def as_json(self) -> dict[str, Any]:
        """The documented `recover check --json` shape (README): stable keys, one entry per subject."""
        return {
            "target": self.target, "deep": self.deep, "status": self.status.value,
            "exit_code": int(self.exit_code()),
            "counts": {status.value: self.count(status) for status in Status},
            "subjects": [{"kind": s.kind, "name": s.name,
                          "items": [{"name": i.name, "status": i.status.value, "detail": i.detail, "fix": i.fix}
                                    for i in s.items]} for s in self.subjects],
        }
