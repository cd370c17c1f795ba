#!/bin/sh
# The image's entrypoint: maps $DATAMESH_OPENLINEAGE (where the pipeline's lineage events go) onto
# the Airflow OpenLineage provider's settings, so task and DAG run events go to the same place,
# then runs the command. Unset, nothing is exported and the provider stays disabled. Settings
# given as AIRFLOW__OPENLINEAGE__* in the environment win. A value of no known form stops the
# container with the forms allowed (generator/catalog/openlineage.py).
set -e
if [ -n "${DATAMESH_OPENLINEAGE:-}" ] && [ -z "${AIRFLOW__OPENLINEAGE__TRANSPORT:-}" ]; then
    settings="$("${DATAMESH_PYTHON:-python}" -m generator.catalog.openlineage)"
    eval "$settings"
fi
exec "$@"
