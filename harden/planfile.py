"""Saved plans: JSON on disk (never pickle), written atomically, read back with their format checked.

A plan file is what `harden apply PLANFILE` carries out exactly, so reading one refuses anything
that is not a plan of this format: a half-written file, another tool's JSON, an older format.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError
from .model import PLAN_FORMAT, Plan
from .state import atomic_write


def write_plan(plan: Plan, path: str) -> None:
    try:
        atomic_write(Path(path), json.dumps(plan.to_dict(), indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write the plan file: {exc.strerror}", file=path, field="--out",
                         hint="point --out at a writable file in an existing directory") from None


def read_plan(path: str) -> Plan:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"plan file not found: {path}", file=path,
                         hint="create one with `harden plan --out FILE`") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"not a harden plan file ({type(exc).__name__}: {exc})", file=path,
                         hint="plan files are written by `harden plan --out`") from None
    if not isinstance(data, dict) or "formatVersion" not in data:
        raise InputError("not a harden plan file (no formatVersion)", file=path,
                         hint="plan files are written by `harden plan --out`")
    if data["formatVersion"] != PLAN_FORMAT:
        raise InputError(f"plan file format {data['formatVersion']} is not the format this harden reads "
                         f"({PLAN_FORMAT})", file=path, hint="make the plan again with this version of harden")
    try:
        return Plan.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"not a harden plan file ({type(exc).__name__}: {exc})", file=path,
                         hint="plan files are written by `harden plan --out`") from None
