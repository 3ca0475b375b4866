"""The Attestly plugin: the "Evidence" view in the Airflow UI (logic in ``attestly.ui``).

- ``fastapi_apps``: ``attestly.ui.create_app`` mounted at ``/attestly`` in the api-server, behind
  Airflow's own authentication (``attestly.ui.require_airflow_user``: a JWT from ``POST /auth/token``
  or the UI session; the user must be allowed to read DAG runs). Uploading manual evidence
  (``/attestly/evidence/add``) also needs permission to create ``evidence_collection`` runs
  (``attestly.ui.require_evidence_writer``).
- ``external_views``: an "Evidence" entry under Browse that shows ``/attestly/`` inside the UI
  (at ``<airflow>/plugin/evidence``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from attestly.ui import APP_PREFIX, create_app, require_airflow_user, require_evidence_writer


def _base_url() -> str | None:
    from attestly.links import public_base_url

    return public_base_url()


class AttestlyPlugin(AirflowPlugin):
    name = "attestly"
    fastapi_apps = [  # noqa: RUF012 - Airflow reads these class attributes
        {
            "app": create_app(auth=require_airflow_user, writer=require_evidence_writer, base_url=_base_url),
            "url_prefix": APP_PREFIX,
            "name": "Attestly evidence",
        }
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Evidence",
            "href": APP_PREFIX.lstrip("/") + "/",  # relative to the UI's base URL
            "url_route": "evidence",
            "destination": "nav",
            "category": "browse",
        }
    ]
