-- Discovery, lineage and mesh health: domains, changelog entries, output-level lineage, quality
-- scores, subscriptions, grants, an append-only audit log and a full-text search document.
-- Every statement keeps the rows 0001 holds and fills the new columns from them.

-- Domains: who answers for a domain. Filled from its products (the first registration's team).
CREATE TABLE datamesh_catalog.domains (
    name          text        PRIMARY KEY,
    owner_team    text        NOT NULL,
    owner_email   text        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO datamesh_catalog.domains (name, owner_team, owner_email)
SELECT DISTINCT ON (domain) domain, owner_team, owner_email
FROM datamesh_catalog.products ORDER BY domain, updated_at;

-- A version's own changelog entry: what changed and whether it broke consumers.
ALTER TABLE datamesh_catalog.product_versions
    ADD COLUMN changes     text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN breaking    boolean NOT NULL DEFAULT false,
    ADD COLUMN released_on date;
UPDATE datamesh_catalog.product_versions v SET
    changes = COALESCE(ARRAY(SELECT jsonb_array_elements_text(e->'changes')), '{}'),
    breaking = COALESCE((e->>'breaking')::boolean, false),
    released_on = (e->>'date')::date
FROM (SELECT domain, product, version, jsonb_array_elements(changelog) AS e
      FROM datamesh_catalog.product_versions) AS entries
WHERE entries.domain = v.domain AND entries.product = v.product AND entries.version = v.version
  AND entries.e->>'version' = v.version;

-- Filled by the governance stage (engineer C): 0..100, null when not scored.
ALTER TABLE datamesh_catalog.runs ADD COLUMN quality_score numeric(5, 2)
    CHECK (quality_score IS NULL OR quality_score BETWEEN 0 AND 100);
CREATE INDEX runs_successes_by_time ON datamesh_catalog.runs (domain, product, ended_at DESC)
    WHERE outcome = 'success';

-- Output to output: which of the consumer's outputs read which producer output.
CREATE TABLE datamesh_catalog.output_lineage (
    consumer_domain  text NOT NULL,
    consumer_product text NOT NULL,
    consumer_output  text NOT NULL,
    producer_domain  text NOT NULL,
    producer_product text NOT NULL,
    producer_output  text NOT NULL,
    PRIMARY KEY (consumer_domain, consumer_product, consumer_output,
                 producer_domain, producer_product, producer_output),
    FOREIGN KEY (consumer_domain, consumer_product, consumer_output)
        REFERENCES datamesh_catalog.outputs (domain, product, name) ON DELETE CASCADE
);
-- Until a product registers again, assume each of its outputs reads each of its inputs.
INSERT INTO datamesh_catalog.output_lineage
SELECT l.consumer_domain, l.consumer_product, o.name, l.producer_domain, l.producer_product, l.producer_output
FROM datamesh_catalog.lineage l
JOIN datamesh_catalog.outputs o ON o.domain = l.consumer_domain AND o.product = l.consumer_product;
CREATE INDEX output_lineage_by_producer
    ON datamesh_catalog.output_lineage (producer_domain, producer_product, producer_output);
CREATE INDEX lineage_by_producer ON datamesh_catalog.lineage (producer_domain, producer_product);

-- Consumers outside the mesh (a dashboard, an ML pipeline) declaring their use of an output.
CREATE TABLE datamesh_catalog.subscriptions (
    consumer      text        NOT NULL,
    domain        text        NOT NULL,
    product       text        NOT NULL,
    output        text        NOT NULL,
    major         integer     NOT NULL,
    contact       text,
    purpose       text,
    subscribed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, domain, product, output),
    FOREIGN KEY (domain, product) REFERENCES datamesh_catalog.products (domain, name) ON DELETE CASCADE
);
CREATE INDEX subscriptions_by_product ON datamesh_catalog.subscriptions (domain, product, output);

-- Who may read a product's published major version (as the spec grants it at registration).
CREATE TABLE datamesh_catalog.grants (
    domain       text        NOT NULL,
    product      text        NOT NULL,
    major        integer     NOT NULL,
    grantee      text        NOT NULL,
    grantee_kind text        NOT NULL CHECK (grantee_kind IN ('role', 'domain')),
    pii          boolean     NOT NULL DEFAULT false,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, product, major, grantee_kind, grantee),
    FOREIGN KEY (domain, product) REFERENCES datamesh_catalog.products (domain, name) ON DELETE CASCADE
);

-- Append-only: who registered, published, granted, rolled back what, when. `event_key` makes a
-- retried task's entry a no-op instead of a duplicate.
CREATE TABLE datamesh_catalog.audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    actor     text        NOT NULL,
    action    text        NOT NULL,
    domain    text,
    product   text,
    version   text,
    run_id    text,
    details   jsonb       NOT NULL DEFAULT '{}',
    event_key text        UNIQUE
);
CREATE INDEX audit_log_by_product ON datamesh_catalog.audit_log (domain, product, at DESC);
CREATE FUNCTION datamesh_catalog.audit_log_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'datamesh_catalog.audit_log is append-only: % is not allowed', TG_OP;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE
    ON datamesh_catalog.audit_log FOR EACH STATEMENT
    EXECUTE FUNCTION datamesh_catalog.audit_log_is_append_only();

-- Full-text search: names and tags weigh most, then descriptions and output names, then columns.
-- Identifiers split on '_' in PostgreSQL's parser, so `customer_email` matches "customer email".
ALTER TABLE datamesh_catalog.products ADD COLUMN search_document tsvector;
CREATE FUNCTION datamesh_catalog.refresh_search_document(p_domain text, p_product text) RETURNS void
LANGUAGE sql AS $$
    UPDATE datamesh_catalog.products p SET search_document =
        setweight(to_tsvector('english', p.name || ' ' || p.domain), 'A')
        || setweight(to_tsvector('english', array_to_string(p.tags, ' ')), 'B')
        || setweight(to_tsvector('english', p.description), 'C')
        || setweight(to_tsvector('english', COALESCE(
               (SELECT string_agg(o.name || ' ' || o.description, ' ')
                FROM datamesh_catalog.outputs o WHERE o.domain = p.domain AND o.product = p.name), '')), 'C')
        || setweight(to_tsvector('english', COALESCE(
               (SELECT string_agg(c.name, ' ')
                FROM datamesh_catalog.columns c WHERE c.domain = p.domain AND c.product = p.name), '')), 'D')
    WHERE p.domain = p_domain AND p.name = p_product
$$;
SELECT datamesh_catalog.refresh_search_document(domain, name) FROM datamesh_catalog.products;
CREATE INDEX products_search ON datamesh_catalog.products USING gin (search_document);

-- Each product's health now: its last run, its last successful publish and whether that is within
-- the SLA's freshness_hours ("fresh"), and its latest quality score.
CREATE VIEW datamesh_catalog.product_health AS
SELECT p.domain,
       p.name                                   AS product,
       p.current_version,
       (p.sla->>'freshness_hours')::float8      AS freshness_hours,
       s.ended_at                               AS last_success_at,
       extract(epoch FROM now() - s.ended_at) / 3600.0 AS age_hours,
       COALESCE(now() - s.ended_at <= make_interval(secs => (p.sla->>'freshness_hours')::float8 * 3600),
                false)                          AS fresh,
       l.ended_at                               AS last_run_at,
       l.outcome                                AS last_outcome,
       l.run_id                                 AS last_run_id,
       q.quality_score
FROM datamesh_catalog.products p
LEFT JOIN LATERAL (
    SELECT r.ended_at FROM datamesh_catalog.runs r
    WHERE r.domain = p.domain AND r.product = p.name AND r.outcome = 'success'
    ORDER BY r.ended_at DESC LIMIT 1) s ON true
LEFT JOIN LATERAL (
    SELECT r.ended_at, r.outcome, r.run_id FROM datamesh_catalog.runs r
    WHERE r.domain = p.domain AND r.product = p.name
    ORDER BY r.ended_at DESC LIMIT 1) l ON true
LEFT JOIN LATERAL (
    SELECT r.quality_score FROM datamesh_catalog.runs r
    WHERE r.domain = p.domain AND r.product = p.name AND r.quality_score IS NOT NULL
    ORDER BY r.ended_at DESC LIMIT 1) q ON true;
