"""The labs a rehearsal can run in: the built-in QEMU lab, or the Vagrant fleet.

Both offer what attacks, history and grading use: ``up``/``down``, ``reach()``
(where the guests answer), ``guest(name).run``, ``fleet_keys()``, the
inventory, ground-truth and history files.
"""

from __future__ import annotations

from recovery.lab.fleet import Lab
from recovery.lab.vagrant_fleet import VagrantFleet

AnyLab = Lab | VagrantFleet
