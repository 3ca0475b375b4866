"""Where things are: the project root, the local state directory, the evidence bucket.

Environment variables (all optional):
- ``ATTESTLY_HOME``: local state of the embedded stack (default ``<project>/.attestly``).
- ``ATTESTLY_POLICY_DIR``: the policy directory (default ``<project>/include/policy``).
- ``ATTESTLY_DATABASE_URL``: use this PostgreSQL server (superuser URL) instead of the embedded one.
- ``ATTESTLY_EVIDENCE_BUCKET``: the Object Lock bucket for evidence, digests, archives and reports.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# include/attestly -> include -> project root (editable install keeps the package in the checkout).
PROJECT_DIR = PACKAGE_DIR.parent.parent

DEFAULT_BUCKET = "attestly-evidence"


def project_dir() -> Path:
    return Path(os.environ.get("ATTESTLY_PROJECT_DIR", PROJECT_DIR))


def home() -> Path:
    """The local state directory (git-ignored)."""
    return Path(os.environ.get("ATTESTLY_HOME", project_dir() / ".attestly")).resolve()


def evidence_bucket() -> str:
    return os.environ.get("ATTESTLY_EVIDENCE_BUCKET", DEFAULT_BUCKET)


def templates_dir() -> Path:
    return project_dir() / "include" / "templates"


def dags_dir() -> Path:
    return project_dir() / "dags"


def plugins_dir() -> Path:
    return project_dir() / "plugins"
