"""The product imports only what the runtime requirements install (static: ``ast``, nothing imported).

Every module under include/attestly, plugins/ and dags/ is parsed; every top-level module it imports —
at module level or inside a function, ``import x``, ``from x import y``, ``importlib.import_module("x")``
— must be the standard library, Attestly itself, or come from a distribution pinned in requirements.txt
(the image installs that file alone). And the product never imports the development package
``attestly_dev`` (local stack, seeders, demo), except the lazy imports of the CLI's development commands
listed in ``ALLOWED_DEV_IMPORTS``. tests/integration/test_runtime_env.py proves the same by running the
product in a venv of requirements.txt alone.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_DIRS = ("include/attestly", "plugins", "dags")
FIRST_PARTY = {"attestly"}
DEV_PACKAGE = "attestly_dev"

#: (file, function) pairs allowed to import attestly_dev, lazily, and what they import. The development
#: commands check first that the development requirements are installed (exit 2 with how, otherwise);
#: ``stack_env`` is a no-op where attestly_dev is not installed (the image, a production install).
ALLOWED_DEV_IMPORTS = {
    ("include/attestly/cli.py", "stack_env"): {"attestly_dev.stack.core"},
    ("include/attestly/cli.py", "cmd_stack"): {"attestly_dev.stack.core"},
    ("include/attestly/cli.py", "cmd_seed_audit"): {"attestly_dev.audit_seed"},
    ("include/attestly/cli.py", "cmd_seed_aws"): {"attestly_dev.aws_seed"},
    ("include/attestly/cli.py", "cmd_demo"): {"attestly_dev.demo"},
}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions() -> set[str]:
    """The normalised names pinned in requirements.txt (fully pinned: the whole runtime closure)."""
    names = set()
    for raw in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"requirements.txt is the runtime alone, no options: {line!r}"
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==\S+$", line)
        assert match, f"requirements.txt: every line pins one version (name==version): {line!r}"
        names.add(_normalise(match.group(1)))
    return names


def product_files() -> list[Path]:
    files = sorted(p for d in PRODUCT_DIRS for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 50, f"expected the product's modules under {PRODUCT_DIRS}, found {len(files)}"
    return files


def imports(tree: ast.AST) -> Iterator[tuple[str, str, int]]:
    """(imported module, enclosing function or '<module>', line) for every absolute import in ``tree``."""

    def walk(node: ast.AST, where: str) -> Iterator[tuple[str, str, int]]:
        for child in ast.iter_child_nodes(node):
            scope = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else where
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, where, child.lineno
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                for alias in child.names:
                    # ``from attestly_dev import demo`` imports the module attestly_dev.demo.
                    yield f"{child.module}.{alias.name}", where, child.lineno
            elif (
                isinstance(child, ast.Call)
                and (
                    (isinstance(child.func, ast.Attribute) and child.func.attr == "import_module")
                    or (isinstance(child.func, ast.Name) and child.func.id in ("import_module", "__import__"))
                )
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and isinstance(child.args[0].value, str)
            ):
                yield child.args[0].value, where, child.lineno
            yield from walk(child, scope)

    yield from walk(tree, "<module>")


def all_imports() -> list[tuple[str, str, str, int]]:
    """(file relative to the root, imported module, enclosing function, line), for every product file."""
    found = []
    for path in product_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = path.relative_to(ROOT).as_posix()
        found += [(rel, module, where, line) for module, where, line in imports(tree)]
    return found


def test_the_import_scanner_sees_function_level_and_dynamic_imports() -> None:
    tree = ast.parse(
        "import a.b\nfrom c import d\n"
        "def f():\n    import e\n    from g.h import i\n    importlib.import_module('j.k')\n"
        "class C:\n    def m(self):\n        from l import m\n"
    )
    assert sorted(imports(tree)) == [
        ("a.b", "<module>", 1),
        ("c.d", "<module>", 2),
        ("e", "f", 4),
        ("g.h.i", "f", 5),
        ("j.k", "f", 6),
        ("l.m", "m", 9),
    ]


def test_every_import_of_the_product_is_in_the_runtime_requirements() -> None:
    runtime = runtime_distributions()
    by_module = importlib.metadata.packages_distributions()
    missing: dict[str, list[str]] = {}
    for rel, module, _where, line in all_imports():
        top = module.partition(".")[0]
        if top in sys.stdlib_module_names or top in FIRST_PARTY or top == DEV_PACKAGE:
            continue  # attestly_dev: its own test below
        dists = {_normalise(d) for d in by_module.get(top, [])}
        if not dists & runtime:
            where = f"{rel}:{line}"
            missing.setdefault(
                f"{top} (from {', '.join(sorted(dists)) or 'no installed distribution'})", []
            ).append(where)
    assert not missing, (
        "imported by the product but not pinned in requirements.txt (the runtime; the image installs it "
        "alone) — add it there, or move the code to attestly_dev if it is development tooling:\n"
        + "\n".join(f"  {name}: {', '.join(places[:5])}" for name, places in sorted(missing.items()))
    )


def test_runtime_requirements_hold_the_top_level_of_the_product() -> None:
    """The named runtime dependencies (a safety net for the closure: not pruned by a regeneration)."""
    runtime = runtime_distributions()
    for name in (
        "apache-airflow",
        "apache-airflow-providers-amazon",
        "apache-airflow-providers-postgres",
        "apache-airflow-providers-smtp",
        "apache-airflow-providers-standard",
        "apache-airflow-providers-celery",
        "celery",
        "great-expectations",
        "pandas",
        "pyarrow",
        "psycopg",
        "psycopg-binary",
        "jinja2",
        "weasyprint",
        "boto3",
        "cryptography",
        "pydantic",
        "pyyaml",
        "rfc8785",
    ):
        assert name in runtime, f"requirements.txt must pin {name}"
    for name in ("moto", "pgserver", "aiosmtpd", "pytest", "ruff", "mypy", "compliance-trestle"):
        assert name not in runtime, (
            f"{name} is development tooling: requirements-dev.txt, not requirements.txt"
        )


def test_dev_requirements_are_the_runtime_plus_pins_of_their_own() -> None:
    lines = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    ]
    lines = [line for line in lines if line]
    assert lines[0] == "-r requirements.txt"
    dev = {_normalise(line.partition("==")[0]) for line in lines[1:]}
    assert all(re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*==\S+$", line) for line in lines[1:]), "fully pinned"
    assert not dev & runtime_distributions(), "a package is pinned once, in one of the two files"
    assert {"moto", "pgserver", "aiosmtpd", "pytest", "ruff", "mypy", "compliance-trestle"} <= dev


def test_the_product_does_not_import_the_development_package() -> None:
    seen: dict[tuple[str, str], set[str]] = {}
    wrong = []
    for rel, module, where, line in all_imports():
        if module.partition(".")[0] != DEV_PACKAGE:
            continue
        if (rel, where) in ALLOWED_DEV_IMPORTS and module in ALLOWED_DEV_IMPORTS[(rel, where)]:
            seen.setdefault((rel, where), set()).add(module)
        else:
            wrong.append(f"{rel}:{line} ({where}): {module}")
    assert not wrong, (
        "the product (include/attestly, plugins, dags) must not import attestly_dev (development tooling, "
        "not in the image); only the CLI's development commands do, lazily:\n  " + "\n  ".join(wrong)
    )
    assert seen == ALLOWED_DEV_IMPORTS, "ALLOWED_DEV_IMPORTS lists an import that is no longer there"
