"""The HTML report as a person sees it: rendered by headless Chromium, offline, with its text and its picture."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from recovery.report.render import write
from tests.support.png import pixels
from tests.support.sample_report import sample_report

pytestmark = pytest.mark.integration

SIZE = (1200, 1600)
GREEN, RED = bytes.fromhex("2e7d32"), bytes.fromhex("c62828")  # done and failed bars (gantt.COLOURS)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("chromium"):
        pytest.fail("chromium is not installed (apt-get install chromium)")
    directory = tmp_path_factory.mktemp("report")
    write(sample_report(), directory)
    return directory


def chromium(directory: Path, *args: str) -> str:
    """Headless Chromium on the report file, with no proxy, no network to ask and a profile of its own."""
    done = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
                           "--no-first-run", f"--user-data-dir={directory / 'profile'}", *args,
                           (directory / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_screenshot_shows_a_page_with_its_timeline(rendered: Path) -> None:
    shot = rendered / "report.png"
    chromium(rendered, f"--screenshot={shot}", f"--window-size={SIZE[0]},{SIZE[1]}", "--hide-scrollbars")
    width, height, rows = pixels(shot)
    assert (width, height) == SIZE
    colours = Counter(row[i:i + 3] for row in rows for i in range(0, len(row), len(row) // width))
    white = colours[b"\xff\xff\xff"]
    assert len(colours) > 100, "the page looks blank"
    assert white < 0.95 * width * height, "the page is almost all white"
    assert colours[GREEN] > 500 and colours[RED] > 500, "the timeline's done and failed bars are not drawn"


def test_the_rendered_text_is_there_and_host_markup_stayed_text(rendered: Path) -> None:
    dom = chromium(rendered, "--dump-dom")
    for text in ("Incident recovery report: www", "What did not work", "Hosts", "Timeline",
                 "Indicators of compromise", "Back in rotation", "Off-host copies", "eu-web", "us-web",
                 "console login timed out", "KEPT OUT", "time since start", "6:00"):
        assert text in dom, text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "<script" not in dom
    assert dom.index("eu-web: console login timed out") < dom.index("<h2>Hosts</h2>")  # failures first
