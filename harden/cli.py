"""The command line: parses arguments, picks the view for `-o`, calls `harden.commands`; errors
become exit codes here, in one place (`_run`).

Exit codes follow `terraform plan -detailed-exitcode`: 0 success (no changes), 1 error,
2 success with changes (only with --detailed-exitcode); 130 interrupted, 3 a bug.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import TYPE_CHECKING, List, Optional

import typer

from . import __version__
from .errors import HardenError
from .views import Output

if TYPE_CHECKING:
    from rich.console import Console

    from .engine import Request

# A command imports what it needs when it runs (commands, engine, rich, the Kubernetes client):
# `harden version` or `--help` pays for typer alone.

# 128 + SIGINT: what shells report for a command stopped by Ctrl-C, so scripts can tell it from a failure.
EXIT_INTERRUPTED = 130
EXIT_BUG = 3

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Plan and apply Kubernetes security hardening profiles, Terraform-style.")
state_app = typer.Typer(no_args_is_help=True, help="Inspect what harden manages.")
app.add_typer(state_app, name="state")


def _consoles() -> tuple["Console", "Console"]:
    from rich.console import Console

    no_color = bool(os.environ.get("NO_COLOR"))
    # soft_wrap: long lines (paths, error messages) are never broken mid-token, so logs stay greppable.
    return (Console(no_color=no_color, highlight=False, soft_wrap=True),
            Console(stderr=True, no_color=no_color, highlight=False, soft_wrap=True))


ProfileOpt = typer.Option([], "--profile", "-p", help="A built-in profile name or a profile file (repeatable).")
StackOpt = typer.Option(None, "-f", "--file", help="A stack file: profiles and parameter values for one target.")
SetOpt = typer.Option([], "--set", help="A parameter value, KEY=VALUE or PROFILE.KEY=VALUE (repeatable).")
KubeconfigOpt = typer.Option(None, "--kubeconfig", help="Path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config).")
ContextOpt = typer.Option(None, "--context", help="The kubeconfig context to use.")
TimeoutOpt = typer.Option("60s", "--request-timeout", help="Longest wait for one Kubernetes API request (30s, 2m).")
SnapshotOpt = typer.Option(None, "--snapshot", help="Plan offline against a directory or YAML file of manifests.")
SnapshotNsOpt = typer.Option("default", "--snapshot-namespace", help="Namespace for snapshot objects that name none.")
StateOpt = typer.Option(os.environ.get("HARDEN_STATE_DIR", "state"), "--state-dir", help="Where state is kept.")
OutputOpt = typer.Option(Output.TEXT, "--output", "-o", help="text, json, markdown or sarif.")
# Every command takes the same choices, so a typo is a usage error (exit 2) everywhere; a format a
# command has nothing to write in is refused by its view, naming the formats it does write.
ResultOutputOpt = typer.Option(Output.TEXT, "--output", "-o", help="text or json.")


def _request(profile, file, set_, kubeconfig, context, snapshot, snapshot_namespace, state_dir, timeout="60s") -> "Request":
    from .engine import Request

    return Request(tuple(profile), file, tuple(set_), kubeconfig, context, snapshot, snapshot_namespace, state_dir, timeout)


def _run(command: str, *args, output: Output = Output.TEXT, **kwargs) -> None:
    """Run `harden.commands.<command>` with the view for `output`; the one place failures become exit codes."""
    from . import views

    out, err = _consoles()
    view = views.make(output, out, err)
    try:
        from . import commands

        code = getattr(commands, command)(view, *args, **kwargs)
    except HardenError as exc:
        view.diagnostics(exc.diagnostics)
        code = exc.exit_code
    except KeyboardInterrupt:
        view.interrupted()
        code = EXIT_INTERRUPTED
    except Exception:  # not an expected failure: a bug, said so, with the traceback
        traceback.print_exc()
        print("\nThis is a bug in harden; please report it with the traceback above.", file=sys.stderr)
        code = EXIT_BUG
    raise typer.Exit(code)


@app.command()
def plan(profile: List[str] = ProfileOpt, file: Optional[str] = StackOpt, set_: List[str] = SetOpt,
         kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt, request_timeout: str = TimeoutOpt,
         snapshot: Optional[str] = SnapshotOpt, snapshot_namespace: str = SnapshotNsOpt, state_dir: str = StateOpt,
         out_file: Optional[str] = typer.Option(None, "--out", help="Write the plan as JSON to this file."),
         detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 2 when there are changes."),
         output: Output = OutputOpt) -> None:
    """Show what would change, field by field, and what it does to security."""
    _run("plan_cmd", _request(profile, file, set_, kubeconfig, context, snapshot, snapshot_namespace, state_dir, request_timeout),
         out_file=out_file, detailed_exitcode=detailed_exitcode, output=output)


@app.command()
def apply(plan_file: Optional[str] = typer.Argument(None, help="A plan saved with `harden plan --out`."),
          profile: List[str] = ProfileOpt, file: Optional[str] = StackOpt, set_: List[str] = SetOpt,
          kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt, request_timeout: str = TimeoutOpt, state_dir: str = StateOpt,
          auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
          lock_timeout: str = typer.Option("0s", "--lock-timeout", help="How long to wait for the state lock."),
          parallelism: int = typer.Option(8, "--parallelism", min=1, max=64, help="Concurrent writes."),
          output: Output = ResultOutputOpt) -> None:
    """Apply the changes (a saved plan exactly, or a fresh plan after confirmation)."""
    _run("apply_cmd", _request(profile, file, set_, kubeconfig, context, None, "default", state_dir, request_timeout),
         plan_file=plan_file, auto_approve=auto_approve, lock_timeout=lock_timeout, parallelism=parallelism,
         output=output)


@app.command()
def destroy(profile: List[str] = ProfileOpt, file: Optional[str] = StackOpt, set_: List[str] = SetOpt,
            kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt, request_timeout: str = TimeoutOpt, state_dir: str = StateOpt,
            auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
            lock_timeout: str = typer.Option("0s", "--lock-timeout", help="How long to wait for the state lock."),
            output: Output = ResultOutputOpt) -> None:
    """Delete what harden created and hand back the fields it set (all of the stack, or the selected profiles)."""
    _run("apply_cmd", _request(profile, file, set_, kubeconfig, context, None, "default", state_dir, request_timeout),
         plan_file=None, auto_approve=auto_approve, lock_timeout=lock_timeout, destroy=True, output=output)


@app.command()
def show(plan_file: str = typer.Argument(..., help="A plan saved with `harden plan --out`."),
         output: Output = OutputOpt) -> None:
    """Show a saved plan."""
    _run("show_cmd", plan_file, output=output)


@app.command()
def validate(paths: List[str] = typer.Argument(None, help="Profile or stack files or directories (default: built-ins).")) -> None:
    """Check profile and stack files without touching a cluster."""
    _run("validate_cmd", list(paths or []))


@app.command()
def profiles(output: Output = ResultOutputOpt) -> None:
    """List the built-in profiles."""
    _run("profiles_cmd", output=output)


@state_app.command("list")
def state_list(stack: str = typer.Option("default", "--stack"), state_dir: str = StateOpt) -> None:
    """List the objects and patches harden manages."""
    _run("state_list_cmd", state_dir, stack)


@state_app.command("show")
def state_show(key: str, stack: str = typer.Option("default", "--stack"), state_dir: str = StateOpt) -> None:
    """Show one state record."""
    _run("state_show_cmd", state_dir, stack, key)


@app.command()
def reach(src: str = typer.Option(..., "--from", help="NS/KEY=VAL[,KEY=VAL] (pods with those labels) or a CIDR."),
          dst: str = typer.Option(..., "--to", help="NS/KEY=VAL[,KEY=VAL] or a CIDR."),
          port: str = typer.Option(..., "--port", help="PORT[/PROTO] or a named port of the destination."),
          plan_file: Optional[str] = typer.Option(None, "--plan", help="Evaluate on the state this saved plan would produce."),
          kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt,
          snapshot: Optional[str] = SnapshotOpt, snapshot_namespace: str = SnapshotNsOpt,
          output: Output = ResultOutputOpt) -> None:
    """Is a network flow allowed by the NetworkPolicies, and which policies decide it?"""
    _run("reach_cmd", _request([], None, [], kubeconfig, context, snapshot, snapshot_namespace, "state"),
         src=src, dst=dst, port=port, plan_file=plan_file, output=output)


@app.command("can-i")
def can_i(verb: str = typer.Argument(..., help="get, list, create, ..."),
          resource: str = typer.Argument(..., help="RESOURCE[.GROUP][/SUBRESOURCE], e.g. workflows.argoproj.io"),
          subject: str = typer.Option(..., "--as", help="system:serviceaccount:NS:NAME, user:NAME or group:NAME."),
          namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Namespace (omit: cluster-wide)."),
          plan_file: Optional[str] = typer.Option(None, "--plan", help="Evaluate on the state this saved plan would produce."),
          kubeconfig: Optional[str] = KubeconfigOpt, context: Optional[str] = ContextOpt,
          snapshot: Optional[str] = SnapshotOpt, snapshot_namespace: str = SnapshotNsOpt,
          output: Output = ResultOutputOpt) -> None:
    """Like `kubectl auth can-i`, from RBAC objects, with the bindings and rules that grant it."""
    _run("can_i_cmd", _request([], None, [], kubeconfig, context, snapshot, snapshot_namespace, "state"),
         verb=verb, resource=resource, subject=subject, namespace=namespace, plan_file=plan_file, output=output)


@app.command()
def version() -> None:
    """Print harden's version."""
    print(__version__)


def main() -> None:
    if sys.argv[1:] == ["version"]:
        # Answered before typer builds the command line: typer builds a pydantic validator for
        # every parameter of every command first, which costs more than the rest of the start.
        version()
        return
    app()


if __name__ == "__main__":
    main()
