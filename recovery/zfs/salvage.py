"""Copy chosen files from a quarantined evidence snapshot back into the restored dataset.

The evidence snapshot is mounted read-only in a temporary directory (no
property of the quarantine changes), each file is copied with its mode and
times, and the snapshot is unmounted again. The same read-only mount serves
anyone who must look inside evidence without touching it.

Salvage fails closed. Whether a path may be copied without ``--force`` is
decided by its exact bytes against the diff's findings (:func:`classify_for_salvage`):
a display name is escaped and may be cut, so two names can look alike in it.
The evidence is the intruder's work, so the copy never follows a symlink on
the way to a path (a link is copied as a link), and set-uid/set-gid bits are
stripped from everything it wrote.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from recovery.hostile import for_terminal
from recovery.transport.result import Result
from recovery.zfs.diff import display_name
from recovery.zfs.triage import Verdict


class Transport(Protocol):
    def run(self, command: str, timeout: float) -> Result: ...


class SalvageError(Exception):
    pass


#: Classes besides the triage verdicts ("indicator", "suspicious", "benign", "churn").
UNCLASSIFIED = "unclassified"  # no finding of the diff names this exact path
BELOW_INDICATOR = "below-indicator"  # inside a directory that is an indicator itself
HOLDS_INDICATOR = "holds-indicator"  # a directory with an indicator somewhere inside
#: Classes that are salvaged only with ``--force``, and why.
NEEDS_FORCE = {
    "indicator": "is an indicator of compromise",
    BELOW_INDICATOR: "lies inside a directory that is an indicator of compromise",
    HOLDS_INDICATOR: "is a directory holding an indicator of compromise",
    UNCLASSIFIED: "was not classified by this run's diff (not among its listed findings, or listed "
                  "without its exact name)",
}


def classify_for_salvage(findings: Iterable[Any], paths: Iterable[bytes]) -> dict[bytes, str]:
    """Each path's salvage class, matched by exact bytes against the diff step's findings.

    ``findings`` are the diff step's journaled findings (mappings or objects)
    with ``path_b64`` (exact bytes, see :attr:`recovery.zfs.triage.Finding.path_b64`)
    and ``verdict``; one without a decodable ``path_b64`` vouches for nothing.
    ``paths`` are the operator's paths as bytes (``os.fsencode`` of argv).
    """
    verdicts: dict[bytes, str] = {}
    for finding in findings:
        raw = _raw_path(finding)
        verdict = _field(finding, "verdict")
        verdict = verdict.value if isinstance(verdict, Verdict) else verdict
        if raw is not None and isinstance(verdict, str) and verdicts.get(raw) != "indicator":
            verdicts[raw] = verdict
    bad = [path for path, verdict in verdicts.items() if verdict == "indicator"]
    return {path: _salvage_class(path, verdicts, bad) for path in paths}


def refusals(classes: Mapping[bytes, str]) -> list[str]:
    """Why each path may not be salvaged without ``--force`` (empty: all may be)."""
    return [f"{display_name(path)} {NEEDS_FORCE[cls]}" for path, cls in classes.items() if cls in NEEDS_FORCE]


def _salvage_class(path: bytes, verdicts: Mapping[bytes, str], indicators: list[bytes]) -> str:
    if verdicts.get(path) == "indicator":
        return "indicator"
    if any(path.startswith(bad.rstrip(b"/") + b"/") for bad in indicators):
        return BELOW_INDICATOR
    if any(bad.startswith(path.rstrip(b"/") + b"/") for bad in indicators):
        return HOLDS_INDICATOR
    return verdicts.get(path, UNCLASSIFIED)


def _field(finding: Any, name: str) -> Any:
    return finding.get(name) if isinstance(finding, Mapping) else getattr(finding, name, None)


def _raw_path(finding: Any) -> bytes | None:
    encoded = _field(finding, "path_b64")
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def relative(path: str, mountpoint: str) -> str:
    """``path`` inside a dataset mounted at ``mountpoint``; refuses anything outside it or with '..'."""
    if not path.startswith(mountpoint.rstrip("/") + "/") or "/../" in f"{path}/":
        raise SalvageError(f"{path} is not inside {mountpoint}")
    return path[len(mountpoint.rstrip("/")) + 1:]


def with_snapshot_mounted(snapshot: str, commands: list[str]) -> str:
    """A shell script that runs ``commands`` with ``snapshot`` mounted read-only at ``$d``."""
    return "\n".join([
        "set -e",
        'd=$(mktemp -d /run/recovery-snapshot.XXXXXX)',
        f"mount -t zfs -o ro {shlex.quote(snapshot)} \"$d\"",
        'trap \'umount "$d" && rmdir "$d"\' EXIT',
        *commands,
    ])


def copy_commands(mountpoint: str, path: str) -> list[str]:
    """Shell lines that copy one path back from the evidence mounted at ``$d``, failing closed.

    Every directory on the way, in the evidence and in the restored dataset, must
    be a real directory (a symlink there would lead the copy anywhere on the
    host); the path itself is copied as it is (``cp -a`` copies a link as a
    link), over whatever is in its place (``-T``: never into it); then no file it
    wrote keeps a set-uid or set-gid bit.
    """
    rel = relative(path, mountpoint)
    parts = rel.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    root = mountpoint.rstrip("/")
    checks = [check for p in parents if p  # one test per line: set -e ignores a failure inside an && list
              for check in (f"test ! -L \"$d\"/{shlex.quote(p)}", f"test ! -L {shlex.quote(root + '/' + p)}")]
    return [
        *checks,
        f"cp -a -T --remove-destination -- \"$d\"/{shlex.quote(rel)} {shlex.quote(path)}",
        f"find {shlex.quote(path)} ! -type l -perm /6000 -exec chmod ug-s {{}} +",
    ]


def copy_back(transport: Transport, evidence: str, mountpoint: str, paths: list[str]) -> None:
    """Copy ``paths`` (absolute, under ``mountpoint``) from ``evidence`` to where they were."""
    copies = [line for p in paths for line in copy_commands(mountpoint, p)]
    result = transport.run(with_snapshot_mounted(evidence, copies), timeout=600)
    if result.exit_code != 0:
        raise SalvageError(f"copy from {evidence} failed (exit {result.exit_code}): "
                           f"{for_terminal(result.stderr, 400)}")
