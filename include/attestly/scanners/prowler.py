"""Run Prowler for one account, in its own virtual environment, and keep its raw OCSF output.

Prowler pins its own boto3, pandas and pydantic, which conflict with Airflow's, so it lives in a separate
virtual environment installed from the fully pinned ``requirements-prowler.txt``: ``.venv-prowler`` for
the local stack (``make setup-prowler``), ``/opt/prowler`` in the image, or wherever
``ATTESTLY_PROWLER_BIN`` points. It is run as a subprocess with the account's assumed-role credentials
(the same audit role as the native collectors) in a minimal environment — no Airflow connection, no other
secret — with ``--output-formats json-ocsf``. Exit 0 and exit 3 ("FAIL findings present") are both a
completed scan; anything else is an error with the end of Prowler's own log.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPLETED = (0, 3)


class ProwlerUnavailable(RuntimeError):
    """Prowler's virtual environment is not installed; the message says how to install it."""


class ProwlerFailed(RuntimeError):
    """Prowler exited with an error; the message names the account and ends with Prowler's log."""


def prowler_binary() -> Path:
    """The ``prowler`` executable: ``ATTESTLY_PROWLER_BIN``, else ``<project>/.venv-prowler/bin/prowler``,
    else ``/opt/prowler/bin/prowler`` (the image)."""
    from attestly import config

    given = os.environ.get("ATTESTLY_PROWLER_BIN")
    candidates = (
        [Path(given)]
        if given
        else [
            config.project_dir() / ".venv-prowler" / "bin" / "prowler",
            Path("/opt/prowler/bin/prowler"),
        ]
    )
    for path in candidates:
        if path.exists() and os.access(path, os.X_OK):
            return path
    raise ProwlerUnavailable(
        "Prowler is not installed (looked for " + ", ".join(str(p) for p in candidates) + "): run "
        "`make setup-prowler` (a separate virtual environment from requirements-prowler.txt, ~2 minutes and "
        "2.3 GB), or set ATTESTLY_PROWLER_BIN"
    )


@dataclass(frozen=True)
class ProwlerScan:
    raw: bytes  # the json-ocsf file, as Prowler wrote it
    command: list[str]  # without credentials
    exit_code: int
    seconds: float


def _is_local(endpoint: str) -> bool:
    from attestly.collectors.aws._session import _is_local_host

    return _is_local_host(endpoint)


def run_prowler(
    *,
    credentials: Any,
    account_id: str,
    regions: Sequence[str],
    services: Sequence[str] = (),
    checks: Sequence[str] = (),
    excluded_checks: Sequence[str] = (),
    endpoint_url: str | None = None,
    timeout_minutes: int = 120,
) -> ProwlerScan:
    """Scan ``account_id`` with ``credentials`` (botocore frozen credentials of its audit role)."""
    binary = prowler_binary()
    with tempfile.TemporaryDirectory(prefix="attestly-prowler-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        log = out / "prowler.log"
        argv = [
            str(binary), "aws", "--output-formats", "json-ocsf", "--output-directory", str(out),
            "--output-filename", "scan", "--no-banner", "--log-level", "ERROR", "--log-file", str(log),
        ]  # fmt: skip
        if regions:
            argv += ["-f", *regions]
        if services:
            argv += ["--services", *services]
        if checks:
            argv += ["--checks", *checks]
        if excluded_checks:
            argv += ["--excluded-checks", *excluded_checks]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "LANG": "C.UTF-8",
            "AWS_ACCESS_KEY_ID": credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
            "AWS_DEFAULT_REGION": regions[0] if regions else "us-east-1",
        }
        if credentials.token:
            env["AWS_SESSION_TOKEN"] = credentials.token
        if endpoint_url:
            env["AWS_ENDPOINT_URL"] = endpoint_url
            if _is_local(endpoint_url):
                # S3 Control's endpoint rules prefix the host with the account id, which a loopback host
                # cannot resolve; moto's server accepts proxied requests, so send plain HTTP through it.
                env["HTTP_PROXY"] = endpoint_url
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                env=env,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout_minutes * 60,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ProwlerFailed(
                f"prowler for account {account_id}: no result within {timeout_minutes} minutes"
            ) from exc
        seconds = time.perf_counter() - started
        produced = out / "scan.ocsf.json"
        if proc.returncode not in COMPLETED or not produced.exists():
            tail = (log.read_text(errors="replace") if log.exists() else "") + proc.stderr
            raise ProwlerFailed(
                f"prowler for account {account_id} exited {proc.returncode}"
                + ("" if produced.exists() else " without an OCSF file")
                + f": {tail.strip()[-1500:]}"
            )
        command = ["prowler", *(a.replace(tmp, "<scratch>") for a in argv[1:])]
        return ProwlerScan(
            raw=produced.read_bytes(), command=command, exit_code=proc.returncode, seconds=seconds
        )


def version() -> str:
    out = subprocess.run(
        [str(prowler_binary()), "--version"], capture_output=True, text=True, check=False, timeout=120
    )
    return (out.stdout or out.stderr).strip().split()[-1] if (out.stdout or out.stderr).strip() else "unknown"
