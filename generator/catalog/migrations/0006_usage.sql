-- Consumers (issue 13): reads measured by PostgreSQL itself, what the consumer SDK records, and
-- the two functions a consumer role may call (schema datamesh_consumer).

-- One row per measured read of a product's published view. `source` says which of PostgreSQL's
-- records it came from: its server log (a `statement:` line carrying the role, one read per line)
-- or pg_stat_statements (the calls counted since the last collect, in `reads`).
CREATE TABLE datamesh_catalog.view_reads (
    id        bigserial   PRIMARY KEY,
    role      text        NOT NULL,          -- the session's role, as PostgreSQL logged it
    domain    text        NOT NULL,
    product   text        NOT NULL,
    major     integer,                       -- null: the stable "latest" schema
    output    text        NOT NULL,
    reads     integer     NOT NULL DEFAULT 1 CHECK (reads > 0),
    refused   boolean     NOT NULL DEFAULT false,  -- PostgreSQL answered with an error (no access)
    at        timestamptz NOT NULL,
    source    text        NOT NULL CHECK (source IN ('server_log', 'pg_stat_statements')),
    event_key text        NOT NULL UNIQUE    -- where it was read from: a collect run twice records once
);
CREATE INDEX view_reads_by_product ON datamesh_catalog.view_reads (domain, product, at DESC);

-- How far `datamesh usage collect` has read each record: a log file's byte offset.
CREATE TABLE datamesh_catalog.usage_positions (
    source       text        PRIMARY KEY,    -- 'server_log:<file>'
    position     bigint      NOT NULL,
    collected_at timestamptz NOT NULL DEFAULT now()
);

-- pg_stat_statements counts calls since its last reset: the counts seen by the last collect.
CREATE TABLE datamesh_catalog.statement_counts (
    role    text   NOT NULL,
    queryid bigint NOT NULL,
    calls   bigint NOT NULL,
    PRIMARY KEY (role, queryid)
);

-- What the consumer SDK says it read (the client's own record, beside the measured one). Written
-- only through datamesh_consumer.record_read, which takes the reader from the session: nobody can
-- record a read in someone else's name.
CREATE TABLE datamesh_catalog.sdk_reads (
    id      bigserial   PRIMARY KEY,
    reader  text        NOT NULL,
    domain  text        NOT NULL,
    product text        NOT NULL,
    output  text        NOT NULL,
    major   integer     NOT NULL,
    rows    integer     NOT NULL CHECK (rows >= 0),
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sdk_reads_by_product ON datamesh_catalog.sdk_reads (domain, product, at DESC);

-- The consumer API: every role may call these two functions and nothing else of the catalog.
CREATE SCHEMA datamesh_consumer;
REVOKE ALL ON SCHEMA datamesh_consumer FROM PUBLIC;
GRANT USAGE ON SCHEMA datamesh_consumer TO PUBLIC;

-- The majors of a product that are published now, with their deprecation (if any) and views.
CREATE FUNCTION datamesh_consumer.served_majors(p_domain text, p_product text)
RETURNS TABLE (major integer, is_current boolean, serve_until date, note text, views text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.major,
           m.major = split_part(p.current_version, '.', 1)::integer,
           (d->>'serve_until')::date,
           d->>'note',
           ARRAY(SELECT c.relname::text FROM pg_class c
                  WHERE c.relnamespace = n.oid AND c.relkind = 'v' ORDER BY c.relname)
      FROM datamesh_catalog.products p
      JOIN pg_namespace n ON n.nspname ~ ('^' || p.domain || '__' || p.name || '__v[0-9]+$')
      CROSS JOIN LATERAL (SELECT substring(n.nspname FROM '__v([0-9]+)$')::integer AS major) m
      LEFT JOIN LATERAL (SELECT e FROM jsonb_array_elements(p.spec->'deprecations') e
                          WHERE (e->>'major')::integer = m.major) dep(d) ON true
     WHERE p.domain = p_domain AND p.name = p_product
     ORDER BY m.major
$$;

-- Record a read as the session's user; only of a product's view the session may read.
CREATE FUNCTION datamesh_consumer.record_read(
    p_domain text, p_product text, p_output text, p_major integer, p_rows integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_schema text := p_domain || '__' || p_product || '__v' || p_major;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM datamesh_catalog.products WHERE domain = p_domain AND name = p_product)
       OR to_regclass(quote_ident(v_schema) || '.' || quote_ident(p_output)) IS NULL
       OR NOT has_schema_privilege(session_user, v_schema, 'USAGE') THEN
        RETURN false;
    END IF;
    INSERT INTO datamesh_catalog.sdk_reads (reader, domain, product, output, major, rows)
    VALUES (session_user, p_domain, p_product, p_output, p_major, greatest(p_rows, 0));
    RETURN true;
END $$;

REVOKE ALL ON FUNCTION datamesh_consumer.served_majors(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION datamesh_consumer.record_read(text, text, text, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION datamesh_consumer.served_majors(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION datamesh_consumer.record_read(text, text, text, integer, integer) TO PUBLIC;
