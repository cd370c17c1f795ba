-- Operations (issue 6): what went wrong with a product's runs, for the people on call.
-- `failure`: a DAG run failed (generator.pipeline.record_failure, the DAG's on_failure_callback).
-- `sla_miss`: a run was still going when its freshness deadline passed (Airflow's DeadlineAlert
-- calls generator.incidents.record_sla_miss). Written by generator/incidents.py.
-- No foreign key to products: a product's very first run may fail before it was ever registered.

CREATE TABLE datamesh_catalog.incidents (
    id       bigserial   PRIMARY KEY,
    kind     text        NOT NULL CHECK (kind IN ('failure', 'sla_miss')),
    domain   text        NOT NULL,
    product  text        NOT NULL,
    run_id   text,                      -- the Airflow run id; null when not known
    message  text        NOT NULL,
    details  jsonb       NOT NULL DEFAULT '{}',  -- e.g. the deadline and the freshness window
    at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX incidents_by_time ON datamesh_catalog.incidents (domain, product, at DESC);

-- One incident of a kind per run: a retried callback or a re-failed run updates it.
CREATE UNIQUE INDEX incidents_once_per_run ON datamesh_catalog.incidents (kind, domain, product, run_id);
