"""Layering: the Kubernetes client and the terminal libraries stay at the edges (imports parsed with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "harden"
IO_LIBS = {"kubernetes", "typer", "rich"}


def modules() -> dict[str, Path]:
    return {p.relative_to(PKG).as_posix(): p for p in sorted(PKG.rglob("*.py")) if "__pycache__" not in p.parts}


def top_imports(path: Path) -> set[str]:
    """Top-level package of every import anywhere in the module (also inside functions)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args \
                and isinstance(node.args[0], ast.Constant):
            out.add(str(node.args[0].value).split(".")[0])
    return out


def test_helper_sees_imports(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("import os.path\nfrom rich.console import Console\ndef f():\n    import kubernetes.client\n"
                 "from . import x\n")
    assert top_imports(p) == {"os", "rich", "kubernetes"}


def test_modules_found():
    assert {"kube.py", "cli.py", "commands.py", "load.py", "plan.py"} <= set(modules())


def test_only_kube_imports_kubernetes():
    users = sorted(name for name, p in modules().items() if "kubernetes" in top_imports(p))
    assert users == ["kube.py"]


def test_only_cli_and_views_import_typer_or_rich():
    def allowed(name):
        return name == "cli.py" or name.startswith("views/")
    offenders = sorted(name for name, p in modules().items()
                       if top_imports(p) & {"typer", "rich"} and not allowed(name))
    assert offenders == []


PURE = ["load.py", "render.py", "diff.py", "fieldpath.py", "ownership.py", "merge.py", "normalize.py", "mergekeys.py",
        "plan.py", "checks.py", "model.py"]


@pytest.mark.parametrize("name", PURE + [n for n in modules() if n.startswith("impact/")])
def test_pure_stages_have_no_io_imports(name):
    path = modules()[name]
    assert not (top_imports(path) & IO_LIBS), f"{name} imports {top_imports(path) & IO_LIBS}"
