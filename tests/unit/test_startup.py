"""Start-up: a command imports what it needs when it runs (issue 10: `harden version` within 0.15 s).

No test asserts a time; these assert which modules a start loads, which is what the time follows.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("rich", "kubernetes", "deepdiff", "jsonschema", "pydantic", "harden.engine", "harden.commands")


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return {m.split(".")[0] if not m.startswith("harden.") else m for m in json.loads(out.splitlines()[-1])}


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
