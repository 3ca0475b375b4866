# The Attestly image: the official Airflow 3.3.2 image with the pinned runtime requirements and the package.
# Used by every Airflow service in docker-compose.yaml, and as the image for the official Helm chart
# (images.airflow.repository/tag) or any Kubernetes executor pod template.
FROM apache/airflow:3.3.2-python3.11

# WeasyPrint (PDF reports) needs Pango, and HarfBuzz's subset library for reproducible PDFs (without it
# fonts are subset by fontTools, which stamps the clock into every PDF). The PDF engine is pinned to the
# versions a Debian 12 host gets, so reports rendered here and on a host are byte-identical:
# tests/fixtures/pdf-engine.json holds the same pins and the golden PDF they produce (tests/unit/test_pdf_engine.py).
# curl is for the compose health checks.
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libharfbuzz0b=6.0.0+dfsg-3 libharfbuzz-subset0=6.0.0+dfsg-3 \
      libpango-1.0-0=1.50.12+ds-1 libpangoft2-1.0-0=1.50.12+ds-1 \
      fonts-dejavu-core=2.37-6 curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

# The runtime requirements first (a cached layer); apache-airflow is named so pip never moves it. Only
# requirements.txt: the development and test tools (requirements-dev.txt) and the development package
# include/attestly_dev (local stack, seeders, demo; left out by .dockerignore) are not in the image.
COPY --chown=airflow:0 requirements.txt /opt/attestly/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/attestly/requirements.txt

# Prowler in its own virtual environment (it pins boto3, pandas and pydantic against Airflow's), from the
# fully pinned requirements-prowler.txt; tasks find it at /opt/prowler/bin/prowler.
COPY --chown=airflow:0 requirements-prowler.txt /opt/attestly/requirements-prowler.txt
USER root
RUN python -m venv /opt/prowler \
 && /opt/prowler/bin/pip install --no-cache-dir --no-deps -r /opt/attestly/requirements-prowler.txt \
 && chown -R airflow:0 /opt/prowler
USER airflow

# The project, installed as in `make setup` (editable, so dags/, plugins/, include/policy and templates
# are found next to the package: ATTESTLY_PROJECT_DIR). The Attestly migrations run from docker/airflow_init.py
# through attestly.db.migrate.
COPY --chown=airflow:0 pyproject.toml /opt/attestly/pyproject.toml
COPY --chown=airflow:0 include /opt/attestly/include
COPY --chown=airflow:0 dags /opt/attestly/dags
COPY --chown=airflow:0 plugins /opt/attestly/plugins
COPY --chown=airflow:0 docker /opt/attestly/docker
RUN pip install --no-cache-dir --no-deps -e /opt/attestly

ENV ATTESTLY_PROJECT_DIR=/opt/attestly \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/attestly/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/attestly/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False
