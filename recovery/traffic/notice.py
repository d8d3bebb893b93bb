"""The security notice the known-good mirror shows while a service is diverted.

The mirror serves the notice page whenever the notice file exists (see
``recovery.lab.mirror``); `divert` publishes it and `return` withdraws it.
"""

from __future__ import annotations

import html
from pathlib import Path

PAGE = """\
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Security notice</title></head>
<body><h1>Security notice</h1><p>{text}</p></body></html>
"""


def publish(path: Path, text: str) -> None:
    """Write the notice page atomically (the text is escaped: it is shown to the public)."""
    staged = path.with_suffix(".tmp")
    staged.write_text(PAGE.format(text=html.escape(text)))
    staged.replace(path)


def withdraw(path: Path) -> None:
    path.unlink(missing_ok=True)
