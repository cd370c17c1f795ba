-- The domain registry (domains/<domain>.yaml) in the catalog, and access requests.
-- A domain row follows its registry file (platform setup and `datamesh grants sync` write it);
-- rows filled from products before the registry existed keep source = 'products'.

ALTER TABLE datamesh_catalog.domains
    ADD COLUMN description     text,
    ADD COLUMN bounded_context text,
    ADD COLUMN teams           jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN members         jsonb       NOT NULL DEFAULT '[]',
    ADD COLUMN on_call         jsonb,
    ADD COLUMN chat_channel    text,
    ADD COLUMN source          text        NOT NULL DEFAULT 'products' CHECK (source IN ('products', 'registry')),
    ADD COLUMN updated_at      timestamptz NOT NULL DEFAULT now();

-- Someone asks for a role to read a product. The decision changes the spec (a reviewed diff), never a
-- grant: grants follow the merged spec through `datamesh grants sync`. The history of each request
-- (request, approve, deny) is in the append-only audit log too.
CREATE TABLE datamesh_catalog.access_requests (
    id            bigserial   PRIMARY KEY,
    domain        text        NOT NULL,
    product       text        NOT NULL,
    output        text,  -- null: the product as a whole (access lists are per product)
    role          text        NOT NULL,
    reason        text        NOT NULL CHECK (length(btrim(reason)) > 0),
    requested_by  text        NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now(),
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'denied')),
    decided_by    text,
    decided_at    timestamptz,
    decision_note text
);
CREATE INDEX access_requests_by_product ON datamesh_catalog.access_requests (domain, product, status);
