"""Newest-clean bisection: O(log n) diffs, and non-monotonic histories never pass silently."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recovery.zfs.diff import parse_diff
from recovery.zfs.find_clean import (
    NonMonotonicHistory,
    SearchStatus,
    find_newest_clean,
    likely_first_dirty,
    lost_on_restore,
)
from recovery.zfs.triage import Verdict, triage
from tests.support.zfs_output import diff_line


@dataclass(frozen=True)
class Hit:
    path: bytes


class History:
    """Snapshots s0..s(n-1) after golden; ``dirty[i]`` are the indicator paths of si."""

    def __init__(self, dirty: list[set[bytes]]) -> None:
        self.dirty = dirty
        self.names = [f"tank/www@s{i}" for i in range(len(dirty))]
        self.calls: list[str] = []

    def indicators(self, snapshot: str) -> list[Hit]:
        self.calls.append(snapshot)
        return [Hit(p) for p in sorted(self.dirty[self.names.index(snapshot)])]


def monotonic(n: int, first_dirty: int) -> History:
    return History([set() if i < first_dirty else {b"/srv/www/cgi-bin/x.cgi"} for i in range(n)])


def test_finds_the_newest_clean_snapshot() -> None:
    history = monotonic(10, 6)
    result = find_newest_clean("tank/www@golden", history.names, history.indicators, [Hit(b"/srv/www/cgi-bin/x.cgi")])
    assert result.status is SearchStatus.CLEAN_FOUND
    assert (result.clean, result.successor) == ("tank/www@s5", "tank/www@s6")
    assert [h.path for h in result.successor_indicators] == [b"/srv/www/cgi-bin/x.cgi"]
    assert result.require_trustworthy() == "tank/www@s5"


def test_all_clean_picks_the_newest_and_the_incident_is_the_successor() -> None:
    history = monotonic(5, 5)
    result = find_newest_clean("g", history.names, history.indicators, [Hit(b"/etc/shadow")])
    assert result.status is SearchStatus.CLEAN_FOUND
    assert (result.clean, result.successor) == ("tank/www@s4", None)
    assert [h.path for h in result.successor_indicators] == [b"/etc/shadow"]


def test_none_clean_falls_back_to_golden() -> None:
    history = monotonic(5, 0)
    result = find_newest_clean("tank/www@golden", history.names, history.indicators)
    assert result.status is SearchStatus.ONLY_GOLDEN_CLEAN
    assert (result.clean, result.successor) == ("tank/www@golden", "tank/www@s0")


@pytest.mark.parametrize(("first_dirty", "clean"), [(0, "g"), (1, "tank/www@s0")])
def test_single_snapshot(first_dirty: int, clean: str) -> None:
    history = monotonic(1, first_dirty)
    result = find_newest_clean("g", history.names, history.indicators)
    assert result.clean == clean and result.diff_calls == 1 == len(history.calls)


def test_no_snapshots_after_golden() -> None:
    result = find_newest_clean("g", [], lambda s: [])
    assert result.clean == "g" and result.diff_calls == 0


def test_clean_incident_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to restore"):
        find_newest_clean("g", ["s"], lambda s: [], incident=[])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 100, 256, 1000])
def test_diff_calls_are_logarithmic(n: int) -> None:
    bound = math.ceil(math.log2(n + 1))
    for first_dirty in {0, 1, n // 3, n // 2, n - 1, n}:
        history = monotonic(n, first_dirty)
        result = find_newest_clean("g", history.names, history.indicators)
        assert len(history.calls) == result.diff_calls <= bound
        assert len(set(history.calls)) == len(history.calls)  # each snapshot diffed once at most
    if n == 256:
        assert bound <= 9


@pytest.mark.parametrize("probes", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 6, 8, 26, 256])
def test_probes_side_by_side_take_fewer_rounds_for_a_few_more_diffs(n: int, probes: int) -> None:
    """k probes a round: at most ceil(log_(k+1)(n + 1)) rounds, k diffs each, same answer as bisection."""
    rounds_bound = math.ceil(math.log(n + 1, probes + 1) - 1e-9)
    for first_dirty in range(n + 1):
        history, rounds = monotonic(n, first_dirty), []

        def each(work: object, items: list[str]) -> list[object]:
            rounds.append(list(items))
            return [work(item) for item in items]  # type: ignore[operator]

        result = find_newest_clean("g", history.names, history.indicators, probes=probes, side_by_side=each)
        assert result.clean == (history.names[first_dirty - 1] if first_dirty else "g")
        assert len(rounds) <= rounds_bound and all(1 <= len(r) <= probes for r in rounds)
        assert len(set(history.calls)) == len(history.calls) == result.diff_calls <= probes * rounds_bound
    if (n, probes) == (6, 2):
        assert rounds_bound == 2 < math.ceil(math.log2(n + 1))  # the lab's six snapshots: 2 rounds, not 3


@pytest.mark.parametrize("probes", [1, 2])
@pytest.mark.parametrize("first_dirty", range(7))
def test_the_round_that_decides_is_announced_with_the_snapshots_still_possible(probes: int, first_dirty: int) -> None:
    """`last_round` hears, before the deciding round, every snapshot that can still be the clean one
    (so what restoring gives up can be triaged beside it); the answer is always among them."""
    history, heard = monotonic(6, first_dirty), []
    result = find_newest_clean("g", history.names, history.indicators, probes=probes, last_round=heard.append)
    assert len(heard) <= 1
    if heard:
        assert result.clean in heard[0] and len(heard[0]) <= probes + 1
        assert heard[0] == sorted(heard[0], key=lambda s: -1 if s == "g" else history.names.index(s))
    assert heard or (probes, first_dirty) in {(1, 6), (1, 4), (1, 2), (1, 0)}, "announced in most searches"


def rounds_of(history: History, **options: object) -> tuple[str, list[list[str]], list[list[str]]]:
    """The search's clean snapshot, its rounds (the snapshots each diffed) and what `last_round` heard."""
    rounds: list[list[str]] = []
    heard: list[list[str]] = []

    def each(work: object, items: list[str]) -> list[object]:
        rounds.append(list(items))
        return [work(item) for item in items]  # type: ignore[operator]

    result = find_newest_clean("g", history.names, history.indicators, side_by_side=each,
                               last_round=lambda c: heard.append(list(c)), **options)  # type: ignore[arg-type]
    return result.clean, rounds, heard


@pytest.mark.parametrize("n", [1, 6, 256])
def test_a_right_hint_decides_in_one_round_of_two_diffs(n: int) -> None:
    for first_dirty in {0, 1, n // 2, n - 1, n}:
        clean, rounds, heard = rounds_of(monotonic(n, first_dirty), hint=first_dirty)
        assert clean == (f"tank/www@s{first_dirty - 1}" if first_dirty else "g")
        assert len(rounds) == 1 and 1 <= len(rounds[0]) <= 2
        assert heard == [[clean]]  # what restoring it gives up can be triaged in that same round


@pytest.mark.parametrize("probes", [1, 2])
@pytest.mark.parametrize("n", [1, 2, 6, 9])
def test_any_hint_right_or_wrong_gives_the_answer_bisection_gives(n: int, probes: int) -> None:
    """A wrong hint (an intruder's clock) costs its own round and nothing else: the diffs decide."""
    bound = 1 + math.ceil(math.log(n + 1, probes + 1) - 1e-9)
    for first_dirty in range(n + 1):
        for hint in range(-1, n + 2):  # out of range: no hint round
            history = monotonic(n, first_dirty)
            clean, rounds, _ = rounds_of(history, hint=hint, probes=probes)
            assert clean == (history.names[first_dirty - 1] if first_dirty else "g")
            assert len(rounds) <= bound and len(set(history.calls)) == len(history.calls)


def test_the_hint_is_the_first_snapshot_made_after_the_earliest_indicator_changed() -> None:
    created = [100, 160, 220, 280]
    assert likely_first_dirty(created, [Decimal("230.5"), Decimal("170.25")]) == 2
    assert likely_first_dirty(created, [Decimal("160.0")]) == 2  # the snapshot of that second may precede it
    assert likely_first_dirty(created, [Decimal("99.9")]) == 0
    assert likely_first_dirty(created, [Decimal(300)]) == 4  # after the newest: every snapshot clean
    assert likely_first_dirty(created, []) is None


def test_probes_must_be_one_or_more() -> None:
    with pytest.raises(ValueError, match="probes"):
        find_newest_clean("g", ["s"], lambda s: [], probes=0)


def test_attacker_cleanup_between_intrusions() -> None:
    """s3 gets a backdoor, s4 the attacker tidies up, s6 a second drop.

    Bisection never looks at s3, so only the exhaustive mode can see it; it
    then refuses to vouch for the candidate.
    """
    a, b = b"/srv/www/cgi-bin/a.cgi", b"/etc/cron.d/b"
    history = History([set(), set(), set(), {a}, set(), set(), {b}, {b}])
    sampled = find_newest_clean("g", history.names, history.indicators, [Hit(b)])
    assert sampled.clean == "tank/www@s5" and "tank/www@s3" not in sampled.examined
    proven = find_newest_clean("g", history.names, history.indicators, [Hit(b)], exhaustive=True)
    assert proven.status is SearchStatus.NON_MONOTONIC and proven.diff_calls == 8
    assert any("tank/www@s3 has indicators before" in p for p in proven.problems)
    with pytest.raises(NonMonotonicHistory):
        proven.require_trustworthy()


def test_clean_snapshot_after_the_boundary_is_reported() -> None:
    history = History([set(), set(), {b"/x"}, set(), {b"/x"}])
    result = find_newest_clean("g", history.names, history.indicators, exhaustive=True)
    assert result.status is SearchStatus.NON_MONOTONIC and result.clean == "tank/www@s1"
    assert any("tank/www@s3 is clean after" in p for p in result.problems)


def test_exhaustive_on_a_monotonic_history_agrees() -> None:
    history = monotonic(20, 13)
    result = find_newest_clean("g", history.names, history.indicators, exhaustive=True)
    assert result.status is SearchStatus.CLEAN_FOUND and result.clean == "tank/www@s12"
    assert result.diff_calls == 20


def test_indicator_vanishing_before_the_incident_is_reported() -> None:
    history = History([set(), {b"/usr/local/bin/telnetd"}, {b"/usr/local/bin/telnetd"}])
    result = find_newest_clean("g", history.names, history.indicators, [Hit(b"/etc/cron.d/x")])
    assert result.status is SearchStatus.NON_MONOTONIC
    assert "/usr/local/bin/telnetd" in result.problems[0] and "incident" in result.problems[0]


def test_boundary_is_checked_even_for_a_flaky_indicator_function() -> None:
    """A diff that answers differently when asked again cannot slip through the boundary check."""
    answers = {"s0": [[], []], "s1": [[Hit(b"/x")], []]}

    def flaky(snapshot: str) -> list[Hit]:
        return answers[snapshot].pop(0)

    result = find_newest_clean("g", ["s0", "s1"], flaky)
    assert result.clean == "s0" and result.status is SearchStatus.CLEAN_FOUND  # cached: one answer per snapshot


@settings(max_examples=200)
@given(st.lists(st.sets(st.sampled_from([b"/a", b"/b", b"/c"]), max_size=2), min_size=1, max_size=40))
def test_any_history_is_either_right_or_flagged(dirty: list[set[bytes]]) -> None:
    """Over arbitrary histories the answer is the true newest clean snapshot, or NON_MONOTONIC."""
    history = History(dirty)
    incident = [Hit(b"/a")]
    result = find_newest_clean("g", history.names, history.indicators, incident)
    assert result.diff_calls <= math.ceil(math.log2(len(dirty) + 1))
    truly_monotonic = all(
        not dirty[i] or dirty[i] <= dirty[j] for i in range(len(dirty)) for j in range(i + 1, len(dirty))
    ) and all(d <= {b"/a"} for d in dirty)
    if truly_monotonic:
        expected = max((i for i, d in enumerate(dirty) if not d and not any(dirty[:i])), default=None)
        assert result.status is not SearchStatus.NON_MONOTONIC
        assert result.clean == ("g" if expected is None else history.names[expected])
    if result.status is not SearchStatus.NON_MONOTONIC and result.clean != "g":
        assert not dirty[history.names.index(result.clean)]
    exhaustive = find_newest_clean("g", history.names, History(dirty).indicators, incident, exhaustive=True)
    assert (exhaustive.status is not SearchStatus.NON_MONOTONIC) == truly_monotonic
    two = find_newest_clean("g", history.names, History(dirty).indicators, incident, probes=2)
    if truly_monotonic:
        assert (two.status, two.clean) == (result.status, result.clean)
    if two.status is not SearchStatus.NON_MONOTONIC and two.clean != "g":
        assert not dirty[history.names.index(two.clean)]


def test_lost_on_restore_lists_legitimate_changes_only() -> None:
    out = (
        diff_line("+", "F", b"/srv/www/site/news.html")
        + diff_line("M", "F", b"/var/log/apache2/access.log")
        + diff_line("M", "F", b"/etc/hostname")
        + diff_line("+", "F", b"/srv/www/cgi-bin/shell.cgi")
        + diff_line("+", "F", b"/srv/www/site/about.html")
    )
    lost = lost_on_restore(triage(parse_diff(out).changes))
    assert [f.path for f in lost.benign] == [b"/srv/www/site/about.html", b"/srv/www/site/news.html"]
    assert [f.path for f in lost.churn] == [b"/var/log/apache2/access.log"]
    assert [f.path for f in lost.suspicious] == [b"/etc/hostname"]
    assert lost.count == 4
    assert all(f.verdict is not Verdict.INDICATOR for f in lost.benign + lost.suspicious + lost.churn)
