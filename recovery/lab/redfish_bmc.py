"""The lab's Redfish BMC: the sushy-tools emulator with its fake systems driver, on 127.0.0.1.

It runs as its own process (``python -m recovery.lab.redfish_bmc``), which
starts the emulator with two lab settings applied first:

- the fake driver applies a power change after a random 1 to 11 s, to act
  like hardware; the lab takes the shortest delay every time, so waits are
  still exercised and tests stay short;
- virtual media downloads go to the emulator's own temp dir, removed on stop.

Logins are checked against a bcrypt htpasswd file, so a wrong password is
refused as on a real BMC.
"""

from __future__ import annotations

import random
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Sequence

import bcrypt

from recovery.lab.daemon import LabDaemon
from recovery.lab.ports import LOOPBACK, free_port

CONFIG_FILE = "emulator.conf"

_CONFIG = """\
SUSHY_EMULATOR_LISTEN_IP = {host!r}
SUSHY_EMULATOR_LISTEN_PORT = {port!r}
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_STATE_DIR = {state!r}
SUSHY_EMULATOR_AUTH_FILE = {auth!r}
SUSHY_EMULATOR_VMEDIA_VERIFY_SSL = False
SUSHY_EMULATOR_FAKE_SYSTEMS = [
    {{"uuid": {uuid!r}, "name": {name!r}, "power_state": {power!r}, "external_notifier": False, "nics": []}},
]
"""


class PromptHardware(random.Random):
    """Every delay drawn is the shortest one allowed."""

    def randint(self, a: int, b: int) -> int:
        return a


class LabRedfish(LabDaemon):
    """One fake ComputerSystem named ``system`` behind a Redfish service on a free loopback port."""

    name = "redfish-bmc"

    def __init__(self, system: str, username: str, password: str, powered_on: bool = True) -> None:
        super().__init__()
        self.system = system
        self.system_id = str(uuid.uuid4())
        self.username = username
        self.password = password
        self.powered_on = powered_on
        self.host = LOOPBACK
        self.port = 0

    def __repr__(self) -> str:
        return f"LabRedfish({self.url}, pid={self.pid})"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _prepare(self, workdir: Path) -> Sequence[str]:
        self.port = free_port()
        (workdir / "state").mkdir()
        (workdir / "tmp").mkdir()
        auth = workdir / "htpasswd"
        digest = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        auth.write_text(f"{self.username}:{digest}\n")
        config = workdir / CONFIG_FILE
        config.write_text(
            _CONFIG.format(
                host=self.host,
                port=self.port,
                state=str(workdir / "state"),
                auth=str(auth),
                uuid=self.system_id,
                name=self.system,
                power="On" if self.powered_on else "Off",
            )
        )
        return [sys.executable, "-m", "recovery.lab.redfish_bmc", "--config", str(config), "--fake",
                "--interface", self.host, "--port", str(self.port)]  # fmt: skip

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/redfish/v1/", timeout=0.2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False


def main() -> int:
    """Run the emulator with the lab settings; its own argument parser reads ``sys.argv``."""
    from sushy_tools.emulator import main as emulator
    from sushy_tools.emulator.resources.systems import fakedriver

    config = Path(sys.argv[sys.argv.index("--config") + 1])
    tempfile.tempdir = str(config.parent / "tmp")
    fakedriver.random = PromptHardware()  # type: ignore[attr-defined]
    return emulator.main()


if __name__ == "__main__":
    sys.exit(main())
