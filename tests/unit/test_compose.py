"""docker-compose.yaml without a Docker engine: it validates against the Compose Specification schema
(before and after variable interpolation), every secret comes from the environment, and every Airflow
service runs the same command, connection ids and key settings as the local stack
(``attestly_dev.stack.core.environment()``, ``attestly_dev.stack.airflow_services.SERVICES``). The Dockerfile
installs requirements.txt and the package; the init scripts create what the local stack creates."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

AIRFLOW_SERVICES = {
    # compose service -> the `airflow` sub-command it runs (the local stack's SERVICES, plus Celery workers)
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery",
}
# Settings whose value must be the same as on the local stack.
SAME_VALUE = (
    "AIRFLOW__CORE__LOAD_EXAMPLES",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
    "AIRFLOW__CORE__UNIT_TEST_MODE",
    "AIRFLOW__EMAIL__EMAIL_BACKEND",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL",
    "AIRFLOW__LOGGING__LOGGING_LEVEL",
)

_VAR = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


class MissingVariable(KeyError):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``,
    ``${VAR:?err}``, ``${VAR?err}``, ``${VAR:+alt}``, applied to every string of a loaded file."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group("plain"):
            return env.get(m.group("plain"), "")
        spec = _BRACED.match(m.group("braced"))
        assert spec, f"bad interpolation {m.group(0)!r}"
        name, op, arg = spec.group("name"), spec.group("op"), spec.group("arg") or ""
        present, empty = name in env, not env.get(name)
        if op in (":?", "?") and (not present or (op == ":?" and empty)):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (not present or (op == ":-" and empty)):
            return interpolate(arg, env)  # type: ignore[no-any-return]
        if op == ":+":
            return "" if empty else interpolate(arg, env)  # type: ignore[no-any-return]
        return env.get(name, "")

    return _VAR.sub(one, value)


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env_values() -> dict[str, str]:
    """.env.example filled by docker/generate_env.py, as `docker compose` would read .env."""
    text, _ = _load_module(ROOT / "docker" / "generate_env.py").render(ENV_EXAMPLE.read_text())
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            values[k.strip()] = v.strip()
    return values


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], env_values: dict[str, str]) -> dict[str, Any]:
    return interpolate(raw, env_values)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The local stack's variables (computed in a scratch ATTESTLY_HOME; nothing is started)."""
    from attestly_dev.stack import core

    mp = pytest.MonkeyPatch()
    mp.setenv("ATTESTLY_HOME", str(tmp_path_factory.mktemp("compose-home")))
    mp.delenv("ATTESTLY_DATABASE_URL", raising=False)
    mp.delenv("ATTESTLY_EVIDENCE_BUCKET", raising=False)
    try:
        return core.environment()
    finally:
        mp.undo()


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


# ------------------------------------------------------------------------------------------ schema


def test_compose_file_validates_against_the_compose_specification(
    raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    for doc in (raw, compose):
        errors = sorted(validator_cls(schema).iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_a_broken_compose_file_is_refused() -> None:
    """The schema check has teeth: an unknown service key and a bad port type are errors."""
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    for bad in (
        {"services": {"x": {"image": "busybox", "comand": ["true"]}}},
        {"services": {"x": {"image": "busybox", "depends_on": {"y": {"condition": "service_ready"}}}}},
    ):
        assert list(validator.iter_errors(bad)), bad


# ----------------------------------------------------------------------------------------- secrets


def test_every_required_variable_is_documented_and_nothing_secret_is_literal(raw: dict[str, Any]) -> None:
    text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", text))
    optional = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-", text))
    example = ENV_EXAMPLE.read_text()
    empty = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=$", example, re.M))
    commented = set(re.findall(r"^# ([A-Z_][A-Z0-9_]*)=", example, re.M))
    assert required == empty, required ^ empty
    assert optional <= commented, optional - commented
    assert not re.search(r"^[A-Z_]+=\S", example, re.M), ".env.example must not carry values"
    for m in ("BEGIN PRIVATE KEY", "BEGIN OPENSSH", "AKIA"):
        assert m not in text

    secretish = re.compile(r"PASSWORD|SECRET|FERNET|SIGNING_KEY|ACCESS_KEY|JWT")
    for name, service in raw["services"].items():
        for key, value in _env(service).items():
            if secretish.search(key) and not key.endswith("_FILE"):
                assert value.startswith("${") and ":?" in value, (name, key, value)
            if key.startswith("AIRFLOW_CONN_"):
                body = json.loads(value)
                if "password" in body:
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", body["password"]), (name, key)


def test_compose_refuses_to_start_without_the_secrets(raw: dict[str, Any]) -> None:
    with pytest.raises(MissingVariable, match="set "):
        interpolate(raw, {})


def test_generate_env_fills_every_required_value(env_values: dict[str, str], tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from attestly.signing import Ed25519Signer

    gen = _load_module(ROOT / "docker" / "generate_env.py")
    required = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=$", ENV_EXAMPLE.read_text(), re.M))
    assert all(env_values.get(k) for k in required)
    assert all(re.fullmatch(r"[A-Za-z0-9_=+/-]+", env_values[k]) for k in required)
    Fernet(env_values["AIRFLOW_FERNET_KEY"].encode())
    signer = Ed25519Signer.from_base64(env_values["ATTESTLY_SIGNING_KEY"])
    pem = tmp_path / "public.pem"
    assert gen.main(["--public-key", str(pem)]) == 0
    assert pem.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert signer.public_key_pem().startswith(b"-----BEGIN PUBLIC KEY-----")


# ---------------------------------------------------------------------------------------- services


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    expected = {"postgres", "redis", "minio", "minio-init", "mailpit", "airflow-init", *AIRFLOW_SERVICES}
    assert expected <= set(services)
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale airflow-worker=N works
    assert worker["command"] == ["celery", "worker"]
    image = services["airflow-apiserver"]["image"]
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        assert services[name]["image"] == image and services[name]["build"]["dockerfile"] == "Dockerfile"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES:
        deps = services[name]["depends_on"]
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
    assert services["minio-init"]["image"].startswith("minio/mc")
    assert services["mailpit"]["image"].startswith("axllent/mailpit")


def test_airflow_commands_match_the_local_stack(compose: dict[str, Any]) -> None:
    from attestly_dev.stack.airflow_services import SERVICES

    commands = {name: compose["services"][name]["command"] for name in AIRFLOW_SERVICES}
    assert {c[0] for c in commands.values()} >= set(SERVICES)
    for name, sub in AIRFLOW_SERVICES.items():
        assert commands[name][0] == sub, name
    api = commands["airflow-apiserver"]
    assert (
        api[api.index("--port") + 1]
        == compose["services"]["airflow-apiserver"]["environment"]["AIRFLOW__API__PORT"]
    )


def test_airflow_environment_matches_the_local_stack(
    compose: dict[str, Any], local_env: dict[str, str]
) -> None:
    dockerfile = DOCKERFILE.read_text()
    for name in [*AIRFLOW_SERVICES, "airflow-init"]:
        env = _env(compose["services"][name])
        missing = set(local_env) - set(env)
        assert not missing, (name, sorted(missing))
        for key in SAME_VALUE:
            assert env[key] == local_env[key], (name, key)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:")
            and "@redis:6379" in env["AIRFLOW__CELERY__BROKER_URL"]
        )
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert (
            env["ATTESTLY_EVIDENCE_BUCKET"]
            == compose["services"]["minio-init"]["environment"]["ATTESTLY_EVIDENCE_BUCKET"]
        )
        for key, folder in (
            ("AIRFLOW__CORE__DAGS_FOLDER", "dags"),
            ("AIRFLOW__CORE__PLUGINS_FOLDER", "plugins"),
        ):
            assert env[key] == f"{env['ATTESTLY_PROJECT_DIR']}/{folder}"
            assert f"COPY --chown=airflow:0 {folder} {env[key]}" in dockerfile
        auth_file = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
        assert any(
            v.endswith(":" + str(Path(auth_file).parent)) for v in compose["services"][name]["volumes"]
        )


def test_connections_match_the_local_stack(compose: dict[str, Any], local_env: dict[str, str]) -> None:
    from attestly.connections import parse_conn

    local_ids = {k for k in local_env if k.startswith("AIRFLOW_CONN_")}
    assert {
        "AIRFLOW_CONN_AUDIT_DB",
        "AIRFLOW_CONN_AUDIT_ARCHIVER",
        "AIRFLOW_CONN_AUDIT_CUSTODIAN",
        "AIRFLOW_CONN_ATTESTLY_DB",
        "AIRFLOW_CONN_AWS_DEFAULT",
        "AIRFLOW_CONN_SMTP_DEFAULT",
        "AIRFLOW_CONN_ATTESTLY_SIGNING",
    } <= local_ids
    for name in AIRFLOW_SERVICES:
        env = _env(compose["services"][name])
        assert {k for k in env if k.startswith("AIRFLOW_CONN_")} == local_ids, name
        for key in local_ids:
            conn_id = key.removeprefix("AIRFLOW_CONN_").lower()
            ours, theirs = parse_conn(conn_id, env[key]), parse_conn(conn_id, local_env[key])
            assert ours.conn_type == theirs.conn_type, key
            assert set(ours.extra) == set(theirs.extra), key
            assert bool(ours.password) == bool(theirs.password), key
            if ours.conn_type == "postgres":
                assert (ours.host, ours.port, ours.login, ours.schema) == (
                    "postgres",
                    5432,
                    theirs.login,
                    theirs.schema,
                ), key
        aws = parse_conn("aws_default", env["AIRFLOW_CONN_AWS_DEFAULT"])
        assert aws.extra["endpoint_url"] == "http://minio:9000" and aws.login and aws.password
        smtp = parse_conn("smtp_default", env["AIRFLOW_CONN_SMTP_DEFAULT"])
        assert (smtp.host, smtp.port) == ("mailpit", 1025)
        signing = parse_conn("attestly_signing", env["AIRFLOW_CONN_ATTESTLY_SIGNING"])
        assert signing.extra == {"algorithm": "ed25519"}


def test_postgres_init_creates_the_stack_databases_and_roles(compose: dict[str, Any]) -> None:
    from attestly_dev.stack.core import DATABASES, LOGIN_ROLES

    postgres = compose["services"]["postgres"]
    mount = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = (ROOT / mount.split(":")[0]).read_text()
    for role in LOGIN_ROLES:
        assert re.search(rf"CREATE ROLE {role} LOGIN PASSWORD :'\w+'", script), role
    for db in DATABASES:
        assert f"CREATE DATABASE {db} " in script, db
    for var in re.findall(r'-v \w+="\$(\w+)"', script):
        assert postgres["environment"][var], var
    init = _env(compose["services"]["airflow-init"])
    assert init["ATTESTLY_DATABASE_URL"].startswith("postgresql://postgres:")
    assert compose["services"]["airflow-init"]["command"][-1].endswith("docker/airflow_init.py")


def test_minio_init_creates_an_object_lock_bucket(compose: dict[str, Any]) -> None:
    init = compose["services"]["minio-init"]
    mount = next(v for v in init["volumes"] if v.endswith(":ro"))
    script = (ROOT / mount.split(":")[0]).read_text()
    assert re.search(r'mc mb [^\n]*--with-lock[^\n]*"local/\$ATTESTLY_EVIDENCE_BUCKET"', script)
    assert "mc admin user add" in script and "mc admin policy attach" in script
    assert init["entrypoint"] == ["/bin/sh", "/" + Path(mount.split(":")[1]).name]


def test_dockerfile_installs_requirements_and_the_package() -> None:
    text = DOCKERFILE.read_text()
    pin = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin
    assert re.search(rf"^FROM apache/airflow:{re.escape(pin.group(1))}-python3\.11$", text, re.M)
    copy = re.search(r"^COPY .*requirements\.txt (\S+)$", text, re.M)
    assert copy
    install = re.search(rf"^RUN pip install .*-r {re.escape(copy.group(1))}$", text, re.M)
    assert install and f'"apache-airflow=={pin.group(1)}"' in install.group(0)
    assert re.search(r"^RUN pip install .*--no-deps -e /opt/attestly$", text, re.M)
    for folder in ("include", "dags", "plugins", "docker"):
        assert f"COPY --chown=airflow:0 {folder} /opt/attestly/{folder}" in text
    # The image holds the product: no development requirements, no development package.
    assert not re.search(r"^(COPY|ADD|RUN)\b.*requirements-dev", text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "include/attestly_dev" in ignored and "requirements-dev.txt" in ignored


def _compose_cli() -> list[str] | None:
    """A Compose v2 CLI if one is here: $DOCKER_COMPOSE, `docker-compose`, or the `docker compose` plugin."""
    import os
    import shlex
    import shutil
    import subprocess

    if os.environ.get("DOCKER_COMPOSE"):
        return shlex.split(os.environ["DOCKER_COMPOSE"])
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_the_compose_cli_accepts_the_file(env_values: dict[str, str], tmp_path: Path) -> None:
    """`docker compose config` (no engine needed) parses, interpolates and validates the file; without
    the secrets it refuses. Skipped when no Compose CLI is installed (set DOCKER_COMPOSE to one)."""
    import subprocess

    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI (docker compose / docker-compose / $DOCKER_COMPOSE)")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_values.items()))
    ok = subprocess.run(
        [*cli, "--env-file", str(env_file), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    empty = tmp_path / "empty.env"
    empty.write_text("")
    refused = subprocess.run(
        [*cli, "--env-file", str(empty), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert refused.returncode != 0 and "required variable" in refused.stderr, refused.stderr
