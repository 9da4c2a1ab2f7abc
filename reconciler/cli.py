"""The command line: parse flags, call one core function, render, return an exit code.

Exit codes are the same on every command (see reconciler.errors.ExitCode); `main` maps every exception to
one of them in one place and never shows a traceback for the user's own mistakes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler import __version__
from reconciler.errors import ExitCode, InvalidInputError, ReconcilerError, StateError, exit_code_for
from reconciler.operations import (
    adopt_fleet,
    apply_changes,
    dump_fleet,
    open_workspace,
    plan_changes,
    refresh_fleet,
)
from reconciler.plan import Plan, read_plan_file, write_plan_file
from reconciler.render.diagnostics import RENDERERS, render_error_json
from reconciler.render.json import render_json
from reconciler.render.markdown import render_markdown
from reconciler.render.state import render_state, render_state_markdown, state_summary
from reconciler.render.text import render_text
from reconciler.sandbox.listen import parse_listen
from reconciler.sandbox.world import DEFAULT_FLEET
from reconciler.state.addresses import addresses, describe, remove
from reconciler.state.lock import Lease
from reconciler.status import fleet_status, render_status
from reconciler.validate import validate_project
from reconciler.words import plural


@dataclass(slots=True)
class Options:
    """What the top-level options chose, shared with every command."""

    config: Path


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "-c",
    default="reconciler.yaml",
    envvar="RECONCILER_CONFIG",
    show_default=True,
    help="Project settings file.",
)
@click.option(
    "--chdir",
    "-C",
    type=click.Path(exists=True, file_okay=False),
    envvar="RECONCILER_CHDIR",
    help="Change to this directory before doing anything else.",
)
@click.version_option(__version__, prog_name="reconciler")
@click.pass_context
def cli(ctx: click.Context, config: str, chdir: str | None) -> None:
    """Manage Stellantis fleet callbacks and preconditioning programs as code."""
    if chdir:
        os.chdir(chdir)
    ctx.obj = Options(Path(config))


F = TypeVar("F", bound=Callable[..., Any])


def json_errors(command: F) -> F:
    """With `--format json`, an error still answers in JSON on stdout (`result`, `exit_code`, and the
    diagnostics of invalid manifests or settings), so a tool reading stdout never gets nothing; the text goes to
    stderr as usual."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ReconcilerError as error:
            if kwargs.get("fmt") != "json":
                raise
            _report(error)
            render_error_json(error, sys.stdout)
            return int(exit_code_for(error))

    return wrapper  # type: ignore[return-value]


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(RENDERERS)),
    default="text",
    show_default=True,
    help="text for people, json for tools, github for pull-request annotations.",
)
@click.option("--strict", is_flag=True, help="Treat warnings, unset ${env:...} variables among them, as errors.")
@click.pass_obj
@json_errors
def validate(opts: Options, fmt: str, strict: bool) -> int:
    """Check reconciler.yaml and the manifests offline: schema and domain rules, no credentials needed."""
    report = validate_project(opts.config, os.environ, strict=strict)
    RENDERERS[fmt](report, sys.stdout)
    return int(report.exit_code)


@cli.command()
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve on (port 0: any free port)."
)
@click.option("--vehicles", type=click.IntRange(0, 1_000_000), default=100, show_default=True)
@click.option("--fleet", default=DEFAULT_FLEET, show_default=True, help="Fleet id.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same vehicles and draws.")
@click.option("--speed", type=click.FloatRange(min=0.001), default=1.0, show_default=True, help="Divides every delay.")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Remotes that fail.")
@click.option(
    "--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True, help="Requests answered 500."
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Writes whose connection is cut after the work is done.",
)
@click.option("--latency", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Added per request, ms.")
@click.option("--rate-limit", type=click.FloatRange(min=0.01), default=100.0, show_default=True, help="Requests/s.")
@click.option("--daily-limit", type=click.IntRange(min=1), default=100_000, show_default=True, help="Requests/day.")
@click.option("--offline-rate", type=click.FloatRange(0, 1), default=0.02, show_default=True, help="Vehicles offline.")
@click.option("--asleep-rate", type=click.FloatRange(0, 1), default=0.3, show_default=True, help="Vehicles asleep.")
@click.option("--username", default="sandbox", show_default=True)
@click.option("--password", default="sandbox-password", show_default=True)
@click.option("--client-id", default="sandbox-client", show_default=True)
@click.option("--deliver-anywhere", is_flag=True, help="Also send notifications to webhooks not on this machine.")
@click.option("--print-config", is_flag=True, help="Print a reconciler.yaml for this sandbox and exit.")
def sandbox(listen: str, print_config: bool, **options: Any) -> int:
    """Serve a local emulator of the Fleet API with simulated vehicles, until stopped."""
    from reconciler.sandbox.app import SandboxSettings
    from reconciler.sandbox.server import listen_warning, serve
    from reconciler.sandbox.server import print_config as write_sandbox_config

    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    options["latency_ms"] = options.pop("latency")
    settings = SandboxSettings(**options)
    if print_config:
        write_sandbox_config(settings, host, port, sys.stdout)
        return 0
    warning = listen_warning(settings, host)
    if warning:
        click.echo(warning, err=True)
    serve(settings, host, port, sys.stdout)
    return 0


def selection_options(command: F) -> F:
    """--target, --exclude, --retry-failed and --takeover: what plan and apply share about choosing changes."""
    command = click.option(
        "--takeover", is_flag=True, help="Replace programs reconciler did not set in the slots it manages."
    )(command)
    command = click.option(
        "--retry-failed", is_flag=True, help="Also retry remotes that failed with a permanent cause."
    )(command)
    command = click.option("--exclude", multiple=True, metavar="SEL", help="Leave out changes matching the selector.")(
        command
    )
    return click.option(
        "--target", multiple=True, metavar="SEL", help="Only changes matching vin:, group:, schedule:, callback:."
    )(command)


PLAN_FORMATS = ("text", "markdown", "json")
GUARDS = ("max_deleted_slots", "max_changed_vehicles")


def _colour(stream: Any) -> bool:
    """Colour only on a terminal that shows it: not with NO_COLOR set, nor on TERM=dumb (editors, some CI)."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def _render_plan(data: dict[str, Any], fmt: str, code: ExitCode) -> None:
    if fmt == "json":
        render_json(data, sys.stdout, result=code.result)
    elif fmt == "markdown":
        render_markdown(data, sys.stdout)
    else:
        render_text(data, sys.stdout, colour=_colour(sys.stdout))


def _warn(diagnostics: Any) -> None:
    for diagnostic in diagnostics:
        click.echo(diagnostic.format(), err=True)


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan for `apply PLAN`.")
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes, 0 when there are none.")
@selection_options
@click.pass_obj
@json_errors
def plan(
    opts: Options,
    out: Path | None,
    fmt: str,
    detailed_exitcode: bool,
    target: tuple[str, ...],
    exclude: tuple[str, ...],
    retry_failed: bool,
    takeover: bool,
) -> int:
    """Compare the manifests with the recorded state and show the API calls apply would make."""
    opened = open_workspace(opts.config, os.environ)
    result, _, _, warnings = plan_changes(
        opened, os.environ, targets=target, excludes=exclude, retry_failed=retry_failed, takeover=takeover
    )
    _warn(warnings)
    if out is not None:
        write_plan_file(result, out)
    code = ExitCode.CHANGES if detailed_exitcode and result.has_changes else ExitCode.OK
    _render_plan(result.to_dict(), fmt, code)
    if out is not None:
        click.echo(f"Saved the plan to {out}; apply exactly this plan with: reconciler apply {out}", err=True)
    return int(code)


@cli.command()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply without asking (CI).")
@click.option("--parallelism", type=click.IntRange(1, 256), help="Vehicles worked on at once (api.parallelism).")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(min=0),
    is_flag=False,
    flag_value=600,
    default=None,
    metavar="[SECONDS]",
    help="Wait for the outcome of every remote (600 s when no value is given).",
)
@click.option("--allow", multiple=True, type=click.Choice(GUARDS), help="Go on although this guard is exceeded.")
@selection_options
@click.pass_obj
def apply(
    opts: Options,
    plan_file: Path | None,
    auto_approve: bool,
    parallelism: int | None,
    wait_seconds: int | None,
    allow: tuple[str, ...],
    target: tuple[str, ...],
    exclude: tuple[str, ...],
    retry_failed: bool,
    takeover: bool,
) -> int:
    """Make the API calls of a plan (made now, or saved with plan --out) and record every result."""
    from reconciler.apply import summary_lines
    from reconciler.render.progress import StreamProgress

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not auto_approve and not interactive:
        raise click.UsageError("apply needs --auto-approve when it cannot ask (no terminal)")
    opened = open_workspace(opts.config, os.environ)
    stop = threading.Event()

    def show(plan: Plan) -> None:
        _render_plan(plan.to_dict(), "text", ExitCode.OK)

    def confirm(plan: Plan) -> bool:
        if auto_approve:
            return True
        answer = click.prompt("Apply these changes? Only 'yes' applies them", default="", show_default=False)
        return bool(answer.strip() == "yes")

    # a live line rewrites itself with terminal controls: only where a terminal understands them
    progress = StreamProgress(sys.stderr, sys.stderr.isatty() and os.environ.get("TERM") != "dumb")
    with stop_on_signals(stop):
        run = apply_changes(
            opened,
            os.environ,
            plan_file=plan_file,
            allow=allow,
            targets=target,
            excludes=exclude,
            retry_failed=retry_failed,
            takeover=takeover,
            parallelism=parallelism,
            wait=wait_seconds,
            show=show,
            confirm=confirm,
            progress=progress,
            stop=stop,
        )
    if run.recovered:
        click.echo(f"Folded {run.recovered} journal entries left by an earlier run into the state.", err=True)
    if run.report is not None:
        for line in summary_lines(run.report, run.waited):
            click.echo(line)
        if run.leftovers:
            shown = ", ".join(run.leftovers[:10])
            click.echo(
                f"Convergence check: a new plan still changes {len(run.leftovers)} addresses no call failed for "
                f"({shown}). This is a reconciler bug; please report it.",
                err=True,
            )
        if run.report.failed or run.report.causes:
            click.echo("Run plan or apply again: the next plan holds only what is left.")
    return int(run.exit_code)


@contextlib.contextmanager
def stop_on_signals(
    stop: threading.Event,
    message: str = "Stopping: finishing the calls in flight and saving the state (again to abort).",
) -> Iterator[None]:
    """First Ctrl-C or SIGTERM: stop sending (waits end at once), finish the calls in flight, save. A second
    one aborts."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\n" + message, err=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@cli.command()
@click.argument("plan_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--state", "show_state", is_flag=True, help="Show the recorded state instead of a plan.")
@click.option("--format", "fmt", type=click.Choice(PLAN_FORMATS), default="text", show_default=True)
@click.pass_obj
@json_errors
def show(opts: Options, plan_file: Path | None, show_state: bool, fmt: str) -> int:
    """Render a saved plan file, or the recorded state with --state."""
    if show_state == (plan_file is not None):
        raise click.UsageError("give either a plan file or --state")
    if plan_file is not None:
        saved = read_plan_file(plan_file)
        _render_plan(saved.to_dict(), fmt, ExitCode.OK)
        return 0
    opened = open_workspace(opts.config, os.environ)
    # outcomes the receiver recorded and journal entries are folded in memory, as plan and status see them
    state = opened.load_state(pending=True)
    lock = opened.backend.current_lock()
    if fmt == "json":
        payload = {
            "result": "ok",
            "state": state.to_dict() if state else None,
            "summary": state_summary(state) if state else None,
            "lock": dataclasses.asdict(lock) if lock else None,
        }
        json.dump(payload, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    elif fmt == "markdown":
        render_state_markdown(state, opened.backend.name, lock, sys.stdout)
    else:
        render_state(state, opened.backend.name, lock, sys.stdout)
    return 0


@cli.command()
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when drift was found, 0 when none.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
def refresh(opts: Options, detailed_exitcode: bool, fmt: str) -> int:
    """Read back the live callbacks and vehicle programs, record them, and report drift by class."""
    opened = open_workspace(opts.config, os.environ)
    stop = threading.Event()
    with stop_on_signals(stop, "Stopping: finishing the reads in flight (again to abort)."):
        found = refresh_fleet(opened, os.environ, stop=stop)
    drift = found.drift
    code = ExitCode.CHANGES if detailed_exitcode and drift else ExitCode.OK
    if found.unread:
        code = ExitCode.PARTIAL  # the drift reported is incomplete
    if fmt == "json":
        items = [{"kind": d.kind.value, "address": str(d.address), "detail": d.detail} for d in drift]
        unread = [{"vin": vin, "error": error} for vin, error in sorted(found.unread.items())]
        json.dump({"result": code.result, "drift": items, "unread": unread}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return int(code)
    for item in drift:
        click.echo(f"  {item.kind:16s} {item.address}: {item.detail}")
    counts = Counter(item.kind for item in drift)
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    if drift:
        click.echo(f"Drift: {summary}. The next plan repairs it.")
    if found.unread:
        shown = sorted(found.unread.items())[:10]
        click.echo(f"Could not read {len(found.unread):,} vehicle(s); drift on them is unknown:")
        for vin, error in shown:
            click.echo(f"  {vin}: {error}")
        if len(found.unread) > len(shown):
            click.echo(f"  ... and {len(found.unread) - len(shown):,} more (--format json lists them all)")
    elif not drift:
        click.echo("No drift: the fleet holds what was recorded.")
    return int(code)


@cli.group("import", invoke_without_command=True)
@click.option(
    "--write-manifests",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write manifests describing the live fleet into this folder (changes no state).",
)
@click.pass_context
def import_(ctx: click.Context, folder: Path | None) -> int | None:
    """Adopt callbacks and vehicle programs that already exist, changing nothing on the API."""
    if folder is not None:
        if ctx.invoked_subcommand is not None:
            raise click.UsageError("--write-manifests goes alone")
        opened = open_workspace(ctx.obj.config, os.environ)
        stop = threading.Event()
        with stop_on_signals(stop, "Stopping (again to abort)."):
            lines = dump_fleet(opened, folder, stop=stop)
        for line in lines:
            click.echo(line)
        return 0
    if ctx.invoked_subcommand is None:
        raise click.UsageError("name what to import: callback NAME ID, callbacks, vehicles, or --write-manifests DIR")
    return None


def _adopt(opts: Options, what: str, **kwargs: Any) -> int:
    opened = open_workspace(opts.config, os.environ)
    stop = threading.Event()
    with stop_on_signals(stop, "Stopping (again to abort)."):
        lines = adopt_fleet(opened, os.environ, what, stop=stop, **kwargs)
    for line in lines:
        click.echo(line)
    click.echo(f"Imported {plural(len(lines), 'item')}; run plan to see what still differs.")
    return 0


@import_.command("callback")
@click.argument("name")
@click.argument("callback_id")
@click.pass_obj
def import_callback(opts: Options, name: str, callback_id: str) -> int:
    """Record the callback with this id as the manifests' callback NAME."""
    return _adopt(opts, "callback", name=name, callback_id=callback_id)


@import_.command("callbacks")
@click.pass_obj
def import_callbacks(opts: Options) -> int:
    """Record every live callback whose label is a manifest callback's name."""
    return _adopt(opts, "callbacks")


@import_.command("vehicles")
@click.option("--vins", multiple=True, metavar="VIN", help="Only these vehicles (default: every managed one).")
@click.pass_obj
def import_vehicles(opts: Options, vins: tuple[str, ...]) -> int:
    """Record the programs vehicles hold now in the slots the manifests manage."""
    return _adopt(opts, "vehicles", vins=vins)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_obj
@json_errors
def status(opts: Options, fmt: str) -> int:
    """How far the fleet has converged: vehicles converged, in flight, failed (by cause), still to change."""
    opened = open_workspace(opts.config, os.environ)
    result, desired, state, _ = plan_changes(opened, os.environ)
    report = fleet_status(desired, state, result, opened.backend.read_events())
    if fmt == "json":
        json.dump({"result": "ok", **report}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        render_status(report, sys.stdout)
    return 0


@cli.group()
def webhook() -> None:
    """Receive the Fleet API's notifications and record the outcomes."""


@webhook.command("serve")
@click.option("--listen", required=True, help="HOST:PORT to listen on.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Certificate, to serve https.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Its private key.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per request on stderr, as text or as one JSON object per line.",
)
@click.pass_obj
def webhook_serve(opts: Options, listen: str, tls_cert: str | None, tls_key: str | None, log_format: str) -> int:
    """Serve until stopped (Ctrl-C, SIGTERM); every notification is recorded durably before it is acknowledged."""
    from reconciler.webhook.serve import serve as serve_webhook

    try:
        host, port = parse_listen(listen)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--listen") from None
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    opened = open_workspace(opts.config, os.environ)
    serve_webhook(opened, os.environ, host, port, sys.stdout, tls_cert, tls_key, log_format=log_format)
    return 0


@cli.group()
def state() -> None:
    """Inspect and repair the recorded state."""


@state.command("list")
@click.pass_obj
def state_list(opts: Options) -> int:
    """Every address the state records."""
    recorded = open_workspace(opts.config, os.environ).load_state()
    for address in addresses(recorded) if recorded else ():
        click.echo(address)
    return 0


@state.command("show")
@click.argument("address")
@click.pass_obj
def state_show(opts: Options, address: str) -> int:
    """What the state records about one address."""
    recorded = open_workspace(opts.config, os.environ).load_state()
    if recorded is None:
        raise StateError("there is no recorded state yet")
    json.dump(describe(recorded, address), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


@state.command("rm")
@click.argument("address", nargs=-1, required=True)
@click.pass_obj
def state_rm(opts: Options, address: tuple[str, ...]) -> int:
    """Forget addresses without calling the API (the next plan creates them again if still desired)."""
    opened = open_workspace(opts.config, os.environ)
    with terminate_as_interrupt(), Lease(opened.backend, "state rm") as lease:
        recorded = opened.load_state()
        if recorded is None:
            raise StateError("there is no recorded state yet")
        loaded = recorded.serial
        forgotten = sum(remove(recorded, text) for text in address)
        serial = opened.backend.save(recorded, loaded, lock=lease.id)
    click.echo(f"Forgot {plural(forgotten, 'item')}; state serial {serial}.")
    return 0


@state.command("unlock")
@click.argument("lock_id")
@click.pass_obj
def state_unlock(opts: Options, lock_id: str) -> int:
    """Remove a lock left by a run that is gone. Make sure it is gone: two writers corrupt nothing, but race."""
    opened = open_workspace(opts.config, os.environ)
    holder = opened.backend.force_unlock(lock_id)
    click.echo(f"Removed the lock {holder.describe()}.")
    return 0


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancelled CI job) unwinds like Ctrl-C, so locks are released and state is saved."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(error: BaseException) -> None:
    if isinstance(error, InvalidInputError):
        for diagnostic in error.diagnostics:
            click.echo(diagnostic.format(), err=True)
    else:
        click.echo(f"Error: {error}", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script's entry point)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="reconciler", standalone_mode=False)
    except click.exceptions.Exit as done:  # --help, --version
        return done.exit_code
    except click.UsageError as error:
        error.show()
        return ExitCode.USAGE
    except (click.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 130
    except ReconcilerError as error:
        _report(error)
        return int(exit_code_for(error))
    except Exception as error:  # a bug: say so briefly; RECONCILER_DEBUG shows the traceback
        if os.environ.get("RECONCILER_DEBUG"):
            raise
        click.echo(f"Internal error: {type(error).__name__}: {error} (set RECONCILER_DEBUG=1 for details)", err=True)
        return ExitCode.ERROR
    return int(result) if isinstance(result, int) else ExitCode.OK


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
