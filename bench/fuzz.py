"""Fuzz the parsers that read host bytes: N generated inputs each, crashes, peak memory, inputs per second.

    .venv/bin/python bench/fuzz.py [--count N] [--seed S] [--only agent|console|diff]

A crash is any exception other than the parser's own error type (AgentReplyError,
ConsoleFrameError; the diff parser must not raise at all). Inputs are built from
each grammar's pieces (markers, numbers of every size, base64, tabs, escapes,
kernel noise) mixed with random bytes, so most inputs get past the first check.
The goal is 0 crashes. The first input of each crash type is printed (repr, cut).
"""

from __future__ import annotations

import argparse
import base64
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recovery.transport.console_frame import ConsoleFrameError, FrameReader  # noqa: E402
from recovery.zfs.client import AgentReplyError, extract_reply  # noqa: E402
from recovery.zfs.diff import parse_diff_stream  # noqa: E402

NONCE = "0123456789abcdef" * 2
AGENT_MARK = b"RECOVERY-AGENT-REPLY v1 " + NONCE.encode()
CONSOLE_MARK = b"RCV0123456789abcdef0123"
DIGESTS = [b"0" * 64, b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]
DIFF_FIELDS = [b"1700000000.123456789", b"-1.000000000", b"9" * 30 + b".000000000", b"+", b"-", b"M", b"R", b"F",
               b"/", b"@", b"?", b"(+1)", b"(-99999999999)", b"\\0012", b"\\0400", b"\\", b"", b"/srv/www/x"]


def number(rng: random.Random) -> bytes:
    pick = rng.random()
    if pick < 0.4:
        return str(rng.randint(0, 3)).encode()
    if pick < 0.8:
        return str(rng.randint(0, 10**6)).encode()
    return b"9" * rng.choice([12, 19, 20, 21, 30, 5000])


def noise(rng: random.Random, size: int = 30) -> bytes:
    return rng.randbytes(rng.randint(0, size))


def chunk(rng: random.Random) -> bytes:
    return base64.b64encode(rng.randbytes(rng.randint(0, 40)))


def agent_input(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.randrange(5)
        if kind == 0:
            lines.append(AGENT_MARK + b" begin " + number(rng) + b" " + number(rng) + b" " + rng.choice(DIGESTS))
        elif kind == 1:
            lines.append(AGENT_MARK + b" " + number(rng) + b" " + chunk(rng))
        elif kind == 2:
            lines.append(AGENT_MARK + b" end")
        else:
            lines.append(noise(rng) + (AGENT_MARK if kind == 3 else b""))
    return rng.choice([b"\n", b"\r\n"]).join(lines)


def console_input(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.randrange(6)
        if kind == 0:
            lines.append(CONSOLE_MARK + b" " + rng.choice([b"o", b"e"]) + b" " + chunk(rng))
        elif kind == 1:
            lines.append(CONSOLE_MARK + b" " + rng.choice([b"o-end", b"e-end"]) + b" " + number(rng) + b" "
                         + rng.choice(DIGESTS) + rng.choice([b"", b"  -"]))
        elif kind == 2:
            lines.append(CONSOLE_MARK + b" exit " + number(rng))
        elif kind == 3:
            lines.append(b"[   12.345678] kernel: noise")
        else:
            lines.append(noise(rng))
    return b"".join(line + b"\n" for line in lines)


def diff_input(rng: random.Random) -> bytes:
    lines = []
    for _ in range(rng.randint(0, 20)):
        fields = [rng.choice(DIFF_FIELDS) if rng.random() < 0.8 else b"/srv/www/" + noise(rng, 12)
                  for _ in range(rng.randint(1, 6))]
        lines.append(b"\t".join(fields))
    return b"".join(line + b"\n" for line in lines)


def cut(rng: random.Random, data: bytes) -> list[bytes]:
    """The input as a transport might deliver it: in arbitrary pieces."""
    points = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, 4)))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


def run_agent(rng: random.Random, data: bytes) -> None:
    try:
        extract_reply(data, NONCE, max_reply=10**6)
    except AgentReplyError:
        pass


def run_console(rng: random.Random, data: bytes) -> None:
    reader = FrameReader(CONSOLE_MARK, cap=4096)
    for piece in cut(rng, data):
        reader.feed(piece)
    try:
        reader.result(0.0)
    except ConsoleFrameError:
        pass


def run_diff(rng: random.Random, data: bytes) -> None:
    parse_diff_stream(cut(rng, data))


PARSERS: dict[str, tuple[Callable[[random.Random], bytes], Callable[[random.Random, bytes], None]]] = {
    "agent": (agent_input, run_agent),
    "console": (console_input, run_console),
    "diff": (diff_input, run_diff),
}


def fuzz(name: str, count: int, seed: int) -> None:
    generate, run = PARSERS[name]
    rng = random.Random(f"{seed}-{name}")
    crashes: dict[str, tuple[int, bytes]] = {}
    start = time.perf_counter()
    for _ in range(count):
        data = generate(rng)
        try:
            run(rng, data)
        except Exception as exc:  # noqa: BLE001 - finding these is the point
            key = f"{type(exc).__name__}: {str(exc)[:60]}"
            seen, first = crashes.get(key, (0, data))
            crashes[key] = (seen + 1, first)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = sum(n for n, _ in crashes.values())
    print(f"{name:8} {count:>9} inputs  {count / elapsed:>9.0f}/s  crashes {total:>7}  peak RSS {peak:.0f} MiB")
    for key, (seen, first) in crashes.items():
        print(f"    {seen} x {key}\n      first input: {first[:160]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10**6, help="inputs per parser (default 10**6)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=sorted(PARSERS))
    args = parser.parse_args()
    for name in [args.only] if args.only else PARSERS:
        fuzz(name, args.count, args.seed)


if __name__ == "__main__":
    main()
