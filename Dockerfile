# The Attestly image: the official Airflow 3.3.2 image with the pinned requirements and the package.
# Used by every Airflow service in docker-compose.yaml, and as the image for the official Helm chart
# (images.airflow.repository/tag) or any Kubernetes executor pod template.
FROM apache/airflow:3.3.2-python3.11

# WeasyPrint (PDF reports) needs Pango; curl is for the compose health checks.
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 curl \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

# Pinned requirements first (a cached layer); apache-airflow is named so pip never moves it.
COPY --chown=airflow:0 requirements.txt /opt/attestly/requirements.txt
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /opt/attestly/requirements.txt

# The project, installed as in `make setup` (editable, so dags/, plugins/, include/policy and templates
# are found next to the package: ATTESTLY_PROJECT_DIR).
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
