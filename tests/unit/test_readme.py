"""The README is the front door: it must name every built-in profile and every parameter, and its
quick-start plan line must be what the quick start really prints."""

from __future__ import annotations

import re
from pathlib import Path

from harden.engine import Request, build_plan
from harden.load import builtin_profile_names, load_profile
from harden.views import summary_line

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_every_profile_and_parameter_is_documented():
    missing = []
    for name in builtin_profile_names():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
        if row is None:
            missing.append(name)
            continue
        for param in load_profile(name).parameters:
            if f"`{param}`" not in row:
                missing.append(f"{name}.{param}")
    assert not missing, f"README profile table lacks: {missing}"


def test_quick_start_plan_line_is_true(tmp_path):
    plan = build_plan(Request(stack_file=str(REPO / "examples/stack.yaml"), snapshot=str(REPO / "examples/snapshot"),
                              state_dir=str(tmp_path)), with_impact=False).plan
    line = summary_line(plan)
    assert re.search(r"Plan: \d+ to add", line)
    assert f"`{line}`" in README
