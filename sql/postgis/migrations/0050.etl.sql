-- ETL staging (spatial_etl): rows in transit between reading an analyst's file and one
-- set-based merge into their table.
--
-- Bulk targets (buildings, city components) are read in chunks, checked and repaired in Python,
-- COPYed here, and merged with one INSERT … SELECT … ON CONFLICT per batch, so memory stays
-- bounded whatever the file's size. A single-process import stages and merges in one
-- transaction (nothing is ever committed here); a distributed import (Dask) commits each
-- partition's rows from its worker and the driver merges them in one transaction, then deletes
-- them. UNLOGGED: rows in transit need no WAL and no replica; a crash loses only loads that
-- had not been merged yet.
--
-- A load sees only its own rows: each transaction that stages or merges sets
-- gridgov.etl_load to the load's id, and the policy below compares with it, so concurrent loads
-- (and the API, which never sets it) see nothing of each other.

CREATE UNLOGGED TABLE etl_stage (
    load_id     uuid NOT NULL,
    -- 1-based feature number in the source file, for error messages and the merge order.
    row_no      bigint NOT NULL,
    code        text NOT NULL,
    -- The row's fields as validated by the service's input model (model_dump(mode="json")).
    props       jsonb NOT NULL DEFAULT '{}',
    geom        geometry(Geometry, 4490) NOT NULL,
    h3_r7       bigint,
    h3_r8       bigint,
    h3_r9       bigint,
    staged_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (load_id, row_no)
);
CREATE INDEX etl_stage_code ON etl_stage (load_id, code);

ALTER TABLE etl_stage ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_load ON etl_stage
    USING (load_id = nullif(current_setting('gridgov.etl_load', true), '')::uuid)
    WITH CHECK (load_id = nullif(current_setting('gridgov.etl_load', true), '')::uuid);

-- Key places have no code column; an import keeps the source's code in attributes.code and
-- upserts by it (text equality is leakproof, so the app role can use this index under RLS).
CREATE INDEX key_place_attributes_code ON key_place ((attributes ->> 'code'));
