"""A report as a real two-host recovery writes it: one host restored, one failed, a collector, hostile names."""

from __future__ import annotations

from recovery.report.model import Bar, Report

T0 = 1_763_906_462.0  # 2025-11-23 14:01:02 UTC
HOSTILE_FILE = "/srv/www/cgi-bin/<script>alert(1)</script>\x1b[2J.php"


def sample_report() -> Report:
    report = Report("20251123T140102Z-www-3fa2", "www", "failed", T0, T0 + 412.5, "9f" * 32, True)
    report.hosts = {"us-web": "recovered", "eu-web": "failed at boot_single: console login timed out"}
    steps = [("*", "divert", 0, 3), ("*", "contain", 3, 9), ("us-web", "boot_single", 9, 70),
             ("us-web", "preserve", 70, 130), ("us-web", "diff", 130, 160), ("us-web", "find_clean", 160, 230),
             ("us-web", "restore", 230, 262), ("us-web", "verify", 262, 290), ("us-web", "boot_normal", 290, 350),
             ("eu-web", "boot_single", 350, 405), ("*", "return", 405, 412)]
    report.bars = [Bar(h, s, T0 + a, T0 + b, "failed" if (h, s) == ("eu-web", "boot_single") else "done")
                   for h, s, a, b in steps]
    report.phases = {s: float(b - a) for _, s, a, b in steps}
    report.timeline = [(T0, "run started by sre for www"), (T0 + 3, "divert done"),
                       (T0 + 405, "eu-web boot_single FAILED: console login timed out"),
                       (T0 + 412.5, "run finished: failed")]
    report.indicators = [{"host": "us-web", "dataset": "tank/www", "path": HOSTILE_FILE, "change": "+",
                          "rule": "web-script", "ctime": "2025-11-22T03:12:44Z", "found_by": "diff"}]
    report.restored = [{"host": "us-web", "dataset": "tank/www", "clean": "tank/www@auto-2025-11-21",
                        "quarantine": "tank/www.quarantine-20251123T140102Z", "evidence": "tank/www@incident-3fa2"}]
    report.evidence = [{"host": "us-web", "snapshot": "tank/www@incident-3fa2", "guid": "1234567890",
                        "bytes": 48_211_968, "sha256": "ab" * 32}]
    report.lost = [{"host": "us-web", "dataset": "tank/www", "path": "/srv/www/news/2025-11-22.html", "change": "+"}]
    report.traffic = [{"step": "divert", "channel": "dns www.example.org", "before": {"routes": [["192.0.2.10", "A"], ["192.0.2.11", "A"]]},
                       "after": {"routes": [["192.0.2.99", "A"]]}, "foreign": [], "kept_out": []},
                      {"step": "return", "channel": "dns www.example.org", "before": {"routes": [["192.0.2.99", "A"]]},
                       "after": {"routes": [["192.0.2.11", "A"]]}, "foreign": [], "kept_out": ["eu-web"]}]
    report.rotation = [{"host": "us-web", "admitted": True, "reason": "restored and verified in this run",
                        "command": None},
                       {"host": "eu-web", "admitted": False, "reason": "failed at boot_single",
                        "command": "recover eu-web"}]
    report.failures = ["eu-web: console login timed out"]
    report.ran = {"divert": ["*"], "contain": ["*"], "boot_single": ["us-web"], "preserve": ["us-web"],
                  "diff": ["us-web"], "find_clean": ["us-web"], "restore": ["us-web"], "return": ["*"]}
    report.missing = {"boot_single": ["eu-web"], "preserve": ["eu-web"], "diff": ["eu-web"],
                      "find_clean": ["eu-web"], "restore": ["eu-web"]}
    report.collectors = [{"collector": "syslog 127.0.0.1:6514", "delivered": 96, "dropped": 0, "pending": 0}]
    return report
