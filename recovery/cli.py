"""The `recover` command: parse, call the engine, render. Nothing else lives here."""

from __future__ import annotations

import difflib
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import click

import recovery.steps  # noqa: F401  (registers the step kinds)
from recovery import ui
from recovery.actions import golden_verify as golden_verify_action
from recovery.actions.check import preflight
from recovery.actions.check.model import Report as CheckReport
from recovery.actions.check.run import Scope
from recovery.actions.check.run import check as check_action
from recovery.actions import salvage as salvage_action
from recovery.actions import undo as undo_action
from recovery.config.errors import ConfigError
from recovery.config.inventory import Inventory
from recovery.config.load import load_inventory
from recovery.config.schema import write_schemas
from recovery.config.targets import UnknownTarget, limit, resolve
from recovery.engine import control, registry, runlog, runstore, state
from recovery.engine.exit_codes import Exit
from recovery.engine.plan import Plan
from recovery.engine.runner import Outcome
from recovery.engine.runstore import RunStoreError
from recovery.transport.result import TransportError
from recovery.zfs import manifest
from recovery.zfs.client import AgentError, AgentReplyError
from recovery.zfs.salvage import SalvageError

EPILOG = """\b
Exit codes:
  0    every step done (or skipped by the operator) on every host
  1    the run finished, but some steps failed on some hosts
  2    bad command line, config error, unknown target or run
  3    not started: confirmation declined or impossible
  4    a step with on_failure = "stop" failed; the run stopped early
  5    a step was in flight at a crash and cannot be re-checked:
       `recover retry` or `recover skip` it
  6    `recover journal verify` found a broken hash chain
  7    the journal could not be written (disk full?): the run stopped
       at once; free space, then `recover resume RUN`
  8    `recover check`: nothing failed, but some item warns
       (a FAIL exits 1; `recover TARGET` refuses to start on one: exit 3)
  130  interrupted; `recover resume RUN` continues
"""


class TargetGroup(click.Group):
    """`recover eu-web` is short for `recover run eu-web` (and `recover golden eu-web` for
    `recover golden capture eu-web`): a first word that is no command is a target.

    ``lazy`` commands live in modules imported only when the command is used:
    the lab is most of the code and only `lab` and `rehearse` need it.
    """

    default_command = "run"
    lazy: dict[str, tuple[str, str]] = {}  # name -> (module:attribute, short help)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.list_commands(ctx) and not args[0].startswith("-"):
            typo = difflib.get_close_matches(args[0], self.list_commands(ctx), n=1, cutoff=0.75)
            if typo and args[0] not in _inventory_names(args):
                raise click.UsageError(f"no command '{args[0]}' and no target of that name; "
                                       f"did you mean `recover {typo[0]}`?")
            args = [self.default_command, *args]
        return super().resolve_command(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*self.commands, *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, attribute = self.lazy[name][0].split(":")
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list without importing lazy commands for their help line."""
        rows = [(name, self.commands[name].get_short_help_str(limit=70)) for name in sorted(self.commands)]
        rows += [(name, short) for name, (_, short) in self.lazy.items() if name not in self.commands]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


class GoldenGroup(TargetGroup):
    default_command = "capture"


def _inventory_names(args: list[str]) -> set[str]:
    """Hosts, groups and services of the inventory the command line names (or the default one)."""
    path = Path(args[args.index("--inventory") + 1]) if "--inventory" in args[:-1] else Path("inventory.toml")
    try:
        inventory = load_inventory(path)
    except (ConfigError, OSError):
        return set()
    return {*inventory.hosts, *inventory.groups, *inventory.services}


class MainGroup(TargetGroup):
    lazy = {
        "lab": ("recovery.cli_lab:lab", "The QEMU lab fleet: up, down, status, ssh, console, history, attack."),
        "rehearse": ("recovery.cli_lab:rehearse", "Rehearse the recovery of TARGET in the lab: attack, recover, grade."),
    }


@click.group(cls=MainGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="recovery")
@click.option("--no-color", is_flag=True, help="Plain text output (so is NO_COLOR=1 in the environment).")
def main(no_color: bool) -> None:
    """Recover a compromised web fleet from known-good ZFS snapshots.

    \b
    recover plan eu-web        show what `recover eu-web` would do, step by step, host by host
    recover eu-web             divert traffic, contain, preserve evidence, restore, return
    recover status             the state of the newest run (or `recover status RUN`)
    recover resume RUN         continue a run after a crash or Ctrl-C; done steps are not redone
    recover retry RUN --host H --step S / recover skip ...   deal with one failed step
    recover golden eu-web      capture the known-good state before a host goes live
    recover check eu-web       readiness before an incident: PASS/WARN/FAIL per item, with the fix
    recover rehearse eu-web --scenario awstats-2005   the whole incident, in the lab, graded
    recover lab up             the QEMU lab fleet with real OpenZFS

    TARGET may name a host, a group or a service of the inventory; --limit narrows it
    (`--limit 'web,!us-web'`: host or group patterns, ! excludes). Shell completion:
    eval "$(_RECOVER_COMPLETE=bash_source recover)" (zsh_source, fish_source likewise).
    """
    os.umask(0o077)  # runs, evidence and golden streams hold whole datasets: for the operator's eyes only
    runlog.quiet()
    if no_color:
        ui.plain()


def config_options(playbook: str = "playbooks/recover.toml") -> Callable[..., Any]:
    """--inventory, --playbook (with the playbook a command uses by default) and --limit."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--limit", "limit_spec", default=None, metavar="PATTERNS",
                          help="Only these hosts of TARGET: 'web,!us-web' (host/group patterns, ! excludes).")(fn)
        fn = click.option("--playbook", "playbook", type=click.Path(path_type=Path), default=Path(playbook),
                          show_default=True, help="Playbook file.")(fn)
        return click.option("--inventory", "inventory", type=click.Path(path_type=Path),
                            default=Path("inventory.toml"), show_default=True, help="Inventory file.")(fn)
    return decorate


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(fn)


def runs_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--runs-dir", default=None, envvar="RECOVERY_RUNS",
                        help="Where runs are stored [default: ./runs].")(fn)


def bundle(*decorators: Callable[..., Any]) -> Callable[..., Any]:
    """Several click decorators as one, applied in the order written."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn
    return decorate


def fail(messages: list[str] | str, code: Exit = Exit.USAGE) -> None:
    for message in [messages] if isinstance(messages, str) else messages:
        ui.errors.print(f"[bold red]error:[/] {ui.safe(message)}")
    sys.exit(code)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Config, target and run-store errors become one clear line each and exit 2."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail(exc.messages)
        except (UnknownTarget, RunStoreError) as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            ui.errors.print("interrupted: `recover resume` continues the run")
            sys.exit(Exit.INTERRUPTED)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


@main.command()
@click.argument("target")
@config_options()
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@guarded
def plan(target: str, inventory: Path, playbook: Path, limit_spec: str | None, as_json: bool) -> None:
    """Show the plan for TARGET (steps x hosts, in order) without touching anything."""
    _, the_plan = control.prepare(inventory, playbook, target, limit_spec)
    if as_json:
        click.echo(json.dumps(ui.plan_json(the_plan), indent=2))
    else:
        ui.show_plan(the_plan)


#: What every command that starts a run takes: where runs go, --yes and --json.
start_options = bundle(
    runs_option,
    click.option("--yes", is_flag=True, help="Do not ask for confirmation (automation, rehearsals)."),
    click.option("--json", "as_json", is_flag=True, help="Progress as JSON lines, then a JSON summary."),
)


def _check_items(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """``--accept-check`` values name a preflight item, alone or after ``HOST:``."""
    known = preflight.PREFLIGHT_ITEMS
    for value in values:
        if value.rpartition(":")[2] not in known:
            raise click.BadParameter(f"{value!r} names no check item (items: {', '.join(known)})")
    return values


@main.command("run")
@click.argument("target")
@config_options()
@start_options
@click.option("--admit", multiple=True, metavar="HOST",
              help="Let HOST back into rotation at `return` without this run's evidence (needs --why; journaled).")
@click.option("--why", default="", help="Why the --admit hosts are trusted (journaled with your name).")
@click.option("--accept-check", "accepted", multiple=True, metavar="[HOST:]ITEM", callback=_check_items,
              help="Start although the preflight check's ITEM fails, on every host or on HOST only "
                   "(repeatable; journaled; --yes never does this).")
@guarded
def run_cmd(target: str, inventory: Path, playbook: Path, limit_spec: str | None, runs_dir: str | None, yes: bool,
            as_json: bool, admit: tuple[str, ...], why: str, accepted: tuple[str, ...]) -> None:
    """Run the playbook against TARGET (checks what it will reach, then asks for confirmation)."""
    _start(target, inventory, playbook, limit_spec, runs_dir, yes, as_json, admit, why, accepted)


@main.group(cls=GoldenGroup)
def golden() -> None:
    """Golden images: `recover golden TARGET` captures, `recover golden verify TARGET` checks."""


@golden.command("capture")
@click.argument("target")
@config_options("playbooks/golden.toml")
@start_options
@guarded
def golden_capture(target: str, inventory: Path, playbook: Path, limit_spec: str | None, runs_dir: str | None,
                   yes: bool, as_json: bool) -> None:
    """Capture the known-good (golden) state of TARGET before it goes live."""
    _start(target, inventory, playbook, limit_spec, runs_dir, yes, as_json)


@golden.command("verify")
@click.argument("target")
@click.option("--inventory", type=click.Path(path_type=Path), default=Path("inventory.toml"), show_default=True,
              help="Inventory file.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Golden store [default: $RECOVERY_GOLDEN_STORE or ./golden-store].")
@json_option
@guarded
def golden_verify(target: str, inventory: Path, store: Path | None, as_json: bool) -> None:
    """Check TARGET's golden snapshots (guid, createtxg, hold) and their stored streams (sha256)."""
    results = golden_verify_action.golden_verify(inventory, target, manifest.store_path(store))
    bad = sum(not f.ok for findings in results.values() for f in findings)
    if as_json:
        click.echo(json.dumps({host: [{"what": f.what, "ok": f.ok, "detail": f.detail} for f in findings]
                               for host, findings in results.items()}, indent=2))
    for host, findings in results.items() if not as_json else ():
        for finding in findings:
            mark = "[green]PASS[/]" if finding.ok else "[bold red]FAIL[/]"
            ui.console.print(f"{mark} {ui.safe(host)}: {ui.safe(finding.what)} — {ui.safe(finding.detail)}")
    sys.exit(Exit.FAILED if bad else Exit.OK)


@main.command("check")
@click.argument("target")
@click.option("--inventory", type=click.Path(path_type=Path), default=Path("inventory.toml"), show_default=True,
              help="Inventory file.")
@click.option("--limit", "limit_spec", default=None, metavar="PATTERNS",
              help="Only these hosts of TARGET: 'web,!us-web' (host/group patterns, ! excludes).")
@click.option("--deep", is_flag=True, help="Also log in on each host's serial console (and out again), "
                                           "and hash the golden streams.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              help="Golden store [default: $RECOVERY_GOLDEN_STORE or ./golden-store].")
@json_option
@guarded
def check_cmd(target: str, inventory: Path, limit_spec: str | None, deep: bool, store: Path | None,
              as_json: bool) -> None:
    """Readiness of TARGET before an incident: PASS/WARN/FAIL per item, with the fix; changes nothing.

    \b
    Exit 0 all pass, 8 some item warns (nothing fails), 1 some item fails.
    Items: bmc, ssh, console (--deep), golden, snapshots (age vs check.rpo),
    snapshot-schedule, atime (access times on make every diff slower),
    secrets, rescue-image, cgi, automation-keys, logs, root-login per host;
    secrets, dns, haproxy per service.
    """
    inv = load_inventory(inventory)
    resolved = resolve(inv, target)
    if limit_spec:
        resolved = limit(inv, resolved, limit_spec)
    report = check_action(inv, target, Scope.of(resolved, deep, manifest.store_path(store)))
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        ui.show_check(report)
    sys.exit(report.exit_code())


def _start(target: str, inventory: Path, playbook: Path, limit_spec: str | None, runs_dir: str | None, yes: bool,
           as_json: bool, admit: tuple[str, ...] = (), why: str = "", accepted: tuple[str, ...] = ()) -> None:
    inv, the_plan = control.prepare(inventory, playbook, target, limit_spec)
    admitted = control.admissions(inv, the_plan, admit, why)
    if not as_json:
        ui.show_plan(the_plan)
    control.resolve_secrets(inv, the_plan, inventory)
    checks = _preflight(inv, the_plan, accepted, as_json)
    _confirm(target, the_plan.destructive, yes, "start")
    run = runstore.create(runstore.runs_root(runs_dir), target, inventory, playbook, limit_spec)
    run.lock()
    if not as_json:
        ui.console.print(f"run [bold]{run.id}[/] in {run.dir}")
    with _progress(yes, as_json) as progress:
        outcome = control.execute(run, the_plan, inv, progress, "run_started", admitted,
                                  confirmed="--yes" if yes else "operator", checks=checks)
    _finish(run.id, outcome, as_json)


def _preflight(inv: Inventory, the_plan: Plan, accepted: tuple[str, ...], as_json: bool) -> dict[str, Any]:
    """Check what the plan will reach before anything changes; refuse on a FAIL not accepted by name.

    Returns what the run journals with its start: the check's status and the items accepted.
    """
    report = preflight.preflight(inv, the_plan)
    if not as_json and report.subjects:
        ui.show_check(report)
    refused = preflight.refused(report, accepted)
    if refused:
        fail([f"preflight check failed: {name} — {detail}" for name, detail in _details(report, refused)]
             + [f"nothing was changed; fix it, or start with --accept-check ITEM for each: "
                f"{', '.join(sorted({n.split(':', 1)[1] for n in refused}))}"], Exit.REFUSED)
    overridden = [name for name in report.failures() if name not in refused]
    for name in overridden:
        ui.errors.print(f"[bold yellow]warning:[/] preflight FAIL accepted by --accept-check: {ui.safe(name)}")
    return {"status": report.status.value, "accepted": overridden, "failed": report.failures()}


def _details(report: CheckReport, names: list[str]) -> list[tuple[str, str]]:
    return [(f"{s.name}:{i.name}", i.detail) for s, i in report.items() if f"{s.name}:{i.name}" in names]


def _progress(yes: bool, as_json: bool) -> ui.LiveProgress:
    return ui.JsonProgress(yes) if as_json else ui.LiveProgress(yes)


def _confirm(target: str, destructive: bool, yes: bool, verb: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"refusing to {verb} without confirmation: stdin is not a terminal; "
             "pass --yes to run unattended", Exit.REFUSED)
    if destructive:
        answer = click.prompt(f"This run changes hosts (destructive steps). Type '{target}' to {verb}",
                              default="", show_default=False)
        if answer.strip() != target:
            fail("not confirmed: nothing was done", Exit.REFUSED)
    elif not click.confirm(f"{verb.capitalize()} the run?", default=False):
        fail("not confirmed: nothing was done", Exit.REFUSED)


def _finish(run_id: str, outcome: Outcome, as_json: bool = False) -> None:
    codes = {"done": Exit.OK, "failed": Exit.FAILED, "stopped": Exit.STOPPED,
             "needs-operator": Exit.NEEDS_OPERATOR, "journal-failed": Exit.JOURNAL_FAILED}
    if as_json:
        click.echo(json.dumps({"run": run_id, "status": outcome.status, "done": outcome.done,
                               "failed": outcome.failed, "skipped": outcome.skipped,
                               "exit_code": int(codes[outcome.status])}))
        sys.exit(codes[outcome.status])
    ui.console.print(f"run {run_id}: [bold]{outcome.status}[/] — {outcome.done} done, "
                     f"{outcome.failed} failed, {outcome.skipped} skipped")
    if outcome.journal_error:
        ui.errors.print(f"[bold red]error:[/] {ui.safe(outcome.journal_error)}")
    if outcome.status != "done":
        ui.console.print(f"see `recover status {run_id}`; fix the cause, then `recover retry` / "
                         f"`recover skip` / `recover resume {run_id}`")
    sys.exit(codes[outcome.status])


@main.command()
@click.argument("run_id", metavar="RUN")
@runs_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@guarded
def resume(run_id: str, runs_dir: str | None, yes: bool) -> None:
    """Continue RUN: done steps are not redone, an interrupted step is re-checked first."""
    _continue(run_id, runs_dir, yes, None)


#: The options that name one step of a run: RUN --host H --step S.
one_step = bundle(
    click.argument("run_id", metavar="RUN"),
    click.option("--host", required=True, help="Host of the failed step."),
    click.option("--step", "step_id", required=True, help="Name of the failed step."),
    runs_option,
    click.option("--yes", is_flag=True, help="Do not ask for confirmation."),
)


@main.command()
@one_step
@guarded
def retry(run_id: str, host: str, step_id: str, runs_dir: str | None, yes: bool) -> None:
    """Apply one failed step of RUN again, then continue the run."""
    _continue(run_id, runs_dir, yes, ("retry_requested", host, step_id))


@main.command()
@one_step
@guarded
def skip(run_id: str, host: str, step_id: str, runs_dir: str | None, yes: bool) -> None:
    """Accept one failed step of RUN as done (journaled), then continue the run."""
    _continue(run_id, runs_dir, yes, ("step_skipped", host, step_id))


def _continue(run_id: str, runs_dir: str | None, yes: bool, mark: tuple[str, str, str] | None) -> None:
    run = runstore.open_run(runstore.runs_root(runs_dir), run_id)
    run.lock()
    inv, the_plan = control.reopen(run)
    control.resolve_secrets(inv, the_plan, run.inventory_path)
    if mark:
        event, host, step_id = mark
        control.mark(run, the_plan, host, step_id, event)
    _confirm(run.meta["target"], False, yes, "resume")
    with _progress(yes, False) as progress:
        outcome = control.execute(run, the_plan, inv, progress, "run_resumed")
    _finish(run.id, outcome)


@main.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@runs_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@guarded
def status(run_id: str | None, runs_dir: str | None, as_json: bool) -> None:
    """Show the state of every step on every host of RUN (default: the newest run)."""
    run = runstore.open_run(runstore.runs_root(runs_dir), run_id)
    _, the_plan = control.reopen(run)
    records = run.journal.records()
    rows = ui.status_rows(the_plan, state.fold(records))
    run_status = state.run_status(records)
    if as_json:
        click.echo(json.dumps({"run": run.id, "target": run.meta["target"], "status": run_status,
                               "steps": rows}, indent=2))
    else:
        ui.show_status(run.id, run.meta["target"], run_status, rows)


@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("host")
@runs_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@guarded
def undo(run_id: str, host: str, runs_dir: str | None, yes: bool, as_json: bool) -> None:
    """Swap HOST's datasets restored by RUN back to the state before the restore.

    The restored state is kept as <dataset>.restored-<RUN> (read-only); nothing is destroyed.
    """
    run = runstore.open_run(runstore.runs_root(runs_dir), run_id)
    run.lock()
    _confirm(host, True, yes, "undo the restore")
    try:
        datasets = undo_action.undo(run, host, (lambda text: None) if as_json else
                                    (lambda text: ui.console.print(ui.safe(text))))
    except (AgentError, AgentReplyError, TransportError) as exc:
        fail(f"{host}: undo stopped: {exc} (run `recover undo` again to continue)", Exit.FAILED)
    if as_json:
        click.echo(json.dumps({"run": run.id, "host": host, "undone": datasets}))


@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("host")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@runs_option
@click.option("--force", is_flag=True, help="Also copy files triaged as indicators of compromise.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@guarded
def salvage(run_id: str, host: str, paths: tuple[str, ...], runs_dir: str | None, force: bool, yes: bool,
            as_json: bool) -> None:
    """Copy legitimate files lost by RUN's restore from HOST's quarantine back into service.

    Each file's triage class (from the run's diff) is shown first; indicators are refused
    unless --force. Files are copied from the held evidence snapshot, read-only.
    """
    run = runstore.open_run(runstore.runs_root(runs_dir), run_id)
    run.lock()
    _confirm(host, True, yes, "copy files into the restored datasets")
    try:
        classes = salvage_action.salvage(run, host, list(paths), force, (lambda text: None) if as_json else
                                         (lambda text: ui.console.print(ui.safe(text))))
    except (AgentError, AgentReplyError, TransportError, SalvageError) as exc:
        fail(f"{host}: salvage stopped: {exc}", Exit.FAILED)
    if as_json:
        click.echo(json.dumps({"run": run.id, "host": host, "salvaged": classes, "forced": force}))
    else:
        ui.console.print(f"salvaged {len(paths)} file(s) on {host}")


@main.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@runs_option
@json_option
@guarded
def report(run_id: str | None, runs_dir: str | None, as_json: bool) -> None:
    """Write the incident report of RUN (Markdown, HTML, SVG timeline) into its run directory."""
    run = runstore.open_run(runstore.runs_root(runs_dir), run_id)
    _, the_plan = control.reopen(run)
    written = control.write_report(run, the_plan)
    if as_json:
        click.echo(json.dumps({"run": run.id, "written": [str(p) for p in written]}))
    for path in written if not as_json else ():
        ui.console.print(f"wrote {path}")




@main.group()
def journal() -> None:
    """Inspect a run's journal."""


@journal.command()
@click.argument("run_id", metavar="RUN")
@runs_option
@json_option
@guarded
def verify(run_id: str, runs_dir: str | None, as_json: bool) -> None:
    """Check RUN's hash chain: an edited, inserted or deleted record is reported (exit 6).

    With RECOVERY_JOURNAL_KEY set (a file: or env: reference to the operator's key, kept
    outside the run directory) records are keyed with HMAC-SHA256 and a rewrite needs the key.
    """
    try:
        run = runstore.open_run(runstore.runs_root(runs_dir), run_id)
    except runstore.JournalMissing as exc:
        fail(str(exc), Exit.JOURNAL_TAMPERED)
    problems = run.journal.verify()
    records = run.journal.records()
    if as_json:
        click.echo(json.dumps({"run": run.id, "intact": not problems, "problems": problems,
                               "keyed": run.journal.key is not None, "records": len(records),
                               "head": records[-1].hash if records else None}))
        sys.exit(Exit.JOURNAL_TAMPERED if problems else Exit.OK)
    if problems:
        fail([f"journal of {run.id}: {p}" for p in problems], Exit.JOURNAL_TAMPERED)
    keyed = "keyed (HMAC-SHA256)" if run.journal.key else "unkeyed (SHA-256: proves order, not origin)"
    ui.console.print(f"journal of {run.id}: intact, {keyed}, {len(records)} records, head {records[-1].hash}")


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("schema"), show_default=True,
              help="Directory for inventory.schema.json and playbook.schema.json.")
def schema(out: Path) -> None:
    """Write JSON Schema for the inventory and playbook files (for editors, e.g. taplo)."""
    for path in write_schemas(out, {name: registry.get(name).Params for name in registry.known()}):  # type: ignore[union-attr]
        ui.console.print(f"wrote {path}")
