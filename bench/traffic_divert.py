"""Time from the start of a divert until the traffic systems show it (goal: <= 1 s on loopback).

Starts the lab's BIND9, HAProxy, two web servers and the mirror on
127.0.0.1, then repeatedly diverts and restores, timing:
  * DNS: divert start -> the authoritative server answers the mirror's address;
  * HAProxy: divert start -> ``show servers state`` reports the servers drained;
  * HTTP: divert start -> a new request through HAProxy gets the mirror's notice.
Run: .venv/bin/python bench/traffic_divert.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import dns.message
import dns.query

from recovery.lab.bind import LabDns
from recovery.lab.haproxy import LabHaproxy
from recovery.lab.mirror import Mirror
from recovery.traffic.dns import DnsDriver, DnsRecord, DnsServer, TsigKey
from recovery.traffic.haproxy import HaproxyBackend, HaproxyDriver, parse_servers_state, runtime_command

MIRROR_ADDRESS = "127.0.0.80"
NOTICE = "Restoring after a security incident."
DEADLINE = 10.0


def _until(condition: Callable[[], bool]) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("divert not visible within 10 s")


def _dns_answers_mirror(lab: LabDns) -> bool:
    query = dns.message.make_query(f"{lab.record}.{lab.zone}.", "A")
    answer = dns.query.udp(query, lab.host, port=lab.port, timeout=1)
    return [rdata.to_text() for rrset in answer.answer for rdata in rrset] == [MIRROR_ADDRESS]


def _haproxy_drained(balancer: LabHaproxy, servers: tuple[str, ...]) -> bool:
    rows = parse_servers_state(runtime_command(balancer.socket, "show servers state web"))
    return all(row.admin_state == "drain" for row in rows if row.server in servers)


def _http_shows_notice(balancer: LabHaproxy) -> bool:
    try:
        urllib.request.urlopen(balancer.url, timeout=1).close()
    except urllib.error.HTTPError as error:
        return NOTICE in error.read().decode()
    return False


def _timed(divert: Callable[[], object], visible: Callable[[], bool]) -> float:
    started = time.monotonic()
    divert()
    _until(visible)
    return time.monotonic() - started


def _site(root: Path, name: str) -> Path:
    (root / name).mkdir()
    (root / name / "index.html").write_text(f"{name}\n")
    return root / name


def _report(label: str, seconds: list[float]) -> None:
    print(
        f"{label:<42} median {statistics.median(seconds) * 1000:7.1f} ms   "
        f"max {max(seconds) * 1000:7.1f} ms   (n={len(seconds)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    repeat = min(parser.parse_args().repeat, 100)
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        eu, us, mirror = (stack.enter_context(Mirror(_site(root, name))) for name in ("eu", "us", "mirror"))
        lab = stack.enter_context(LabDns(["192.0.2.10", "192.0.2.11"]))
        balancer = stack.enter_context(
            LabHaproxy(
                {"eu-web": f"{eu.host}:{eu.port}", "us-web": f"{us.host}:{us.port}"},
                mirror=f"{mirror.host}:{mirror.port}",
            )
        )
        mirror.show_notice(NOTICE)
        key = TsigKey(lab.key_name, lab.algorithm, lab.secret)
        dns_driver = DnsDriver(DnsServer(lab.host, lab.port, lab.zone, key))
        record = DnsRecord(lab.record, (MIRROR_ADDRESS,))
        proxy = HaproxyDriver(balancer.socket)
        backend = HaproxyBackend("web", ("eu-web", "us-web"), ("mirror",))

        timings: dict[str, list[float]] = {"dns": [], "haproxy": [], "http": []}
        for _ in range(repeat):
            before = dns_driver.state(record)
            timings["dns"].append(_timed(lambda: dns_driver.divert(record, before), lambda: _dns_answers_mirror(lab)))
            dns_driver.restore(record, dns_driver.state(record), before)

            seen = proxy.state(backend)
            timings["haproxy"].append(
                _timed(lambda: proxy.divert(backend, seen), lambda: _haproxy_drained(balancer, backend.servers))
            )
            proxy.restore(backend, proxy.state(backend), seen)
            timings["http"].append(_timed(lambda: proxy.divert(backend, seen), lambda: _http_shows_notice(balancer)))
            proxy.restore(backend, proxy.state(backend), seen)

    _report("DNS: authoritative answers mirror address", timings["dns"])
    _report("HAProxy: servers reported drained", timings["haproxy"])
    _report("HTTP through HAProxy: notice served", timings["http"])


if __name__ == "__main__":
    main()
