"""Find the newest clean snapshot by bisection, and say what restoring it gives up.

A snapshot is *clean* when the diff from the golden snapshot to it holds no
indicator. Diffs are the expensive part (seconds each on a real pool), so the
search bisects: O(log n) diffs for n snapshots. A round may examine several
snapshots side by side (``probes``): k probes cut the candidates into k + 1
parts, so fewer rounds wait on the host, for a few more diffs.

Each round waits on the host, so the search may begin where the history
probably turns dirty (``hint``): the first snapshot made after the earliest
indicator changed (:func:`likely_first_dirty`). That round diffs it and the
one before; when the one before is clean and it is dirty the search is done
in one round, otherwise bisection goes on within what the round left. Change
times come from the host and an intruder may set its clock: a wrong hint
costs its two diffs and nothing else, as the diffs alone decide.

Monotonic assumption: once an indicator appears in the history it stays in
every later snapshot (attackers persist; the history is
clean, clean, ..., dirty, dirty). Bisection is only right under that
assumption, so it is checked with what the search already knows, at no extra
diff cost:

- the chosen snapshot must have no indicator and its successor (or the
  incident state, when the chosen one is the newest) must have some;
- every indicator path seen in an earlier dirty snapshot must still be
  present in each later dirty snapshot examined, and in the incident state;
- no examined snapshot may be dirty before the boundary or clean after it.

A failed check means the attack was partly undone or reshaped along the way
(an attacker cleaning up, a second intrusion): the result says
``NON_MONOTONIC`` with the evidence and must not be restored automatically.
Checks cannot see snapshots the bisection never examined: an attack that was
installed and fully removed again between two examined snapshots stays
invisible. ``exhaustive=True`` examines every snapshot (n diffs) and so proves
the assumption instead of sampling it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from recovery.zfs.diff import display_name
from recovery.zfs.triage import Finding, Verdict


class HasPath(Protocol):
    """An indicator, identified across snapshots by its path."""

    @property
    def path(self) -> bytes: ...


SnapshotT = TypeVar("SnapshotT", bound=Hashable)
IndicatorT = TypeVar("IndicatorT", bound=HasPath)
#: How a round's probes are examined: ``work`` on each item, results in order (threads may overlap them).
SideBySide = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


def _one_after_another(work: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    return [work(item) for item in items]


class SearchStatus(enum.Enum):
    CLEAN_FOUND = "clean-found"  # a snapshot after golden is clean; checks passed
    ONLY_GOLDEN_CLEAN = "only-golden-clean"  # the first snapshot after golden is already dirty
    NON_MONOTONIC = "non-monotonic"  # the history broke the assumption: a person must decide


class NonMonotonicHistory(Exception):
    """Raised by :meth:`CleanSearch.require_trustworthy` when the checks failed."""


@dataclass(frozen=True)
class CleanSearch(Generic[SnapshotT, IndicatorT]):
    """Outcome of the newest-clean search, with everything needed to explain it."""

    status: SearchStatus
    clean: SnapshotT  # newest clean snapshot (golden itself when nothing later is clean)
    successor: SnapshotT | None  # first dirty snapshot after it; None when that is the incident state
    successor_indicators: tuple[IndicatorT, ...]
    examined: dict[SnapshotT, tuple[IndicatorT, ...]] = field(repr=False)
    problems: tuple[str, ...] = ()

    @property
    def diff_calls(self) -> int:
        return len(self.examined)

    def require_trustworthy(self) -> SnapshotT:
        """The clean snapshot, or an exception explaining why it cannot be trusted."""
        if self.status is SearchStatus.NON_MONOTONIC:
            raise NonMonotonicHistory("; ".join(self.problems))
        return self.clean


def find_newest_clean(
    golden: SnapshotT,
    snapshots: Sequence[SnapshotT],
    indicators: Callable[[SnapshotT], Iterable[IndicatorT]],
    incident: Iterable[IndicatorT] | None = None,
    exhaustive: bool = False,
    probes: int = 1,
    side_by_side: SideBySide = _one_after_another,
    last_round: Callable[[Sequence[SnapshotT]], None] = lambda candidates: None,
    hint: int | None = None,
) -> CleanSearch[SnapshotT, IndicatorT]:
    """Search ``snapshots`` (oldest first, all after ``golden``) for the newest clean one.

    ``indicators(snapshot)`` diffs golden to the snapshot and triages it; it is
    called once per snapshot examined: at most ceil(log2(n + 1)) times with one
    probe a round, at most k * ceil(log_(k+1)(n + 1)) with ``probes`` = k.
    ``side_by_side(indicators, snapshots)`` examines a round's probes (in order);
    threads make them overlap. ``last_round`` hears the snapshots that can still
    be the clean one (``golden`` among them) as the round that decides starts,
    and the hint's clean one as the hint's round starts: work that needs the
    answer can begin beside it. ``hint`` is the index of the snapshot expected
    to be the first dirty one (``len(snapshots)``: none is); the first round
    examines it and the one before.
    ``incident`` holds the indicators of the live (incident) state, which is
    dirty by premise; given, it takes part in the monotonic checks.
    ``exhaustive`` diffs every snapshot (n diffs) so the assumption is
    proven rather than sampled: for rehearsals and for small histories.
    """
    incident_found = tuple(incident) if incident is not None else None
    if incident_found == ():
        raise ValueError("the incident state has no indicator: there is nothing to restore from")
    if probes < 1:
        raise ValueError(f"probes must be at least 1, not {probes}")
    examined: dict[SnapshotT, tuple[IndicatorT, ...]] = {}

    def examine(indices: Sequence[int]) -> list[bool]:
        unseen = [snapshots[i] for i in indices if snapshots[i] not in examined]
        if unseen:
            examined.update(zip(unseen, (tuple(found) for found in side_by_side(indicators, unseen))))
        return [bool(examined[snapshots[i]]) for i in indices]

    def dirty(index: int) -> bool:
        return examine([index])[0]

    def deciding(low: int, high: int) -> None:
        last_round([snapshots[i - 1] if i else golden for i in range(low, high + 1)])

    first_dirty = _first_true(len(snapshots), examine, probes, deciding, hint)
    if exhaustive:
        examine(range(len(snapshots)))
    problems = _check_boundary(snapshots, first_dirty, dirty)
    problems += _out_of_order(snapshots, examined, first_dirty)
    problems += _vanished(_dirty_chain(snapshots, examined, incident_found))
    clean = snapshots[first_dirty - 1] if first_dirty else golden
    successor = snapshots[first_dirty] if first_dirty < len(snapshots) else None
    successor_found = examined[successor] if successor is not None else incident_found or ()
    status = _status(first_dirty, problems)
    return CleanSearch(status, clean, successor, successor_found, examined, tuple(problems))


def _first_true(count: int, predicate: Callable[[Sequence[int]], list[bool]], probes: int,
                deciding: Callable[[int, int], None], hint: int | None = None) -> int:
    """Smallest index where ``predicate`` holds, ``count`` if none (assumes monotonic).

    A ``hint`` (0..count) makes the first round ask about it and the index
    before it. Each other round asks ``predicate`` about up to ``probes``
    indices at once, spread so that the k + 1 parts they leave are as even as
    can be; ``deciding(low, high)`` is told before the round whose answer is
    the result, one of low..high (and ``deciding(hint, hint)`` before the hint's).
    """
    low, high = 0, count
    if hint is not None and 0 <= hint <= count:
        deciding(hint, hint)
        low, high = _narrowed(low, high, [i for i in (hint - 1, hint) if 0 <= i < count], predicate)
    while low < high:
        picks = _spread(low, high, probes)
        if len(picks) == high - low:
            deciding(low, high)
        low, high = _narrowed(low, high, picks, predicate)
    return low


def _narrowed(low: int, high: int, picks: list[int],
              predicate: Callable[[Sequence[int]], list[bool]]) -> tuple[int, int]:
    """The range the answer is in once ``predicate`` answered about ``picks`` (ascending, in range)."""
    for index, holds in zip(picks, predicate(picks)):
        if holds:
            return low, index
        low = index + 1
    return low, high


def likely_first_dirty(created: Sequence[int], changed: Iterable[Decimal]) -> int | None:
    """Where a history probably turns dirty: the index of the first snapshot made (``created``, in
    seconds, oldest first) after the earliest indicator changed (``changed``: ctimes); ``None``
    without an indicator. A hint for the search's first round, never a verdict."""
    earliest = min(changed, default=None)
    if earliest is None:
        return None
    return next((index for index, when in enumerate(created) if when > earliest), len(created))


def _spread(low: int, high: int, probes: int) -> list[int]:
    """Up to ``probes`` indices in [low, high) cutting its high - low + 1 outcomes into even parts."""
    outcomes = high - low + 1
    parts = min(probes, high - low) + 1
    return sorted({low + -(-part * outcomes // parts) - 1 for part in range(1, parts)})


def _check_boundary(
    snapshots: Sequence[SnapshotT], first_dirty: int, dirty: Callable[[int], bool]
) -> list[str]:
    """The chosen snapshot must be clean and its successor dirty (already known: no new diff)."""
    problems = []
    if first_dirty > 0 and dirty(first_dirty - 1):
        problems.append(f"chosen snapshot {snapshots[first_dirty - 1]} has indicators")
    if first_dirty < len(snapshots) and not dirty(first_dirty):
        problems.append(f"successor {snapshots[first_dirty]} has no indicator")
    return problems


def _out_of_order(
    snapshots: Sequence[SnapshotT], examined: dict[SnapshotT, tuple[IndicatorT, ...]], first_dirty: int
) -> list[str]:
    """Examined snapshots on the wrong side of the boundary: dirty before it, clean after it."""
    problems = []
    for index, snapshot in enumerate(snapshots):
        if snapshot in examined and bool(examined[snapshot]) != (index >= first_dirty):
            state = "has indicators before" if index < first_dirty else "is clean after"
            problems.append(f"snapshot {snapshot} {state} the chosen boundary")
    return problems


def _dirty_chain(
    snapshots: Sequence[SnapshotT],
    examined: dict[SnapshotT, tuple[IndicatorT, ...]],
    incident: tuple[IndicatorT, ...] | None,
) -> list[tuple[object, tuple[IndicatorT, ...]]]:
    """Examined dirty states in history order, ending with the incident state when known."""
    chain: list[tuple[object, tuple[IndicatorT, ...]]] = [(s, examined[s]) for s in snapshots if examined.get(s)]
    if incident is not None:
        chain.append(("the incident state", incident))
    return chain


def _vanished(chain: list[tuple[object, tuple[IndicatorT, ...]]]) -> list[str]:
    """Indicator paths that disappear between consecutive dirty states."""
    problems = []
    for (before, found_before), (after, found_after) in zip(chain, chain[1:]):
        gone = {i.path for i in found_before} - {i.path for i in found_after}
        if gone:
            sample = ", ".join(display_name(p) for p in sorted(gone)[:3])
            problems.append(f"{len(gone)} indicator path(s) in {before} are gone in {after}: {sample}")
    return problems


def _status(first_dirty: int, problems: list[str]) -> SearchStatus:
    if problems:
        return SearchStatus.NON_MONOTONIC
    return SearchStatus.CLEAN_FOUND if first_dirty else SearchStatus.ONLY_GOLDEN_CLEAN


@dataclass(frozen=True)
class LostChanges:
    """Legitimate-looking changes made after the clean snapshot that a restore leaves behind.

    They stay readable in the quarantined dataset, to be salvaged on purpose.
    """

    benign: tuple[Finding, ...]
    suspicious: tuple[Finding, ...]
    churn: tuple[Finding, ...]

    @property
    def count(self) -> int:
        return len(self.benign) + len(self.suspicious) + len(self.churn)


def lost_on_restore(clean_to_incident: Iterable[Finding]) -> LostChanges:
    """Split the triaged diff clean -> incident into what restoring will give up.

    Indicators are left out: losing them is the point of the restore.
    """
    by_verdict: dict[Verdict, list[Finding]] = {v: [] for v in Verdict}
    for finding in clean_to_incident:
        by_verdict[finding.verdict].append(finding)
    return LostChanges(
        benign=tuple(_by_path(by_verdict[Verdict.BENIGN])),
        suspicious=tuple(_by_path(by_verdict[Verdict.SUSPICIOUS])),
        churn=tuple(_by_path(by_verdict[Verdict.CHURN])),
    )


def _by_path(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: f.path)
