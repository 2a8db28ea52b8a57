"""The command line: parses arguments, picks the view for `-o`, calls `harden.commands`; errors
become exit codes here, in one place (`_run`).

Exit codes follow `terraform plan -detailed-exitcode`: 0 success (no changes), 1 error,
2 success with changes (only with --detailed-exitcode; `review`: the posture changed); 130 interrupted, 3 a bug.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import typer

from . import __version__
from .output import Output

if TYPE_CHECKING:
    from rich.console import Console

    from .engine import Request

# Start-up (issue 10): a command imports what it needs when it runs, so `harden version` and
# `--help` load neither the engine (jsonschema, the impact analysis), the Kubernetes client,
# DeepDiff nor rich. Hence the imports inside the functions below; tests/unit/test_startup.py
# checks which modules a start loads.

# 128 + SIGINT: what shells report for a command stopped by Ctrl-C, so scripts can tell it from a failure.
EXIT_INTERRUPTED = 130
EXIT_BUG = 3

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Plan and apply Kubernetes security hardening profiles, Terraform-style.")
state_app = typer.Typer(no_args_is_help=True, help="Inspect what harden manages, and move state between backends.")
app.add_typer(state_app, name="state")


def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    no_color = bool(os.environ.get("NO_COLOR"))
    # soft_wrap: long lines (paths, error messages) are never broken mid-token, so logs stay greppable.
    return (Console(no_color=no_color, highlight=False, soft_wrap=True),
            Console(stderr=True, no_color=no_color, highlight=False, soft_wrap=True))


ProfileOpt = typer.Option([], "--profile", "-p", help="A built-in profile name or a profile file (repeatable).")
StackOpt = typer.Option(None, "-f", "--file", help="A stack file: profiles and parameter values for one target.")
SetOpt = typer.Option([], "--set", help="A parameter value, KEY=VALUE or PROFILE.KEY=VALUE (repeatable).")
KubeconfigOpt = typer.Option(None, "--kubeconfig",
                             help="Path to the kubeconfig (default: $KUBECONFIG or ~/.kube/config).")
ContextOpt = typer.Option(None, "--context", help="The kubeconfig context to use.")
ContextsOpt = typer.Option([], "--context", help="The kubeconfig context to use; repeat it to plan or apply the stack "
                                               "in several clusters, each with its own state and lock.")
TimeoutOpt = typer.Option("60s", "--request-timeout", help="Longest wait for one Kubernetes API request (30s, 2m).")
SnapshotOpt = typer.Option(None, "--snapshot", help="Plan offline against a directory or YAML file of manifests.")
SnapshotNsOpt = typer.Option("default", "--snapshot-namespace", help="Namespace for snapshot objects that name none.")
StateOpt = typer.Option(None, "--state-dir", help="Where state is kept (a directory; the same as --state file://DIR).")
StateURLOpt = typer.Option(None, "--state", help="The state backend: file://DIR (default file://state) or "
                                                 "kubernetes://NAMESPACE; default $HARDEN_STATE, then the stack file's `state:`.")
LockDurationOpt = typer.Option(os.environ.get("HARDEN_LOCK_DURATION", "30s"), "--lock-duration",
                               help="How long the in-cluster lock lasts unless renewed (a killed run blocks others no longer).")
OutputOpt = typer.Option(Output.TEXT, "--output", "-o", help="text, json, markdown or sarif.")
# GitHub refuses a comment body over 65,536 characters; Atlantis splits longer output into numbered
# comments (server/events/vcs/github_client.go, maxCommentLength), and so does the Markdown view.
MaxCommentOpt = typer.Option(65536, "--max-comment-size", min=1000,
                             help="Split Markdown into numbered parts of at most this many characters.")
# Every command takes the same choices, so a typo is a usage error (exit 2) everywhere; a format a
# command has nothing to write in is refused by its view, naming the formats it does write.
ResultOutputOpt = typer.Option(Output.TEXT, "--output", "-o", help="text or json.")
PlanOpt = typer.Option(None, "--plan", help="Evaluate on the state this saved plan would produce.")


def _request(profile: list[str], file: str | None, set_: list[str], kubeconfig: str | None,
             context: str | list[str] | None, snapshot: str | None, snapshot_namespace: str, state_dir: str | None,
             timeout: str = "60s", state: str | None = None, lock_duration: str = "30s") -> Request:
    from .engine import Request

    contexts = [context] if isinstance(context, str) else list(context or [])
    return Request(tuple(profile), file, tuple(set_), kubeconfig, contexts[0] if len(contexts) == 1 else None,
                   snapshot, snapshot_namespace, os.environ.get("HARDEN_STATE_DIR", "state"), timeout,
                   # An explicit --state-dir is a state location like --state (its older spelling).
                   state=state or state_dir, lock_duration=lock_duration,
                   contexts=tuple(contexts) if len(contexts) > 1 else ())


def _run(fn: Callable[..., int], *args: Any, output: Output = Output.TEXT, **kwargs: Any) -> None:
    """Run a command with the view for `output`; the one place failures become exit codes."""
    from . import views
    from .errors import HardenError

    out, err = _consoles()
    view = views.make(output, out, err)
    try:
        code = fn(view, *args, **kwargs)
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
def plan(profile: list[str] = ProfileOpt, file: str | None = StackOpt, set_: list[str] = SetOpt,
         kubeconfig: str | None = KubeconfigOpt, context: list[str] = ContextsOpt, request_timeout: str = TimeoutOpt,
         snapshot: str | None = SnapshotOpt, snapshot_namespace: str = SnapshotNsOpt,
         state_dir: str | None = StateOpt, state: str | None = StateURLOpt,
         out_file: str | None = typer.Option(None, "--out", help="Write the plan as JSON to this file."),
         detailed_exitcode: bool = typer.Option(False, "--detailed-exitcode", help="Exit 2 when there are changes."),
         max_comment_size: int = MaxCommentOpt, output: Output = OutputOpt) -> None:
    """Show what would change, field by field, and what it does to security."""
    from .commands import plan_cmd

    req = _request(profile, file, set_, kubeconfig, context, snapshot, snapshot_namespace, state_dir, request_timeout,
                   state)
    _run(plan_cmd, req, out_file=out_file, detailed_exitcode=detailed_exitcode,
         max_comment_size=max_comment_size, output=output)


@app.command()
def review(base: str = typer.Option(..., "--base", help="The revision to compare against (a branch, tag or commit)."),
           head: str = typer.Option("HEAD", "--head", help="The revision under review."),
           profile: list[str] = ProfileOpt, file: str | None = StackOpt, set_: list[str] = SetOpt,
           kubeconfig: str | None = KubeconfigOpt, context: str | None = ContextOpt,
           request_timeout: str = TimeoutOpt,
           snapshot: str | None = SnapshotOpt, snapshot_namespace: str = SnapshotNsOpt, state_dir: str = StateOpt,
           max_comment_size: int = MaxCommentOpt, output: Output = OutputOpt) -> None:
    """What a change to the profiles does: plan two git revisions against one target and compare
    permissions, flows, component needs and objects. Exit 0 same posture, 2 changed, 1 error."""
    from .commands import review_cmd

    req = _request(profile, file, set_, kubeconfig, context, snapshot, snapshot_namespace, state_dir, request_timeout)
    _run(review_cmd, req, base=base, head=head, max_comment_size=max_comment_size, output=output)


@app.command()
def apply(plan_file: str | None = typer.Argument(None, help="A plan saved with `harden plan --out`."),
          profile: list[str] = ProfileOpt, file: str | None = StackOpt, set_: list[str] = SetOpt,
          kubeconfig: str | None = KubeconfigOpt, context: list[str] = ContextsOpt, request_timeout: str = TimeoutOpt,
          state_dir: str | None = StateOpt, state: str | None = StateURLOpt, lock_duration: str = LockDurationOpt,
          auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
          lock_timeout: str = typer.Option("0s", "--lock-timeout", help="How long to wait for the state lock."),
          parallelism: int = typer.Option(8, "--parallelism", min=1, max=64, help="Concurrent writes."),
          preflight: bool = typer.Option(
              True, "--preflight/--no-preflight",
              help="Send every write as a server-side dry run first, so a write the server refuses (admission, "
                   "RBAC, validation) stops the apply before anything changed. --no-preflight halves the "
                   "requests; a refused write then stops the apply part-way, the writes before it applied "
                   "(the next plan shows what is left)."),
          output: Output = ResultOutputOpt) -> None:
    """Apply the changes (a saved plan exactly, or a fresh plan after confirmation)."""
    from .commands import apply_cmd

    req = _request(profile, file, set_, kubeconfig, context, None, "default", state_dir, request_timeout,
                   state, lock_duration)
    _run(apply_cmd, req, plan_file=plan_file, auto_approve=auto_approve, lock_timeout=lock_timeout,
         parallelism=parallelism, preflight=preflight, output=output)


@app.command()
def destroy(profile: list[str] = ProfileOpt, file: str | None = StackOpt, set_: list[str] = SetOpt,
            kubeconfig: str | None = KubeconfigOpt, context: list[str] = ContextsOpt, request_timeout: str = TimeoutOpt,
            state_dir: str | None = StateOpt, state: str | None = StateURLOpt, lock_duration: str = LockDurationOpt,
            auto_approve: bool = typer.Option(False, "--auto-approve", help="Do not ask for confirmation."),
            lock_timeout: str = typer.Option("0s", "--lock-timeout", help="How long to wait for the state lock."),
            output: Output = ResultOutputOpt) -> None:
    """Delete what harden created and hand back the fields it set (all of the stack, or the selected profiles)."""
    from .commands import apply_cmd

    req = _request(profile, file, set_, kubeconfig, context, None, "default", state_dir, request_timeout,
                   state, lock_duration)
    _run(apply_cmd, req, plan_file=None, auto_approve=auto_approve, lock_timeout=lock_timeout, destroy=True,
         output=output)


@app.command()
def show(plan_file: str = typer.Argument(..., help="A plan saved with `harden plan --out`."),
         output: Output = OutputOpt) -> None:
    """Show a saved plan."""
    from .commands import show_cmd

    _run(show_cmd, plan_file, output=output)


PathsArg = typer.Argument(None, help="Profile or stack files or directories (default: built-ins).")


@app.command()
def validate(paths: list[str] = PathsArg) -> None:
    """Check profile and stack files without touching a cluster."""
    from .commands import validate_cmd

    _run(validate_cmd, list(paths or []))


@app.command()
def profiles(output: Output = ResultOutputOpt) -> None:
    """List the built-in profiles."""
    from .commands import profiles_cmd

    _run(profiles_cmd, output=output)


StateStackOpt = typer.Option(None, "--stack", help="The stack (default: the stack file's name, else `default`).")
StateKeyOpt = typer.Option(None, "--context", help="With a multi-cluster stack: the cluster whose state (`<stack>@<context>`).")


def _state_request(file: str | None, stack: str | None, state_dir: str | None, state: str | None,
                   kubeconfig: str | None, context: str | None, lock_duration: str = "30s") -> tuple[Request, str]:
    """The request and stack name for a state command. The key of one cluster's state in a
    multi-cluster stack is `<stack>@<context>`."""
    from dataclasses import replace

    from .commands import stack_name
    from .engine import stack_settings

    name = stack or (stack_name(file) if file else "default")
    req = _request([], file, [], kubeconfig, context, None, "default", state_dir, "60s", state, lock_duration)
    if context and file and stack_settings(file).get("clusters"):
        req = replace(req, state_key=f"{name}@{context}")
    return req, name


@state_app.command("list")
def state_list(stack: str | None = StateStackOpt, file: str | None = StackOpt, state_dir: str | None = StateOpt,
               state: str | None = StateURLOpt, kubeconfig: str | None = KubeconfigOpt,
               context: str | None = StateKeyOpt) -> None:
    """List the objects and patches harden manages."""
    from .commands import state_list_cmd

    req, name = _state_request(file, stack, state_dir, state, kubeconfig, context)
    _run(state_list_cmd, req, name)


@state_app.command("show")
def state_show(key: str, stack: str | None = StateStackOpt, file: str | None = StackOpt,
               state_dir: str | None = StateOpt, state: str | None = StateURLOpt,
               kubeconfig: str | None = KubeconfigOpt, context: str | None = StateKeyOpt) -> None:
    """Show one state record."""
    from .commands import state_show_cmd

    req, name = _state_request(file, stack, state_dir, state, kubeconfig, context)
    _run(state_show_cmd, req, name, key)


@state_app.command("pull")
def state_pull(stack: str | None = StateStackOpt, file: str | None = StackOpt, state_dir: str | None = StateOpt,
               state: str | None = StateURLOpt, kubeconfig: str | None = KubeconfigOpt,
               context: str | None = StateKeyOpt) -> None:
    """Print the stack's state as JSON (any journal folded in)."""
    from .commands import state_pull_cmd

    req, name = _state_request(file, stack, state_dir, state, kubeconfig, context)
    _run(state_pull_cmd, req, name)


@state_app.command("push")
def state_push(path: str = typer.Argument(..., help="A state file, e.g. from `harden state pull`."),
               stack: str | None = StateStackOpt, file: str | None = StackOpt, state_dir: str | None = StateOpt,
               state: str | None = StateURLOpt, kubeconfig: str | None = KubeconfigOpt,
               context: str | None = StateKeyOpt,
               force: bool = typer.Option(False, "--force", help="Overwrite a state of another lineage or a newer serial."),
               lock_timeout: str = typer.Option("0s", "--lock-timeout", help="How long to wait for the state lock.")) -> None:
    """Replace the stack's state with a file's (refused across lineages unless --force)."""
    from .commands import state_push_cmd

    req, name = _state_request(file, stack, state_dir, state, kubeconfig, context)
    _run(state_push_cmd, req, name, path, force=force, lock_timeout=lock_timeout)


@state_app.command("migrate")
def state_migrate(to: str = typer.Option(..., "--to", help="The backend to copy the state to (file://DIR, kubernetes://NS)."),
                  stack: str | None = StateStackOpt, file: str | None = StackOpt,
                  state_dir: str | None = StateOpt, state: str | None = StateURLOpt,
                  kubeconfig: str | None = KubeconfigOpt, context: str | None = StateKeyOpt,
                  force: bool = typer.Option(False, "--force", help="Overwrite a state of another lineage there."),
                  lock_timeout: str = typer.Option("0s", "--lock-timeout", help="How long to wait for each lock.")) -> None:
    """Copy the stack's state from its backend (--state) to another (--to); the old copy is kept."""
    from .commands import state_migrate_cmd

    req, name = _state_request(file, stack, state_dir, state, kubeconfig, context)
    _run(state_migrate_cmd, req, name, to, force=force, lock_timeout=lock_timeout)


@app.command("force-unlock")
def force_unlock(lock_id: str = typer.Argument(..., help="The lock ID the lock-held message names."),
                 stack: str | None = StateStackOpt, file: str | None = StackOpt,
                 state_dir: str | None = StateOpt, state: str | None = StateURLOpt,
                 kubeconfig: str | None = KubeconfigOpt, context: str | None = StateKeyOpt) -> None:
    """Release a state lock whose holder is gone (only with the ID of the lock held now)."""
    from .commands import force_unlock_cmd

    req, name = _state_request(file, stack, state_dir, state, kubeconfig, context)
    _run(force_unlock_cmd, req, name, lock_id)


@app.command()
def reach(src: str = typer.Option(..., "--from", help="NS/KEY=VAL[,KEY=VAL] (pods with those labels) or a CIDR."),
          dst: str = typer.Option(..., "--to", help="NS/KEY=VAL[,KEY=VAL] or a CIDR."),
          port: str = typer.Option(..., "--port", help="PORT[/PROTO] or a named port of the destination."),
          plan_file: str | None = PlanOpt,
          kubeconfig: str | None = KubeconfigOpt, context: str | None = ContextOpt,
          snapshot: str | None = SnapshotOpt, snapshot_namespace: str = SnapshotNsOpt,
          output: Output = ResultOutputOpt) -> None:
    """Is a network flow allowed by the NetworkPolicies, and which policies decide it?"""
    from .commands import reach_cmd

    _run(reach_cmd, _request([], None, [], kubeconfig, context, snapshot, snapshot_namespace, None),
         src=src, dst=dst, port=port, plan_file=plan_file, output=output)


@app.command("can-i")
def can_i(verb: str = typer.Argument(..., help="get, list, create, ..."),
          resource: str = typer.Argument(..., help="RESOURCE[.GROUP][/SUBRESOURCE], e.g. workflows.argoproj.io"),
          subject: str = typer.Option(..., "--as", help="system:serviceaccount:NS:NAME, user:NAME or group:NAME."),
          namespace: str | None = typer.Option(None, "--namespace", "-n", help="Namespace (omit: cluster-wide)."),
          plan_file: str | None = PlanOpt,
          kubeconfig: str | None = KubeconfigOpt, context: str | None = ContextOpt,
          snapshot: str | None = SnapshotOpt, snapshot_namespace: str = SnapshotNsOpt,
          output: Output = ResultOutputOpt) -> None:
    """Like `kubectl auth can-i`, from RBAC objects, with the bindings and rules that grant it."""
    from .commands import can_i_cmd

    _run(can_i_cmd, _request([], None, [], kubeconfig, context, snapshot, snapshot_namespace, None),
         verb=verb, resource=resource, subject=subject, namespace=namespace, plan_file=plan_file, output=output)


@app.command()
def version() -> None:
    """Print harden's version."""
    print(__version__)


def main() -> None:
    app()


def run() -> None:
    """The `harden` console script: `main`, then the process ends without teardown (harden.exitfast).
    Never returns to a caller."""
    from . import exitfast

    exitfast.arm()
    try:
        main()
    except SystemExit as exc:
        exitfast.finish(exc.code)
        raise
    except KeyboardInterrupt:
        exitfast.finish(EXIT_INTERRUPTED)
        raise
    except BaseException:
        exitfast.finish(1)  # what Python exits with after printing the traceback
        raise


if __name__ == "__main__":
    run()
