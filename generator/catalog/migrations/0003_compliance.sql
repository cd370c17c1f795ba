-- Governance (issue 3): one compliance record per policy evaluation of a product, and the contract
-- each product published per major version. Written by generator/compliance.py.

CREATE TABLE datamesh_catalog.compliance_records (
    id                 bigserial   PRIMARY KEY,
    domain             text        NOT NULL,
    product            text        NOT NULL,
    version            text        NOT NULL,
    moment             text        NOT NULL CHECK (moment IN ('static', 'gate')),
    run_id             text,                      -- the Airflow run id at the gate; null when static
    evaluated_at       timestamptz NOT NULL DEFAULT now(),
    verdict            text        NOT NULL CHECK (verdict IN ('pass', 'warn', 'block')),
    policies_evaluated integer     NOT NULL,
    policies_passed    integer     NOT NULL,
    policies_warned    integer     NOT NULL,
    policies_blocked   integer     NOT NULL,
    checks_evaluated   integer     NOT NULL,      -- one per policy and subject (column, test, ...)
    policies           jsonb       NOT NULL DEFAULT '[]',  -- per policy: outcome, checks, messages
    facts              jsonb       NOT NULL DEFAULT '{}',  -- row counts, null rates, input ages
    changes            jsonb       NOT NULL DEFAULT '[]',  -- differences from the last contract
    quality_score      numeric(5, 1)                      -- 0-100 from tests and quality rules
);

CREATE INDEX compliance_records_by_time
    ON datamesh_catalog.compliance_records (domain, product, evaluated_at DESC);
