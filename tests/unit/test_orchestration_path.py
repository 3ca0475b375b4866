"""One orchestration path for the archive and key disposal (static: ``ast``, nothing imported).

The DAG task bodies (``attestly.workflows.retention`` / ``.disposal``), the CLI and the crash tests must
run the same orchestration functions, so the kill-at-every-failpoint suites cover the code the DAGs run:

- a task body reaches the archive or disposal packages only through their ``runner`` (and exceptions);
- every ``runner`` function a task body calls is also called by that runner's ``run_all`` (what
  ``python -m attestly.archive.runner`` / ``attestly disposal run`` and the crash tests drive);
- disposal owns nothing of the archive's: it imports no archive failpoints, holds, context or CLI
  helpers, and no domain package imports ``attestly.workflows``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PKG = Path(__file__).resolve().parents[2] / "include" / "attestly"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from x import ...`` and ``import x`` in the file, at any depth."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def _runner_names_used(path: Path, runner: str) -> set[str]:
    return {n for mod, names in _imports(path) if mod == runner for n in names}


def _called_in(path: Path, func: str) -> set[str]:
    """Names called (``f(...)``) inside function ``func`` of the module at ``path``."""
    tree = ast.parse(path.read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func]
    return {c.func.id for c in ast.walk(fn) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}


@pytest.mark.parametrize(
    ("workflow", "package"),
    [("retention", "attestly.archive"), ("disposal", "attestly.disposal")],
)
def test_dag_tasks_reach_the_domain_only_through_its_runner(workflow: str, package: str) -> None:
    path = PKG / "workflows" / f"{workflow}.py"
    runner = f"{package}.runner"
    allowed = {runner, f"{package}.errors", f"{package}.restore_test"}
    reached = {mod for mod, _ in _imports(path) if mod.startswith(package + ".")}
    assert reached <= allowed, f"{path.name} orchestrates through {sorted(reached - allowed)}"

    exceptions = {"ArchiveRunFailed", "DisposalFailed"}
    used = _runner_names_used(path, runner) - exceptions
    assert used, f"{path.name} calls nothing of {runner}"
    # Imported names are the runner's own (an alias such as ``verify as verify_keys`` keeps ``verify``).
    in_run_all = _called_in(PKG / package.split(".")[1] / "runner.py", "run_all")
    assert used <= in_run_all, f"{path.name} calls {sorted(used - in_run_all)}, which run_all never runs"


def test_disposal_and_domain_modules_own_nothing_of_the_archive_or_the_dags() -> None:
    forbidden_for_disposal = {
        "attestly.archive.failpoints",
        "attestly.archive.holds",
        "attestly.archive.context",
        "attestly.archive.cli",
    }
    for path in sorted((PKG / "disposal").glob("*.py")):
        mods = {mod for mod, _ in _imports(path)}
        assert not mods & forbidden_for_disposal, (
            f"{path.name} imports {sorted(mods & forbidden_for_disposal)}"
        )
        assert not any(m.startswith("attestly.workflows") for m in mods), path.name
    for package in ("archive", "disposal"):
        for path in sorted((PKG / package).glob("*.py")):
            mods = {mod for mod, _ in _imports(path)}
            assert not any(m.startswith("attestly.workflows") for m in mods), f"{package}/{path.name}"
