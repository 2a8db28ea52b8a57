"""Start-up: a command imports what it needs when it runs (issue 10: `harden version` within 0.15 s).

No test asserts a time; these assert which modules a start loads, which is what the time follows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# What only the commands that work on profiles, plans or a cluster need. (pydantic is not here:
# typer 0.29 loads it to coerce any parameter's value, even the absent `--help` of `harden version`.)
HEAVY = {"rich", "kubernetes", "deepdiff", "jsonschema", "yaml", "harden.engine", "harden.commands", "harden.views",
         "harden.model"}


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=REPO).stdout
    return {m.split(".")[0] if not m.startswith("harden.") else m for m in json.loads(out.splitlines()[-1])}


def loaded_by(*argv: str) -> set[str]:
    """The modules loaded by one run of the CLI with these arguments (as the `harden` script runs it)."""
    return loaded_after(f"import sys\nsys.argv = ['harden', *{list(argv)!r}]\nfrom harden.cli import main\n"
                        "try:\n    main()\nexcept SystemExit:\n    pass")


@pytest.mark.parametrize("argv", [["version"], ["--help"], ["plan", "--help"], ["state", "list", "--help"]])
def test_version_and_help_load_no_command_machinery(argv: list[str]) -> None:
    loaded = loaded_by(*argv)
    assert "harden.cli" in loaded
    assert loaded & HEAVY == set()


def test_an_offline_plan_loads_what_it_needs_and_never_the_kubernetes_client() -> None:
    loaded = loaded_by("plan", "-f", "examples/stack.yaml", "--snapshot", "examples/snapshot", "-o", "json")
    assert {"harden.engine", "harden.commands", "jsonschema", "yaml"} <= loaded
    assert "kubernetes" not in loaded


def test_version_prints_the_version() -> None:
    from harden import __version__

    out = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['harden', 'version']; "
                          "from harden.cli import main; main()"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == __version__


def test_a_no_change_diff_never_loads_deepdiff() -> None:
    code = ("from harden.diff import diff_fields\nfrom harden.mergekeys import BUILTIN\n"
            "d = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'c', 'namespace': 'n'}, 'data': {'a': 'b'}}\n"
            "changes = diff_fields(d, LIVE, BUILTIN)\nassert bool(changes) is DIFFERS")
    assert "deepdiff" not in loaded_after(code.replace("LIVE", "dict(d)").replace("DIFFERS", "False"))
    unequal = code.replace("LIVE", "{**d, 'data': {'a': 'c'}}").replace("DIFFERS", "True")
    assert "deepdiff" in loaded_after(unequal)
