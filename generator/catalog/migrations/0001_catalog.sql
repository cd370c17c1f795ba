-- The data product catalog: what each product is, what it publishes, what it reads, how its runs went.
-- Applied by generator/catalog.py inside one transaction; never edit an applied migration, add the next one.

CREATE TABLE datamesh_catalog.products (
    domain            text        NOT NULL,
    name              text        NOT NULL,
    current_version   text        NOT NULL,
    description       text        NOT NULL,
    owner_team        text        NOT NULL,
    owner_email       text        NOT NULL,
    classification    text        NOT NULL,
    retention_days    integer,
    sla               jsonb       NOT NULL,
    tags              text[]      NOT NULL DEFAULT '{}',
    published_schema  text        NOT NULL,
    spec              jsonb       NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, name)
);

CREATE TABLE datamesh_catalog.product_versions (
    domain         text        NOT NULL,
    product        text        NOT NULL,
    version        text        NOT NULL,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    changelog      jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (domain, product, version),
    FOREIGN KEY (domain, product) REFERENCES datamesh_catalog.products (domain, name) ON DELETE CASCADE
);

CREATE TABLE datamesh_catalog.outputs (
    domain        text    NOT NULL,
    product       text    NOT NULL,
    name          text    NOT NULL,
    position      integer NOT NULL,
    description   text    NOT NULL,
    primary_key   text[]  NOT NULL DEFAULT '{}',
    quality_rules jsonb   NOT NULL DEFAULT '[]',
    PRIMARY KEY (domain, product, name),
    FOREIGN KEY (domain, product) REFERENCES datamesh_catalog.products (domain, name) ON DELETE CASCADE
);

CREATE TABLE datamesh_catalog.columns (
    domain       text    NOT NULL,
    product      text    NOT NULL,
    output       text    NOT NULL,
    name         text    NOT NULL,
    position     integer NOT NULL,
    type         text    NOT NULL,
    description  text,
    pii_category text,
    constraints  jsonb   NOT NULL DEFAULT '{}',
    PRIMARY KEY (domain, product, output, name),
    FOREIGN KEY (domain, product, output)
        REFERENCES datamesh_catalog.outputs (domain, product, name) ON DELETE CASCADE
);

-- consumer reads producer's output at a major version
CREATE TABLE datamesh_catalog.lineage (
    consumer_domain  text    NOT NULL,
    consumer_product text    NOT NULL,
    producer_domain  text    NOT NULL,
    producer_product text    NOT NULL,
    producer_output  text    NOT NULL,
    major            integer NOT NULL,
    PRIMARY KEY (consumer_domain, consumer_product, producer_domain, producer_product, producer_output),
    FOREIGN KEY (consumer_domain, consumer_product)
        REFERENCES datamesh_catalog.products (domain, name) ON DELETE CASCADE
);

-- No foreign key to products: a product's very first run may fail before it was ever registered.
-- Airflow's run ids are unique per DAG only, hence the key.
CREATE TABLE datamesh_catalog.runs (
    domain         text        NOT NULL,
    product        text        NOT NULL,
    run_id         text        NOT NULL,
    version        text,
    started_at     timestamptz,
    ended_at       timestamptz NOT NULL DEFAULT now(),
    outcome        text        NOT NULL CHECK (outcome IN ('success', 'failed')),
    failed_task    text,
    message        text,
    snapshot       text,
    rows_published jsonb       NOT NULL DEFAULT '{}',
    tests_passed   integer,
    tests_failed   integer,
    gate_verdict   text,
    gate_messages  jsonb       NOT NULL DEFAULT '[]',
    PRIMARY KEY (domain, product, run_id)
);

CREATE INDEX runs_by_time ON datamesh_catalog.runs (domain, product, ended_at DESC);
