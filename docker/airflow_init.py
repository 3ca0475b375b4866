"""The ``airflow-init`` service of docker-compose.yaml: run once before the Airflow services start.

1. ``airflow db migrate`` (the metadata database ``airflow``);
2. the Attestly migrations of ``audit`` and ``attestly`` (``attestly.db.migrate.migrate_url``, as
   ``attestly stack up`` applies them), through the superuser URL in ``ATTESTLY_DATABASE_URL``;
3. the simple auth manager's passwords file (``AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE``):
   user ``admin`` with ``AIRFLOW_ADMIN_PASSWORD``, written with mode 0600.

Idempotent: every step is safe to repeat on the next ``docker compose up``. Exit status non-zero on
the first failure, so the services that depend on it do not start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    subprocess.run(["airflow", "db", "migrate"], check=True)

    from attestly.db import migrate

    applied = migrate.migrate_url(os.environ["ATTESTLY_DATABASE_URL"])
    print(f"attestly migrations applied: {applied or 'none (up to date)'}")

    path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}, fh)
    tmp.replace(path)
    print(f"admin password written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
