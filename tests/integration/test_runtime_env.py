"""The product runs on requirements.txt alone: a venv of the runtime pins and the project as the image has it.

The venv (``python3.11 -m venv``, ``pip install --no-deps -r requirements.txt``, then the project installed
editable from a copy laid out like the image: pyproject.toml, include/ without include/attestly_dev, dags/,
plugins/, docker/) is built once per test session under pytest's temporary directory, from the pip cache.
In it: the runtime pins are consistent (``pip check``); every module of the package imports; every DAG
parses (DagBag, no import errors) and the plugin loads; ``attestly verify --help`` and ``attestly policy
check`` succeed; the development commands (``stack up``, ``seed``, ``demo``) exit 2 saying how to install
the development requirements; and moto, pgserver, aiosmtpd, pytest and attestly_dev are not importable.
tests/unit/test_runtime_imports.py checks the same statically.

A missing Python 3.11 or venv module fails under CI and skips elsewhere (tests/sysdeps.py); a failed install
of requirements.txt always fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sysdeps import unavailable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: What the Dockerfile copies into the image (besides requirements.txt); .dockerignore drops attestly_dev.
IMAGE_COPIES = ("pyproject.toml", "include", "dags", "plugins", "docker")
NOT_IN_IMAGE = ("attestly_dev", "*.egg-info", "__pycache__", ".mypy_cache")
DEV_ONLY_MODULES = ("moto", "pgserver", "aiosmtpd", "pytest", "attestly_dev")
DAG_IDS = {
    "evidence_collection",
    "audit_log_quality",
    "retention_archive",
    "key_disposal",
    "control_reports",
    "archive_restore_test",
}


@dataclass(frozen=True)
class RuntimeEnv:
    venv: Path
    project: Path
    env: dict[str, str]
    build_seconds: float

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.project,
            check=False,
            timeout=timeout,
        )

    def attestly(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "attestly"), *args)


def _python311() -> str:
    """A Python 3.11 that can make a venv: ``python3.11`` on PATH, else this interpreter when it is 3.11."""
    candidates = [shutil.which("python3.11")]
    if sys.version_info[:2] == (3, 11):
        candidates.append(sys.executable)
    for python in filter(None, candidates):
        probe = subprocess.run(
            [python, "-c", "import venv, ensurepip, sys; assert sys.version_info[:2] == (3, 11)"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return python
    unavailable("no Python 3.11 with the venv and ensurepip modules", packages="python3.11 python3.11-venv")


def _step(what: str, args: list[str], env: dict[str, str], timeout: float) -> None:
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        pytest.fail(f"{what} failed (exit {done.returncode}): {' '.join(args)}\n{tail}", pytrace=False)


@pytest.fixture(scope="session")
def runtime_env(tmp_path_factory: pytest.TempPathFactory) -> RuntimeEnv:
    base = tmp_path_factory.mktemp("runtime-env")
    project, venv, home = base / "project", base / "venv", base / "home"
    for name in IMAGE_COPIES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns(*NOT_IN_IMAGE))
        else:
            project.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, project / name)
    assert not (project / "include" / "attestly_dev").exists()

    # A clean environment: nothing of this venv, the local stack or an Airflow home leaks in.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "ATTESTLY", "PYTHON", "VIRTUAL_ENV", "AWS_", "PYTEST"))
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(project / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(project / "plugins"),
        ATTESTLY_PROJECT_DIR=str(project),
        ATTESTLY_HOME=str(home / "attestly"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    python = _python311()
    started = time.monotonic()
    _step("python3.11 -m venv", [python, "-m", "venv", str(venv)], env, 120)
    pip = str(venv / "bin" / "pip")
    _step(
        "pip install --no-deps -r requirements.txt",
        [pip, "install", "--quiet", "--no-deps", "--no-compile", "-r", str(ROOT / "requirements.txt")],
        env,
        900,
    )
    _step(
        "pip install --no-deps -e <project>",
        [pip, "install", "--quiet", "--no-deps", "-e", str(project)],
        env,
        300,
    )
    seconds = time.monotonic() - started
    print(f"\nruntime venv (requirements.txt alone + the project) built in {seconds:.0f}s", file=sys.stderr)
    return RuntimeEnv(venv=venv, project=project, env=env, build_seconds=seconds)


def test_the_runtime_pins_are_consistent(runtime_env: RuntimeEnv) -> None:
    done = runtime_env.run(str(runtime_env.venv / "bin" / "pip"), "check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_development_tooling_is_not_installed(runtime_env: RuntimeEnv) -> None:
    probe = textwrap.dedent(
        f"""
        import importlib, json
        found = {{}}
        for name in {DEV_ONLY_MODULES!r}:
            try:
                importlib.import_module(name)
                found[name] = "imported"
            except ImportError as exc:
                found[name] = type(exc).__name__
        print(json.dumps(found))
        """
    )
    done = runtime_env.run(runtime_env.python, "-c", probe)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == dict.fromkeys(DEV_ONLY_MODULES, "ModuleNotFoundError")


def test_every_module_imports_the_dags_parse_and_the_plugin_loads(runtime_env: RuntimeEnv) -> None:
    probe = textwrap.dedent(
        """
        import importlib, importlib.util, json, os, pkgutil, sys, traceback
        out = {"module_errors": {}}

        import attestly
        for info in pkgutil.walk_packages(attestly.__path__, "attestly."):
            try:
                importlib.import_module(info.name)
            except Exception:
                out["module_errors"][info.name] = traceback.format_exc(limit=3)

        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"], safe_mode=False)
        out["dag_ids"] = sorted(bag.dag_ids)
        out["dag_import_errors"] = {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()}

        from airflow import plugins_manager
        from airflow.plugins_manager import AirflowPlugin
        plugins_manager.ensure_plugins_loaded()
        out["plugin_import_errors"] = {str(k): str(v) for k, v in plugins_manager.get_import_errors().items()}
        apps, _ = plugins_manager.get_fastapi_plugins()
        out["fastapi_apps"] = sorted(app["name"] for app in apps)
        path = os.path.join(os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"], "attestly_plugin.py")
        spec = importlib.util.spec_from_file_location("attestly_plugin_probe", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out["plugin_classes"] = sorted(
            v.name for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, AirflowPlugin) and v is not AirflowPlugin
        )
        out["dev_modules_loaded"] = sorted(
            m for m in sys.modules if m.split(".")[0] in ("attestly_dev", "moto", "pgserver", "aiosmtpd", "pytest")
        )
        print(json.dumps(out))
        """
    )
    done = runtime_env.run(runtime_env.python, "-c", probe)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["module_errors"] == {}, "modules of attestly that do not import on requirements.txt alone"
    assert out["dag_import_errors"] == {}
    assert set(out["dag_ids"]) >= DAG_IDS
    assert out["plugin_import_errors"] == {}
    assert "Attestly evidence" in out["fastapi_apps"]
    assert out["plugin_classes"] == ["attestly"]
    assert out["dev_modules_loaded"] == []


def test_the_production_commands_run(runtime_env: RuntimeEnv) -> None:
    done = runtime_env.attestly("verify", "--help")
    assert done.returncode == 0, done.stderr
    assert "--public-key" in done.stdout
    done = runtime_env.attestly("policy", "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "policy OK" in done.stdout


@pytest.mark.parametrize(
    "command",
    [
        ("stack", "up"),
        ("stack", "status"),
        ("seed", "audit", "--start", "2026-01-01", "--days", "1", "--events-per-day", "1"),
        ("seed", "aws"),
        ("demo",),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_the_development_commands_say_how_to_install_them(
    runtime_env: RuntimeEnv, command: tuple[str, ...]
) -> None:
    done = runtime_env.attestly(*command)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "development" in done.stderr and "requirements-dev.txt" in done.stderr and "make setup" in done.stderr
    )
    assert "attestly_dev" in done.stderr and "Traceback" not in done.stderr
    assert not (Path(runtime_env.env["ATTESTLY_HOME"])).exists(), "nothing started, nothing written"
