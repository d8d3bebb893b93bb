"""`recover lab` and `recover rehearse`: the QEMU lab fleet, its services, its history, the seed attacks.

Parses and calls :mod:`recovery.lab.fleet`, :mod:`recovery.lab.history` and
:mod:`recovery.lab.attacks`; nothing else lives here.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from recovery import rehearsal, ui
from recovery.engine.exit_codes import Exit
from recovery.lab import attacks, history, serial_attach
from recovery.lab.attacks import AttackError
from recovery.lab.daemon import LabError as ServiceError
from recovery.lab.fleet import Lab, LabError, LabStatus
from recovery.lab.fleet_setup import FLEET, SetupError
from recovery.lab.image import ImageBuildError, default_cache_dir
from recovery.lab.netns import NetnsError
from recovery.lab.rootpool import build_lab_image
from recovery.lab.vagrant_box import BoxError, ensure_box
from recovery.lab.vagrant_fleet import VagrantFleet
from recovery.lab.vagrant_lab import VagrantLabError
from recovery.lab.vm import GuestError
from recovery.transport.result import TransportError

T = TypeVar("T")
#: Failures with a message meant for the operator; anything else keeps its traceback.
LAB_FAILURES = (
    LabError, AttackError, SetupError, ServiceError, ImageBuildError, GuestError, TransportError, BoxError,
    VagrantLabError, NetnsError,
)
HOSTS = click.Choice([host.name for host in FLEET])


@click.group(name="lab", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the lab keeps disks, sockets, lab.json and its inventory "
         "(default: $RECOVERY_LAB_RUN or ~/.cache/recovery-lab/run).",
)  # fmt: skip
@click.pass_context
def lab(ctx: click.Context, run_dir: Path | None) -> None:
    """The lab fleet: eu-web, us-web and people as QEMU guests with real OpenZFS.

    \b
    recover lab up                     boot the fleet, start DNS, HAProxy and the mirror
    recover lab history                legitimate changes and periodic snapshots
    recover lab attack rsync-2009      re-enact a seed incident (ground truth in the run dir)
    recover lab ssh eu-web [CMD...]    a shell (or one command) as root, host key pinned
    recover lab down [--wipe]          stop everything the lab started
    recover lab box                    the lab image as a vagrant-libvirt box (vagrant/)
    """
    ctx.obj = Lab(run_dir)


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def up(fleet: Lab, as_json: bool) -> None:
    """Start the lab (or report that it runs) and write its inventory."""
    found = _guarded(fleet.up)
    if as_json:
        click.echo(json.dumps({**found.as_dict(), "inventory": str(fleet.inventory_file)}, indent=2))
        return
    _show(found)
    click.echo(f"inventory: {fleet.inventory_file}")


@lab.command()
@click.option("--wipe", is_flag=True, help="Also delete the guests' disks, keys and lab files.")
@click.pass_obj
def down(fleet: Lab, wipe: bool) -> None:
    """Stop every VM and service lab.json records, by PID."""
    fleet.down(wipe=wipe)
    click.echo("lab stopped" + (" and wiped" if wipe else ""))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(fleet: Lab, as_json: bool) -> None:
    """What runs: the LAN, each guest, each service."""
    found = fleet.status()
    if as_json:
        click.echo(json.dumps(found.as_dict(), indent=2))
    else:
        _show(found)


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("host", type=HOSTS)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def ssh(fleet: Lab, host: str, command: tuple[str, ...]) -> None:
    """Log in to HOST as root with the system ssh (or run COMMAND there)."""
    argv = _guarded(lambda: fleet.ssh_command(host, command))
    os.execvp(argv[0], argv)


@lab.command()
@click.argument("host", type=HOSTS)
@click.pass_obj
def console(fleet: Lab, host: str) -> None:
    """Attach to HOST's serial console (Ctrl-] detaches); guest output is made terminal-safe."""
    _guarded(fleet.require_running)
    serial_attach.attach(fleet.guest(host).serial_socket)


@lab.command()
def box() -> None:
    """Build the lab image as a vagrant-libvirt box and `vagrant box add` it (only when its recipe changed)."""
    name = _guarded(lambda: ensure_box(build_lab_image()))
    click.echo(f"vagrant box: {name}")


@lab.command(name="history")
@click.option("--rounds", type=click.IntRange(1, 50), default=history.ROUNDS, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def make_history(fleet: Lab, rounds: int, as_json: bool) -> None:
    """Legitimate changes (pages, uploads, a config tweak), each round followed by snapshots."""
    events = _guarded(lambda: history.make_history(fleet, rounds))
    if as_json:
        click.echo(json.dumps(events, indent=2, default=str))
        return
    for event in events:
        taken = ", ".join(f"{host} {name}" for host, name in event["snapshots"].items())
        click.echo(f"{event['at']}  {len(event['changes'])} changes, snapshots: {taken}")


@lab.command()
@click.argument("scenario", type=click.Choice(sorted(attacks.ATTACKS)))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def attack(fleet: Lab, scenario: str, as_json: bool) -> None:
    """Re-enact a seed incident; prints the ground-truth file (for grading only)."""
    truth = _guarded(lambda: attacks.ATTACKS[scenario](fleet))
    click.echo(json.dumps({"scenario": scenario, "ground_truth": str(truth)}) if as_json else f"ground truth: {truth}")


def _guarded(action: Callable[[], T]) -> T:
    """Lab failures as their message and exit status 1, not a traceback."""
    try:
        return action()
    except LAB_FAILURES as exc:
        raise click.ClickException(str(exc)) from None


def _show(found: LabStatus) -> None:
    if not found.components:
        click.echo(f"no lab recorded in {found.run_dir}")
        return
    for part in found.components:
        state = "running" if part.running else "stopped"
        click.echo(f"{part.name:<8} {part.kind:<8} {state:<8} {part.detail}")


@click.command()
@click.argument("target")
@click.option("--scenario", type=click.Choice(sorted(rehearsal.SCENARIOS)), required=True,
              help="Which seed incident the lab re-enacts before the recovery.")
@click.option("--lab", "kind", type=click.Choice(["qemu", "vagrant"]), default="qemu", show_default=True,
              help="qemu: the built-in lab (kept running afterwards, to look at). vagrant: the same fleet under "
                   "vagrant-libvirt from the lab's own box, libvirt as the out-of-band side (no rescue medium: "
                   "single-user mode), destroyed at the end.")
@click.option("--lab-dir", type=click.Path(path_type=Path), default=None,
              help="The lab's run directory [default: $RECOVERY_LAB_RUN or ~/.cache/recovery-lab/run; "
                   "~/.cache/recovery-lab/vagrant-run for --lab vagrant].")
@click.option("--reuse-lab", is_flag=True, help="Keep a running QEMU lab, and the golden images of its hosts, instead of starting a fresh one.")
@click.option("--unbootable", metavar="HOST", default=None,
              help="Failure rehearsal: HOST has no rescue medium and never comes back from its single-user boot.")
@click.option("--no-rescue", is_flag=True,
              help="Recover through the hosts' own single-user mode instead of the rescue image (shows what "
                   "the rootkit scenario does to a recovery that runs the host's own tools).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the grading as JSON on stdout (progress and the recovery's output go to stderr).")
def rehearse(target: str, scenario: str, kind: str, lab_dir: Path | None, reuse_lab: bool, unbootable: str | None,
             no_rescue: bool, as_json: bool) -> None:
    """Rehearse the recovery of TARGET in the lab: attack, `recover TARGET --yes`, then grade it.

    Brings the lab up (building its image on first use, about six minutes), captures golden
    images, makes a history, runs the attack, recovers, and checks the result against the
    attack's ground truth. Exit 0 only if every check passes.

    \b
    Examples:
      recover rehearse eu-web --scenario awstats-2005
      recover rehearse eu-web --scenario rsync-2009 --lab vagrant
    """
    say = ui.say_aside if as_json else ui.say
    if kind == "vagrant":
        result = _rehearse_in_vagrant(target, scenario, lab_dir, reuse_lab, unbootable, as_json, say)
    else:
        result = _rehearse_in_qemu(target, scenario, lab_dir, reuse_lab, unbootable, not no_rescue, as_json, say)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        ui.show_rehearsal(result)
    sys.exit(Exit.OK if result.passed else Exit.FAILED)


def _rehearse_in_qemu(target: str, scenario: str, lab_dir: Path | None, reuse_lab: bool, unbootable: str | None,
                      rescue: bool, as_json: bool, say: Callable[[str], None]) -> rehearsal.Rehearsal:
    try:
        return rehearsal.rehearse(target, scenario, Lab(lab_dir, progress=say), say, fresh=not reuse_lab,
                                  unbootable=unbootable, rescue=rescue, quiet=as_json)
    except LAB_FAILURES as exc:
        where = f" --run-dir {shlex.quote(str(lab_dir))}" if lab_dir else ""
        raise click.ClickException(f"the rehearsal stopped: {exc}\nThe lab is left as it is, to look at; "
                                   f"`recover lab{where} down` stops it.") from None


def _rehearse_in_vagrant(target: str, scenario: str, lab_dir: Path | None, reuse_lab: bool,
                         unbootable: str | None, as_json: bool, say: Callable[[str], None]) -> rehearsal.Rehearsal:
    """One fleet for one rehearsal, destroyed at the end: no `recover lab` command keeps it up between commands."""
    if reuse_lab:
        raise click.UsageError("--reuse-lab: the Vagrant fleet lives only as long as its rehearsal")
    fleet = VagrantFleet(lab_dir or default_cache_dir() / "vagrant-run", progress=say)
    try:
        return rehearsal.rehearse(target, scenario, fleet, say, unbootable=unbootable, rescue=False, quiet=as_json)
    except LAB_FAILURES as exc:
        raise click.ClickException(f"the rehearsal stopped: {exc}\nThe Vagrant fleet is destroyed; its files "
                                   f"and the recovery's run are kept in {fleet.run_dir}.") from None
    finally:
        fleet.down()
