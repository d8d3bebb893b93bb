"""Host agent: ZFS operations run on a managed host with the host's own python3.

The orchestrator ships this one file to the host for every call (see
``recovery.zfs.client``) and runs it with ``python3 -I`` (isolated: no
PYTHON* variables, no user site, no current directory on the path). It
depends on the standard library only; ``libzfs_core`` from Debian's
python3-pyzfs is imported lazily by the operations that need it, because
pyzfs has atomic multi-dataset snapshots, holds, clone and promote, but no
list, properties or diff (the ``zfs`` CLI serves those).

Wire format. The request is base64 of a JSON object, in argv[1] or on stdin::

    {"v": 1, "nonce": "<hex>", "op": "<operation>", "args": {...}, "zfs": "<path>"|null}

The reply is base64 of a JSON object, framed on stdout by lines that all
start with ``MARK v1 <nonce>``::

    MARK v1 <nonce> begin <chunks> <bytes> <sha256 of the JSON>
    MARK v1 <nonce> <index> <base64 chunk>        (index 0 .. chunks-1)
    MARK v1 <nonce> end

where MARK is ``RECOVERY-AGENT-REPLY``. Anything else the host, its shell or
its kernel prints is ignored by the reader, even whole lines inside the frame.
The JSON is ``{"v": 1, "nonce": ..., "ok": true, "result": {...}}`` or
``{"v": 1, "nonce": ..., "ok": false, "error": {"op", "dataset", "errno",
"errname", "message"}}``.

Batches. The operation ``batch`` carries several requests (``args.requests``:
objects with their own ``nonce``, ``op`` and ``args``) and answers with
``result.replies``, one reply object each, in order, as each would have been
answered alone. The orchestrator batches only calls made by independent work
(a thread per dataset), so they run side by side here: the diffs of different
datasets overlap, and a slow line costs one round trip for all of them.

Served mode. ``serve TOKEN IDLE`` keeps one process (and its imports) for a
host channel instead of a new python3 per call: it writes ``SERVING TOKEN``,
then reads requests, one base64 line each, from standard input and writes each
framed reply to standard output as soon as it is ready (requests are worked on
side by side, replies carry their request's nonce), until the line ``stop``,
the end of input, or IDLE seconds without a request. Over SSH that is one exec channel; on a serial
console the agent runs in the foreground of the console's shell, so its input
is the line itself. The frame, nonce and operations are the same as for one call.

Nothing here destroys or rolls back: those operations are not offered at all.
"""

from __future__ import annotations

import base64
import errno as errno_codes
import hashlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional

VERSION = 1
MARK = "RECOVERY-AGENT-REPLY"
CHUNK = 1024
REQUEST_CAP = 16 * 1024 * 1024
ZFS_CANDIDATES = ("/usr/sbin/zfs", "/sbin/zfs")
#: Pool properties the agent reads, and the one it sets: which boot environment the pool boots.
POOL_PROPERTIES = ("bootfs", "altroot", "health")
POOL_SETTABLE = ("bootfs",)
_POOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,254}")
LIST_FIELDS = ("name", "type", "guid", "createtxg", "creation", "used", "origin", "mountpoint")
INTEGER_FIELDS = frozenset({"guid", "createtxg", "creation", "used"})
_DATASET_NAME = re.compile(r"[A-Za-z0-9_.:/@# -]{1,255}")
_PROPERTY_NAME = re.compile(r"[a-z0-9_:.-]{1,255}")
_NONCE = re.compile(r"[0-9a-f]{16,64}")


class OperationError(Exception):
    """An operation failed; carries what the operator needs to act on it."""

    def __init__(self, message: str, dataset: Optional[str] = None, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.code = code


# --- request validation -----------------------------------------------------


def dataset_name(args: Dict[str, Any], key: str) -> str:
    """A dataset or snapshot name that cannot be mistaken for a command-line option."""
    value = args.get(key)
    if not isinstance(value, str) or not _DATASET_NAME.fullmatch(value) or value.startswith("-"):
        raise OperationError("argument %r is not a valid dataset or snapshot name: %r" % (key, value))
    return value


def dataset_names(args: Dict[str, Any], key: str) -> List[str]:
    values = args.get(key)
    if not isinstance(values, list) or not values:
        raise OperationError("argument %r must be a non-empty list of names" % key)
    return [dataset_name({key: value}, key) for value in values]


def property_name(value: Any) -> str:
    if not isinstance(value, str) or not _PROPERTY_NAME.fullmatch(value):
        raise OperationError("not a valid property name: %r" % (value,))
    return value


def property_value(value: Any) -> str:
    if not isinstance(value, str) or "\n" in value or "\0" in value:
        raise OperationError("property values must be single-line strings: %r" % (value,))
    return value


# --- the zfs command line ---------------------------------------------------


def find_zfs(requested: Optional[str]) -> str:
    """The zfs binary: the one the request names, else a fixed system path (never $PATH)."""
    for candidate in ([requested] if requested else list(ZFS_CANDIDATES)):
        if os.path.isabs(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise OperationError("zfs command not found (looked for %s)" % (requested or ", ".join(ZFS_CANDIDATES)))


def run_zfs(zfs: str, args: List[str], dataset: Optional[str] = None) -> bytes:
    """Run ``zfs ARGS`` without a shell; stdout as bytes, a failure as :class:`OperationError`."""
    return _run_tool(zfs, "zfs", args, dataset)


def run_zpool(zfs: str, args: List[str], pool: str) -> bytes:
    """``zpool`` from the same directory as the zfs binary in use (never $PATH)."""
    zpool = os.path.join(os.path.dirname(zfs), "zpool")
    if not os.access(zpool, os.X_OK):
        raise OperationError("zpool command not found beside %s" % zfs, pool)
    return _run_tool(zpool, "zpool", args, pool)


def _run_tool(path: str, name: str, args: List[str], subject: Optional[str]) -> bytes:
    proc = subprocess.run([path] + args, stdin=subprocess.DEVNULL, capture_output=True)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise OperationError("%s %s failed (exit %d): %s" % (name, args[0], proc.returncode, stderr), subject)
    return proc.stdout


def pool_name(args: Dict[str, Any]) -> str:
    value = args.get("pool")
    if not isinstance(value, str) or not _POOL_NAME.fullmatch(value):
        raise OperationError("argument 'pool' must be a pool name")
    return value


def parse_zfs_list(output: bytes) -> List[Dict[str, Any]]:
    """Rows of ``zfs list -Hp -o LIST_FIELDS``: integers as int, ``-`` as None."""
    rows = []
    for line in output.decode("utf-8", "surrogateescape").splitlines():
        values = line.split("\t")
        if len(values) != len(LIST_FIELDS):
            raise OperationError("unexpected zfs list line: %r" % line)
        rows.append({field: _list_value(field, value) for field, value in zip(LIST_FIELDS, values)})
    return rows


def _list_value(field: str, value: str) -> Any:
    if value == "-":
        return None
    if field in INTEGER_FIELDS:
        try:
            return int(value)
        except ValueError:
            raise OperationError("zfs list gave a non-numeric %s: %r" % (field, value)) from None
    return value


def parse_zfs_get(output: bytes) -> List[Dict[str, str]]:
    """Rows of ``zfs get -Hp -o name,property,value,source``."""
    rows = []
    for line in output.decode("utf-8", "surrogateescape").splitlines():
        values = line.split("\t")
        if len(values) != 4:
            raise OperationError("unexpected zfs get line: %r" % line)
        rows.append(dict(zip(("name", "property", "value", "source"), values)))
    return rows


# --- libzfs_core ------------------------------------------------------------


def load_lzc() -> Any:
    try:
        import libzfs_core  # type: ignore[import-not-found]
        import libzfs_core.exceptions  # type: ignore[import-not-found]  # noqa: F401 - used as lzc.exceptions
    except ImportError as exc:
        raise OperationError("libzfs_core is not available (install python3-pyzfs): %s" % exc) from None
    return libzfs_core


def errno_meaning(code: Optional[int]) -> str:
    """``ENOENT (No such file or directory)``; ZFS-specific codes by their pyzfs name."""
    if code is None:
        return "no errno"
    if code in errno_codes.errorcode:
        return "%s (%s)" % (errno_codes.errorcode[code], os.strerror(code))
    try:
        from libzfs_core._constants import zfs_errno  # type: ignore[import-not-found]

        return "%s (ZFS error %d)" % (zfs_errno(code).name, code)
    except (ImportError, ValueError):
        return "ZFS error %d" % code


def lzc_failure(op: str, exc: Exception) -> OperationError:
    """A libzfs_core exception as one message naming operation, datasets and errno meanings."""
    parts = [_one_failure(error) for error in getattr(exc, "errors", None) or [exc]]
    suppressed = getattr(exc, "suppressed_count", 0)
    if suppressed:
        parts.append("%d more error(s) suppressed" % suppressed)
    first = (getattr(exc, "errors", None) or [exc])[0]
    return OperationError(
        "%s failed: %s" % (op, "; ".join(parts)),
        _text(getattr(first, "name", None)),
        getattr(exc, "errno", None),
    )


def _one_failure(error: Exception) -> str:
    name = _text(getattr(error, "name", None)) or "?"
    message = getattr(error, "message", None) or str(error)
    return "%s: %s [%s]" % (name, message, errno_meaning(getattr(error, "errno", None)))


def _text(value: Any) -> Optional[str]:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def call_lzc(op: str, function: str, *args: Any) -> Any:
    lzc = load_lzc()
    try:
        return getattr(lzc, function)(*args)
    except lzc.exceptions.ZFSError as exc:
        raise lzc_failure(op, exc) from None


def _b(name: str) -> bytes:
    return name.encode("utf-8")


#: Properties the kernel takes as a number in an nvlist: their values as ``zfs get`` names them.
INDEX_PROPERTIES = {"canmount": {"off": 0, "on": 1, "noauto": 2}}


def _lzc_props(args: Dict[str, Any]) -> Optional[Dict[bytes, Any]]:
    props = args.get("props") or {}
    if not isinstance(props, dict):
        raise OperationError("argument 'props' must be an object")
    return {_b(property_name(k)): _lzc_value(property_name(k), v) for k, v in props.items()} or None


def _lzc_value(name: str, value: Any) -> Any:
    if isinstance(value, int):
        return value
    if name in INDEX_PROPERTIES:
        if value not in INDEX_PROPERTIES[name]:
            raise OperationError("%s must be one of %s, not %r" % (name, ", ".join(INDEX_PROPERTIES[name]), value))
        return INDEX_PROPERTIES[name][value]
    return _b(property_value(value))


# --- operations -------------------------------------------------------------


def op_ping(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    try:
        load_lzc()
        lzc = True
    except OperationError:
        lzc = False
    return {"agent": VERSION, "python": sys.version.split()[0], "libzfs_core": lzc, "uid": os.geteuid()}


def op_list(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    types = args.get("types") or ["filesystem", "volume", "snapshot"]
    if not isinstance(types, list) or not set(types) <= {"filesystem", "volume", "snapshot", "bookmark"}:
        raise OperationError("argument 'types' must list filesystem, volume, snapshot or bookmark")
    command = ["list", "-Hp", "-o", ",".join(LIST_FIELDS), "-t", ",".join(types)]
    if args.get("root") is not None:
        command += ["-r", dataset_name(args, "root")]
    return {"datasets": parse_zfs_list(run_zfs(find_zfs(zfs), command, args.get("root")))}


def by_pool(names: List[str]) -> List[List[str]]:
    """Names grouped by pool, in first-seen order: libzfs_core acts on one pool per call."""
    groups: Dict[str, List[str]] = {}
    for name in names:
        groups.setdefault(name.split("/", 1)[0].split("@", 1)[0], []).append(name)
    return list(groups.values())


def op_snapshot(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """The snapshots of each pool in one transaction group: a consistent point across its datasets
    (a boot environment and the data pool are taken one right after the other)."""
    names = dataset_names(args, "snapshots")
    if not all("@" in name for name in names):
        raise OperationError("every name in 'snapshots' must be dataset@snapshot")
    for group in by_pool(names):
        call_lzc("snapshot", "lzc_snapshot", [_b(n) for n in group], _lzc_props(args))
    return {"created": names}


def op_hold(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """Persistent user holds (no cleanup descriptor): they outlive this process."""
    holds = _name_map(args, "holds")
    missing: List[Any] = []
    for group in by_pool(list(holds)):
        missing += call_lzc("hold", "lzc_hold", {_b(s): _b(_tag(holds[s])) for s in group}, None) or []
    return {"missing": [_text(m) for m in missing]}


def op_release(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    holds = _name_map(args, "holds")
    missing: List[Any] = []
    for group in by_pool(list(holds)):
        request = {_b(s): [_b(_tag(t)) for t in _tag_list(holds[s])] for s in group}
        missing += call_lzc("release", "lzc_release", request) or []
    return {"missing": [_text(m) for m in missing]}


def op_holds(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    holds = call_lzc("holds", "lzc_get_holds", _b(dataset_name(args, "snapshot")))
    return {"holds": {_text(tag): when for tag, when in holds.items()}}


def op_clone(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """A clone is created unmounted; the restore step decides where it mounts."""
    name, origin = dataset_name(args, "name"), dataset_name(args, "origin")
    call_lzc("clone", "lzc_clone", _b(name), _b(origin), _lzc_props(args))
    return {"name": name, "origin": origin}


def op_promote(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    name = dataset_name(args, "name")
    call_lzc("promote", "lzc_promote", _b(name))
    return {"name": name}


def op_rename(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """``lzc_rename`` where nothing of the source is mounted (a swap in the rescue system, a clone
    that never was), the CLI otherwise: it unmounts and remounts around the rename, which
    lzc_rename does not. A zfs process costs a slow guest most of a second, the ioctl a tenth."""
    source, target = dataset_name(args, "source"), dataset_name(args, "target")
    if mounted_at_or_below(source) or not _lzc_renamed(source, target):
        run_zfs(find_zfs(zfs), ["rename", source, target], source)
    return {"source": source, "target": target}


def mounted_at_or_below(name: str, mounts: str = "/proc/self/mounts") -> bool:
    """Whether ``name``, a dataset below it or one of their snapshots is mounted here (taken as
    mounted when the mount table cannot be read: the CLI's rename is right either way)."""
    try:
        with open(mounts, "rb") as table:
            lines = table.read().split(b"\n")
    except OSError:
        return True
    for line in lines:
        fields = line.split(b" ")
        if len(fields) < 3 or fields[2] != b"zfs":
            continue
        mounted = _unescape_mount_field(fields[0]).decode("utf-8", "surrogateescape")
        if mounted == name or mounted.startswith((name + "/", name + "@")):
            return True
    return False


def _unescape_mount_field(field: bytes) -> bytes:
    """The kernel writes space, tab, newline and backslash in a mounts field as ``\\NNN`` octal."""
    return re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)


def _lzc_renamed(source: str, target: str) -> bool:
    """Rename through libzfs_core; False where it cannot (no pyzfs, or a libzfs_core without it)."""
    try:
        lzc = load_lzc()
    except OperationError:
        return False
    try:
        lzc.lzc_rename(_b(source), _b(target))
    except NotImplementedError:
        return False
    except lzc.exceptions.ZFSError as exc:
        raise lzc_failure("rename", exc) from None
    return True


#: How a file system is mounted to be looked at, never run: read-only, no set-uid, no devices, no execution.
INSPECT_OPTIONS = "ro,nosuid,nodev,noexec"


def op_mount(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """Mount a filesystem at its mountpoint (a restored clone is created unmounted); ``inspect``
    mounts it only to be read."""
    name = dataset_name(args, "name")
    options = ["-o", INSPECT_OPTIONS] if args.get("inspect") else []
    run_zfs(find_zfs(zfs), ["mount"] + options + [name], name)
    return {"name": name}


def op_unmount(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    name = dataset_name(args, "name")
    run_zfs(find_zfs(zfs), ["unmount", name], name)
    return {"name": name}


def op_get(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    names = dataset_names(args, "datasets")
    properties = args.get("properties") or ["all"]
    if not isinstance(properties, list):
        raise OperationError("argument 'properties' must be a list")
    command = ["get", "-Hp", "-o", "name,property,value,source", ",".join(map(property_name, properties))]
    return {"values": parse_zfs_get(run_zfs(find_zfs(zfs), command + names, names[0]))}


def op_set(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    name = dataset_name(args, "dataset")
    properties = args.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise OperationError("argument 'properties' must be a non-empty object")
    # one process for them all (a zfs process costs a slow guest a second); one ioctl sets the list
    pairs = ["%s=%s" % (property_name(key), property_value(value)) for key, value in properties.items()]
    run_zfs(find_zfs(zfs), ["set"] + pairs + [name], name)
    return {"dataset": name, "set": sorted(properties)}


def op_pool_get(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """The pool's boot environment (``bootfs``), ``altroot`` and health; ``-`` means unset."""
    pool = pool_name(args)
    output = run_zpool(find_zfs(zfs), ["get", "-Hp", "-o", "property,value", ",".join(POOL_PROPERTIES), pool], pool)
    values = {}
    for line in output.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split("\t")
        if len(fields) != 2:
            raise OperationError("unexpected zpool get line: %r" % line, pool)
        values[fields[0]] = fields[1]
    return {"pool": pool, "values": values}


def op_pool_set(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """Point the pool at another boot environment (what ``bectl activate`` does); nothing else."""
    pool = pool_name(args)
    prop = args.get("property")
    if prop not in POOL_SETTABLE:
        raise OperationError("only %s can be set on a pool" % ", ".join(POOL_SETTABLE), pool)
    value = dataset_name(args, "value")
    if value.split("/", 1)[0] != pool or "@" in value:
        raise OperationError("bootfs must be a filesystem of pool %s, not %r" % (pool, value), pool)
    run_zpool(find_zfs(zfs), ["set", "%s=%s" % (prop, value), pool], pool)
    return {"pool": pool, "property": prop, "value": value}


def op_diff(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """Raw ``zfs diff -FHt`` output, zlib then base64: every byte of every name survives,
    and a diff of 100k changes stays well under a transport's output cap."""
    origin, target = dataset_name(args, "from"), dataset_name(args, "to")
    output = run_zfs(find_zfs(zfs), ["diff", "-FHt", origin, target], origin)
    return {"output_zlib": base64.b64encode(zlib.compress(output, 6)).decode("ascii"), "bytes": len(output)}


def op_lstat(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """st_mode of paths (base64 bytes), None where absent: mode bits for triage."""
    paths = args.get("paths")
    if not isinstance(paths, list):
        raise OperationError("argument 'paths' must be a list of base64 paths")
    return {"modes": [_lstat_mode(base64.b64decode(p)) for p in paths]}


#: Up to this many bytes of an older log are compared whole; beyond, its first and last APPEND_SAMPLE.
APPEND_WHOLE = 64 << 20
APPEND_SAMPLE = 8 << 20


def op_appended(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """For each pair of paths (base64: a file in an older state, the same file in a newer one),
    whether the newer one only grew at its end: it starts with the older one's bytes.

    None where either is not a regular file. A log truncated, shrunk or edited
    in place is False; a log appended to is True. An older file over APPEND_WHOLE
    is compared by its first and last APPEND_SAMPLE bytes.
    """
    pairs = args.get("pairs")
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise OperationError("argument 'pairs' must be a list of [older, newer] base64 paths")
    return {"appended": [_appended(base64.b64decode(old), base64.b64decode(new)) for old, new in pairs]}


def _appended(older: bytes, newer: bytes) -> Optional[bool]:
    if os.path.islink(older) or os.path.islink(newer) or not (os.path.isfile(older) and os.path.isfile(newer)):
        return None
    size = os.path.getsize(older)
    if os.path.getsize(newer) < size:
        return False
    spans = [(0, size)] if size <= APPEND_WHOLE else [(0, APPEND_SAMPLE), (size - APPEND_SAMPLE, APPEND_SAMPLE)]
    with open(older, "rb") as old, open(newer, "rb") as new:
        for start, length in spans:
            old.seek(start)
            new.seek(start)
            while length > 0:
                block = min(length, 1 << 20)
                if old.read(block) != new.read(block):
                    return False
                length -= block
    return True


#: Where dpkg keeps each package's file list with md5 sums, below a system's root.
DPKG_INFO = b"var/lib/dpkg/info"
#: Merged /usr: a package may name /bin/x while the file lives at /usr/bin/x.
_MERGED = ((b"usr/bin/", b"bin/"), (b"usr/sbin/", b"sbin/"), (b"usr/lib/", b"lib/"), (b"usr/lib64/", b"lib64/"))


def op_shipped(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """For each file (its path below ``root``), whether its md5 is the one its Debian package
    records in the same state's dpkg database (None: no package ships it, or it is not a file).

    A dpkg run between two snapshots changes packaged programs; an intruder's
    change to one does not match what the package shipped.
    """
    root = base64.b64decode(args.get("root") or "")
    files = args.get("files")
    if not os.path.isabs(root) or not isinstance(files, list):
        raise OperationError("arguments 'root' (absolute, base64) and 'files' (base64 list) are required")
    sums = _dpkg_md5sums(os.path.join(root, DPKG_INFO))
    shipped: List[Optional[bool]] = []
    for rel in (base64.b64decode(f).lstrip(b"/") for f in files):
        recorded = sums.get(rel) or next((sums[alias + rel[len(real):]] for real, alias in _MERGED
                                          if rel.startswith(real) and alias + rel[len(real):] in sums), None)
        shipped.append(None if recorded is None else _md5_file(os.path.join(root, rel)) == recorded)
    return {"shipped": shipped}


def _dpkg_md5sums(info: bytes) -> Dict[bytes, str]:
    sums: Dict[bytes, str] = {}
    try:
        names = [n for n in os.listdir(info) if n.endswith(b".md5sums")]
    except OSError:
        return sums
    for name in names:
        with open(os.path.join(info, name), "rb") as handle:
            for line in handle:
                digest, _, rel = line.rstrip(b"\n").partition(b"  ")
                if rel and re.fullmatch(rb"[0-9a-f]{32}", digest):
                    sums[rel] = digest.decode("ascii")
    return sums


def _md5_file(path: bytes) -> Optional[str]:
    if os.path.islink(path) or not os.path.isfile(path):
        return None
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def op_hash(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """sha256 of regular files under the given paths (base64 bytes), symlinks not followed.

    For golden manifests and the trust check of tools before they are used.
    Directories are walked; at most ``limit`` files are hashed, and a cut is reported.
    """
    paths = args.get("paths")
    limit = args.get("limit", 100000)
    if not isinstance(paths, list) or not isinstance(limit, int):
        raise OperationError("argument 'paths' must be a list of base64 paths, 'limit' an integer")
    found: Dict[str, str] = {}
    for top in (base64.b64decode(p) for p in paths):
        for path in _regular_files(top):
            if len(found) >= limit:
                return {"files": found, "complete": False}
            found[base64.b64encode(path).decode("ascii")] = _sha256_file(path)
    return {"files": found, "complete": True}


def _regular_files(top: bytes) -> List[bytes]:
    if os.path.isfile(top) and not os.path.islink(top):
        return [top]
    files = []
    for root, dirs, names in os.walk(top, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                files.append(path)
    return files


def _sha256_file(path: bytes) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        return "unreadable: %s" % exc.strerror
    return digest.hexdigest()


def _lstat_mode(path: bytes) -> Optional[int]:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _name_map(args: Dict[str, Any], key: str) -> Dict[str, Any]:
    value = args.get(key)
    if not isinstance(value, dict) or not value:
        raise OperationError("argument %r must be a non-empty object keyed by snapshot" % key)
    for name in value:
        dataset_name({key: name}, key)
    return value


def _tag(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 255 or "\0" in value:
        raise OperationError("not a valid hold tag: %r" % (value,))
    return value


def _tag_list(value: Any) -> List[str]:
    if not isinstance(value, list) or not value:
        raise OperationError("release needs a non-empty list of tags per snapshot")
    return value


#: Most requests one batch carries, and how many of them run at once.
BATCH_MAX = 16
BATCH_WORKERS = 4


def op_batch(args: Dict[str, Any], zfs: Optional[str]) -> Dict[str, Any]:
    """Each request answered as if alone (an error is its own reply), side by side."""
    requests = args.get("requests")
    if not isinstance(requests, list) or not 1 <= len(requests) <= BATCH_MAX:
        raise OperationError("'requests' must be a list of 1 to %d requests" % BATCH_MAX)
    members = [_member(request, zfs) for request in requests]
    with ThreadPoolExecutor(max_workers=min(BATCH_WORKERS, len(members))) as pool:
        return {"replies": list(pool.map(handle, members))}


def _member(request: Any, zfs: Optional[str]) -> Dict[str, Any]:
    """One request of a batch, checked as a request of its own; it runs with the batch's ``zfs``."""
    if not isinstance(request, dict) or request.get("op") == "batch":
        raise OperationError("each request of a batch is an object, and not a batch")
    if not isinstance(request.get("nonce"), str) or not _NONCE.fullmatch(request["nonce"]):
        raise OperationError("a request of the batch has no valid nonce")
    return {"v": VERSION, "nonce": request["nonce"], "op": request.get("op"), "args": request.get("args"), "zfs": zfs}


OPERATIONS: Dict[str, Callable[[Dict[str, Any], Optional[str]], Dict[str, Any]]] = {
    "ping": op_ping,
    "list": op_list,
    "snapshot": op_snapshot,
    "hold": op_hold,
    "release": op_release,
    "holds": op_holds,
    "clone": op_clone,
    "promote": op_promote,
    "rename": op_rename,
    "mount": op_mount,
    "unmount": op_unmount,
    "get": op_get,
    "set": op_set,
    "pool_get": op_pool_get,
    "pool_set": op_pool_set,
    "diff": op_diff,
    "lstat": op_lstat,
    "hash": op_hash,
    "shipped": op_shipped,
    "appended": op_appended,
    "batch": op_batch,
}


# --- request and reply ------------------------------------------------------


def decode_request(raw: bytes) -> Dict[str, Any]:
    try:
        request = json.loads(base64.b64decode(raw.strip(), validate=True))
    except ValueError as exc:
        raise OperationError("request is not base64 of JSON: %s" % exc) from None
    if not isinstance(request, dict) or request.get("v") != VERSION:
        raise OperationError("request is not a version %d object" % VERSION)
    if not isinstance(request.get("nonce"), str) or not _NONCE.fullmatch(request["nonce"]):
        raise OperationError("request has no valid nonce")
    return request


def handle(request: Dict[str, Any]) -> Dict[str, Any]:
    """Run one request; every failure becomes an error reply, never a traceback."""
    op = request.get("op")
    reply: Dict[str, Any] = {"v": VERSION, "nonce": request["nonce"]}
    try:
        if op not in OPERATIONS:
            raise OperationError("unknown operation %r; offered: %s" % (op, ", ".join(sorted(OPERATIONS))))
        args = request.get("args") or {}
        if not isinstance(args, dict):
            raise OperationError("'args' must be an object")
        reply.update(ok=True, result=OPERATIONS[op](args, request.get("zfs")))
    except OperationError as exc:
        reply.update(ok=False, error=error_body(op, str(exc), exc.dataset, exc.code))
    except Exception as exc:  # the host is in an unknown state: report, never crash unframed
        reply.update(ok=False, error=error_body(op, "%s: %s" % (type(exc).__name__, exc), None, None))
    return reply


def error_body(op: Any, message: str, dataset: Optional[str], code: Optional[int]) -> Dict[str, Any]:
    return {
        "op": op,
        "dataset": dataset,
        "errno": code,
        "errname": errno_codes.errorcode.get(code) if code is not None else None,
        "message": message,
    }


def frame(reply: Dict[str, Any], nonce: str) -> bytes:
    """The framed reply: every line carries the marker and nonce; see the module docstring."""
    payload = json.dumps(reply, sort_keys=True).encode("utf-8")
    encoded = base64.b64encode(payload).decode("ascii")
    chunks = [encoded[i : i + CHUNK] for i in range(0, len(encoded), CHUNK)] or [""]
    prefix = "%s v%d %s" % (MARK, VERSION, nonce)
    lines = ["%s begin %d %d %s" % (prefix, len(chunks), len(payload), hashlib.sha256(payload).hexdigest())]
    lines += ["%s %d %s" % (prefix, index, chunk) for index, chunk in enumerate(chunks)]
    lines.append("%s end" % prefix)
    return ("\n" + "\n".join(lines) + "\n").encode("ascii")


#: What the agent writes once it serves, followed by the token of the command that started it; the
#: command line never holds these bytes (the agent travels compressed), so a tty's echo cannot fake it.
SERVING = b"RECOVERY-AGENT-SERVING"
#: The answer to a request line that does not decode (it has no nonce to frame a reply with).
BAD_REQUEST = b"RECOVERY-AGENT-BAD-REQUEST"


#: Requests a served agent works on at once: a quick one never waits behind a long ``zfs diff``, and a
#: search's probes of several datasets (two each) run together.
SERVE_WORKERS = 8
_WRITING = threading.Lock()


def serve(token: str, idle: float) -> int:
    """Answer request lines from standard input with frames on standard output, until the line
    ``stop``, the end of input, or ``idle`` seconds without a request and none under way.

    Requests are worked on side by side; each reply is written whole, when it is ready (the
    reader pairs replies with requests by nonce). A line that is not a request is answered
    with BAD_REQUEST, and the agent leaves: someone else talks on this line (on a console,
    a new session logging in after its predecessor died), and the shell should have it.
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the channel's end is the end of input
    _write(b"\n%s %s\n" % (SERVING, token.encode("ascii", "replace")))
    with ThreadPoolExecutor(max_workers=SERVE_WORKERS) as workers:
        return _serve_lines(workers, idle)


def _serve_lines(workers: ThreadPoolExecutor, idle: float) -> int:
    """Hand each request line to ``workers``; the pool's end waits for the replies under way."""
    pending, under_way = b"", []
    while True:
        ready, _, _ = select.select([0], [], [], idle)
        under_way = [f for f in under_way if not f.done()]
        if not ready and under_way:
            continue
        data = os.read(0, 1 << 16) if ready else b""
        if not data:
            return 0
        pending += data
        if len(pending) > REQUEST_CAP and b"\n" not in pending:
            _write(b"\n%s\n" % BAD_REQUEST)  # not a request, however it ends
            return 3
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if not line.strip():
                continue
            if line.strip() == b"stop":
                return 0
            try:
                request = decode_request(line)
            except OperationError:
                _write(b"\n%s\n" % BAD_REQUEST)
                return 3
            under_way.append(workers.submit(_reply, request))


def _reply(request: Dict[str, Any]) -> None:
    _write(frame(handle(request), request["nonce"]))


def _write(data: bytes) -> None:
    """All of ``data`` at once: replies written side by side never interleave."""
    with _WRITING:
        view = memoryview(data)
        while view:
            view = view[os.write(1, view):]


def read_request(argv: List[str]) -> bytes:
    if argv:
        return argv[0].encode("ascii", "replace")
    return sys.stdin.buffer.read(REQUEST_CAP)


def main(argv: List[str]) -> int:
    if argv[:1] == ["serve"] and len(argv) == 3:
        return serve(argv[1], float(argv[2]))
    try:
        request = decode_request(read_request(argv))
    except OperationError as exc:
        sys.stderr.write("recovery agent: %s\n" % exc)
        return 2
    sys.stdout.buffer.write(frame(handle(request), request["nonce"]))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
