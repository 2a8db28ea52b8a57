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


OBJECT_NAMES = {"argocd-manager"}  # Kubernetes objects a row names, not harden's


def _coverage_rows() -> list[list[str]]:
    section = README.split("### Coverage of the source documents", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| recommendation")]
    return [r for r in rows if not set(r[0]) <= {"-"}]


def test_coverage_table_names_only_real_profiles_and_checks_and_every_profile_appears():
    from harden.checks import CHECKS
    from harden.needs import component_specs

    profiles, checks = set(builtin_profile_names()), set(CHECKS)
    # ids a row may cite: profile checks and expectations, and component needs
    ids = {x["id"] for p in profiles for sec in ("checks", "expect") for x in load_profile(p).data.get(sec, [])}
    ids |= {n["id"] for s in component_specs() for n in s.needs}
    rows = _coverage_rows()
    assert len(rows) >= 45, "the table covers every recommendation of the five source documents"
    named: set[str] = set()
    for recommendation, source, covered, _verified in rows:
        assert re.search(r"\b00[0-4]\b", source), f"{recommendation!r} names no source document"
        assert covered, f"{recommendation!r} says neither what covers it nor why not"
        if covered.startswith(("not covered", "documented")):
            assert ":" in covered, f"{recommendation!r}: a row that covers nothing says why"
        for name in re.findall(r"`([a-zA-Z][\w-]*)`", covered):
            if name in profiles or name in checks:
                named.add(name)
            elif re.fullmatch(r"[a-z]+(-[a-z0-9]+)+", name) and name not in ids | OBJECT_NAMES:
                # a kebab-case name in backticks is a profile, check or need: it must exist
                assert name in profiles, f"{recommendation!r} names {name!r}, which is no profile, check or need"
    assert profiles <= named, f"profiles missing from the coverage table: {sorted(profiles - named)}"
