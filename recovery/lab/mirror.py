"""The known-good mirror: a static copy of the site on loopback that can show a security notice.

It runs as its own process (``python -m recovery.lab.mirror``) so it can
outlive the command that started it. The notice is switched by a file in its
temp dir, read on every request, so turning it on needs no restart.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import urllib.error
import urllib.request
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence

from recovery.lab.daemon import LabDaemon
from recovery.lab.ports import LOOPBACK, free_port
from recovery.traffic import notice

NOTICE_FILE = "notice.html"
RETRY_AFTER = "3600"

class Mirror(LabDaemon):
    """Serves a copy of ``site`` on 127.0.0.1; :meth:`show_notice` replaces every page by a notice.

    The notice answers 503 with ``Retry-After``: the outage is temporary, and
    crawlers and caches should not keep the notice as the site's content.
    """

    name = "mirror"

    def __init__(self, site: Path) -> None:
        super().__init__()
        self.site = site
        self.host = LOOPBACK
        self.port = 0

    def __repr__(self) -> str:
        return f"Mirror({self.url}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def show_notice(self, text: str) -> None:
        """From now on every request gets the security notice (``text`` is escaped)."""
        notice.publish(self._notice_path(), text)

    def hide_notice(self) -> None:
        notice.withdraw(self._notice_path())

    def _notice_path(self) -> Path:
        assert self.workdir is not None, "mirror is not started"
        return self.workdir / NOTICE_FILE

    def _prepare(self, workdir: Path) -> Sequence[str]:
        self.port = free_port()
        shutil.copytree(self.site, workdir / "site")
        return [sys.executable, "-m", "recovery.lab.mirror", "--port", str(self.port), "--dir", str(workdir)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=0.2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False


class _Handler(SimpleHTTPRequestHandler):
    """Static files from ``DIR/site``, or the notice while ``DIR/notice.html`` exists."""

    def __init__(self, *args: object, workdir: Path, **kwargs: object) -> None:
        self.workdir = workdir
        super().__init__(*args, directory=str(workdir / "site"), **kwargs)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        if not self._send_notice(body=True):
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._send_notice(body=False):
            super().do_HEAD()

    def _send_notice(self, body: bool) -> bool:
        try:
            page = (self.workdir / NOTICE_FILE).read_bytes()
        except FileNotFoundError:
            return False
        self.send_response(503)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Retry-After", RETRY_AFTER)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(page)
        return True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the lab's mirror is probed often and its log is only read on failure."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="known-good mirror for the recovery lab")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="holds site/ and, while shown, notice.html")
    args = parser.parse_args(argv)
    handler = partial(_Handler, workdir=args.dir)
    with ThreadingHTTPServer((LOOPBACK, args.port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
