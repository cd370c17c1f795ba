# One image for every Airflow service of docker-compose.yml: Airflow 3.3, dbt 1.11 and this
# project (the generator package, whose pipeline functions the DAGs' tasks call), installed with
# pip from pyproject.toml within constraints.txt, the lock the development virtualenv and CI use
# too (`make lock` regenerates it). dags/, dbt/ and policies/ are not baked in: docker-compose.yml
# mounts them under DATAMESH_ROOT (docs/deploy.md shows the baked-in variant for Kubernetes).
FROM python:3.11-slim-bookworm

ARG AIRFLOW_UID=50000
ENV AIRFLOW_HOME=/opt/airflow \
    DATAMESH_ROOT=/opt/datamesh \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# curl: the api-server's and scheduler's health checks; git: the git DAG bundle's clones.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/datamesh-src
COPY pyproject.toml constraints.txt ./
COPY generator ./generator
# The `stack` extra adds what the compose stack runs beyond the dev setup: the Celery executor,
# the FAB auth manager (the UI's users) and the git DAG bundle. The lock pins every package, so a new upstream
# release cannot change what the image runs.
RUN pip install -c constraints.txt ".[stack]" && pip check

COPY docker/airflow-init.sh /usr/local/bin/datamesh-airflow-init
# Maps $DATAMESH_OPENLINEAGE onto the Airflow OpenLineage provider's transport, then runs the command.
COPY docker/entrypoint.sh /usr/local/bin/datamesh-entrypoint

# The stack runs as the host user's uid (AIRFLOW_UID in .env) with group 0: make what it writes
# group-writable, as Airflow's own image does.
RUN useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir "${AIRFLOW_HOME}" --create-home airflow \
    && mkdir -p "${AIRFLOW_HOME}/logs" "${DATAMESH_ROOT}/dbt-state" \
    && chown -R "${AIRFLOW_UID}:0" "${AIRFLOW_HOME}" "${DATAMESH_ROOT}" \
    && chmod -R g+rwX "${AIRFLOW_HOME}" "${DATAMESH_ROOT}" \
    && chmod 0755 /usr/local/bin/datamesh-airflow-init /usr/local/bin/datamesh-entrypoint

USER ${AIRFLOW_UID}
WORKDIR ${DATAMESH_ROOT}
EXPOSE 8080
ENTRYPOINT ["datamesh-entrypoint"]
CMD ["airflow", "version"]
