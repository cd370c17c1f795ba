-- The console (issue 15): each product's dbt docs page, built by `datamesh docs` (a deploy step of its
-- own, never on request) and served by the Airflow plugin from here, so every api-server replica reads
-- the same page. The page is stored gzip-compressed (dbt's static page is 2-3 MB of text, a quarter of it gzipped).

CREATE TABLE datamesh_catalog.docs_pages (
    domain      text        NOT NULL,
    product     text        NOT NULL,
    version     text        NOT NULL,          -- the spec version the page was built from
    html_gzip   bytea       NOT NULL,
    built_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, product)
);
