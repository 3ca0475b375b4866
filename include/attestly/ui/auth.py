"""Authentication for the Evidence view: Airflow's own, not a second login.

:func:`require_airflow_user` is a FastAPI dependency that resolves the caller exactly as Airflow's core
API does (``airflow.api_fastapi.core_api.security.get_user``: a ``Authorization: Bearer <JWT>`` header
from ``POST /auth/token``, else the UI's session cookie) and then asks the configured auth manager
whether that user may read DAG runs (``requires_access_dag("GET", DagAccessEntity.RUN)``), since the
page shows evidence and the runs behind it for every DAG.

Contract: no credential, or an expired one, is ``401``; a token that does not verify, or a user without
read access to DAG runs, is ``403``; otherwise the dependency returns the Airflow user object.

Airflow is imported when a request arrives, not when this module is imported: the plugin file is also
imported by the scheduler, the dag-processor and task processes, which need none of this.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# Reads the same "Authorization: Bearer" header Airflow's core API reads; never raises by itself.
_bearer = HTTPBearer(auto_error=False, description="A JWT from POST /auth/token")


async def require_airflow_user(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008 - FastAPI idiom
) -> Any:
    """The logged-in Airflow user allowed to read DAG runs; ``401``/``403`` otherwise (see module doc)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    requires_access_dag("GET", DagAccessEntity.RUN)(request, user)
    return user


#: The DAG whose run-creation permission uploading manual evidence needs: recording evidence is a write to
#: the same ledger `evidence_collection` writes, so whoever may not trigger it may not upload either.
WRITE_DAG_ID = "evidence_collection"


async def require_evidence_writer(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008 - FastAPI idiom
) -> Any:
    """The logged-in Airflow user allowed to create runs of ``evidence_collection`` (``POST`` on its DAG
    runs: the simple auth manager's ``user`` role and above, never ``viewer``); ``401``/``403`` otherwise."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=WRITE_DAG_ID)(request, user)
    return user
