-- Base data (基础数据库): buildings, residences, households, persons, organizations, key places,
-- city components, enterprises. Located tables follow the region conventions: geometry in
-- EPSG:4490, a generated EPSG:3857 copy for tiles, path/region_id derived by
-- gridgov_meta.set_location(), and the scope policy. Residences, households and persons have
-- no geometry of their own: they copy the location of their building/residence (triggers
-- below), or the service sets it from a region code.
-- Like standard_address, every location trigger here is skipped for a bulk load by the owner
-- that computed path and region_id itself (gridgov.trusted_location = 'on'): the demo loader
-- writes millions of rows, and one locate() per row would cost it most of an hour.

CREATE TYPE building_category AS ENUM (
    'residential',  -- 住宅
    'commercial',   -- 商业
    'office',       -- 办公
    'industrial',   -- 工业
    'public',       -- 公共
    'other'         -- 其他
);
CREATE TYPE residence_usage AS ENUM (
    'owner_occupied',  -- 自住
    'rented',          -- 出租
    'vacant',          -- 空置
    'business'         -- 经营
);
CREATE TYPE person_type AS ENUM (
    'registered',  -- 户籍人口
    'floating',    -- 流动人口
    'overseas'     -- 境外人员
);
CREATE TYPE gender AS ENUM ('male', 'female');
CREATE TYPE document_type AS ENUM (
    'resident_id',                  -- 居民身份证
    'legacy_id',                    -- 15位身份证
    'hmt_residence_permit',         -- 港澳台居民居住证
    'foreign_permanent_residence',  -- 外国人永久居留身份证
    'passport'                      -- 护照
);
CREATE TYPE component_status AS ENUM (
    'intact',   -- 完好
    'damaged',  -- 损坏
    'missing'   -- 丢失
);
CREATE TYPE credit_grade AS ENUM ('A', 'B', 'C', 'D');
CREATE TYPE risk_level AS ENUM ('low', 'medium', 'high');

-- Codes of base objects: letters, digits, '-' and '_' (imported codes keep their own shape).
CREATE FUNCTION gridgov_meta.valid_object_code(c text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT c ~ '^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$'
$$;

-- 建筑物 ------------------------------------------------------------------------------------
CREATE TABLE building (
    id          bigserial PRIMARY KEY,
    code        text NOT NULL CONSTRAINT building_code_check CHECK (gridgov_meta.valid_object_code(code)),
    name        text CONSTRAINT building_name_check CHECK (length(name) BETWEEN 1 AND 200),
    category    building_category NOT NULL DEFAULT 'other',
    floors      smallint CONSTRAINT building_floors_check CHECK (floors BETWEEN 1 AND 200),
    households  integer CONSTRAINT building_households_check CHECK (households >= 0),
    address_id  bigint REFERENCES standard_address(id) ON DELETE SET NULL,
    geom        geometry(MultiPolygon, 4490) NOT NULL
                CONSTRAINT building_geom_check CHECK (ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    geom_3857   geometry(MultiPolygon, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    centroid    geometry(Point, 4490) GENERATED ALWAYS AS (ST_PointOnSurface(geom)) STORED,
    -- H3 cells of the centroid, computed in Python when the row is written (no h3-pg on Debian).
    h3_r7       bigint,
    h3_r8       bigint,
    h3_r9       bigint,
    path        ltree NOT NULL,
    region_id   bigint REFERENCES region(id),
    attributes  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer NOT NULL DEFAULT 1,
    CONSTRAINT building_code_key UNIQUE (code)
);
CREATE INDEX building_geom ON building USING gist (geom);
CREATE INDEX building_geom_3857 ON building USING gist (geom_3857);
CREATE INDEX building_path ON building USING gist (path);
CREATE INDEX building_region ON building (region_id);
CREATE INDEX building_address ON building (address_id) WHERE address_id IS NOT NULL;
CREATE INDEX building_h3_r7 ON building (h3_r7);
CREATE INDEX building_h3_r8 ON building (h3_r8);
CREATE INDEX building_h3_r9 ON building (h3_r9);
CREATE INDEX building_name_trgm ON building USING gin (name gin_trgm_ops);
CREATE TRIGGER building_location BEFORE INSERT OR UPDATE OF geom ON building
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.set_location();
SELECT gridgov_meta.enable_scope_rls('building');

-- migration 0003 leaves standard_address.building_id without a key: buildings come here.
ALTER TABLE standard_address ADD CONSTRAINT standard_address_building_id_fkey
    FOREIGN KEY (building_id) REFERENCES building(id) ON DELETE SET NULL;

-- 住所: a unit or room in a building ------------------------------------------------------
CREATE TABLE residence (
    id          bigserial PRIMARY KEY,
    building_id bigint NOT NULL REFERENCES building(id) ON DELETE RESTRICT,
    address_id  bigint REFERENCES standard_address(id) ON DELETE SET NULL,
    unit        text CONSTRAINT residence_unit_check CHECK (length(unit) BETWEEN 1 AND 20),
    floor       smallint CONSTRAINT residence_floor_check CHECK (floor BETWEEN -10 AND 200),
    room        text NOT NULL CONSTRAINT residence_room_check CHECK (length(room) BETWEEN 1 AND 20),
    usage       residence_usage NOT NULL DEFAULT 'owner_occupied',
    area_m2     numeric(10, 2) CONSTRAINT residence_area_m2_check CHECK (area_m2 > 0 AND area_m2 < 100000),
    path        ltree NOT NULL,
    region_id   bigint REFERENCES region(id),
    attributes  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer NOT NULL DEFAULT 1,
    CONSTRAINT residence_room_key UNIQUE NULLS NOT DISTINCT (building_id, unit, room)
);
CREATE INDEX residence_path ON residence USING gist (path);
CREATE INDEX residence_address ON residence (address_id) WHERE address_id IS NOT NULL;
SELECT gridgov_meta.enable_scope_rls('residence');

-- 户 -----------------------------------------------------------------------------------------
CREATE TABLE household (
    id              bigserial PRIMARY KEY,
    household_no    text NOT NULL CONSTRAINT household_household_no_check
                    CHECK (gridgov_meta.valid_object_code(household_no)),
    residence_id    bigint NOT NULL REFERENCES residence(id) ON DELETE RESTRICT,
    head_person_id  bigint,  -- key added below, after person
    path            ltree NOT NULL,
    region_id       bigint REFERENCES region(id),
    attributes      jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    version         integer NOT NULL DEFAULT 1,
    CONSTRAINT household_household_no_key UNIQUE (household_no)
);
CREATE INDEX household_path ON household USING gist (path);
CREATE INDEX household_residence ON household (residence_id);
SELECT gridgov_meta.enable_scope_rls('household');

-- 实有人口 ---------------------------------------------------------------------------------
-- Document numbers and phones are stored encrypted (*_enc, the pluggable cipher), with a keyed
-- hash for equality search (*_hash, the blind index) and a masked copy for display.
CREATE TABLE person (
    id                      bigserial PRIMARY KEY,
    name                    text NOT NULL CONSTRAINT person_name_check CHECK (length(name) BETWEEN 1 AND 100),
    document_type           document_type,
    document_number_enc     bytea,
    document_number_hash    bytea,
    document_number_masked  text,
    phone_enc               bytea,
    phone_hash              bytea,
    phone_masked            text,
    gender                  gender,
    birth_date              date,
    person_type             person_type NOT NULL DEFAULT 'registered',
    household_id            bigint REFERENCES household(id) ON DELETE SET NULL,
    relation_to_head        text CONSTRAINT person_relation_to_head_check
                            CHECK (length(relation_to_head) BETWEEN 1 AND 20),
    residence_id            bigint REFERENCES residence(id) ON DELETE SET NULL,
    -- Free tags: 党员, 退役军人, 低保, 独居老人 …
    tags                    text[] NOT NULL DEFAULT '{}',
    -- 特殊人群: seen only by users holding the category (enforced by the service).
    special_category        text CONSTRAINT person_special_category_check CHECK (special_category IN (
                                'community_correction',  -- 社区矫正
                                'drug_rehab',            -- 戒毒 (社区戒毒/康复)
                                'mental_illness',        -- 严重精神障碍
                                'released_prisoner',     -- 刑满释放
                                'petition_key',          -- 重点信访
                                'aids_risk',             -- 艾滋病危险行为人员
                                'key_youth'              -- 重点青少年
                            )),
    path                    ltree NOT NULL,
    region_id               bigint REFERENCES region(id),
    attributes              jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    version                 integer NOT NULL DEFAULT 1,
    CONSTRAINT person_document_check CHECK (
        (document_type IS NULL) = (document_number_enc IS NULL)
        AND (document_number_enc IS NULL) = (document_number_hash IS NULL)),
    CONSTRAINT person_phone_check CHECK ((phone_enc IS NULL) = (phone_hash IS NULL))
);
-- One person per document: the hash is of the canonical number (a legacy 15-digit ID hashes as
-- its 18-digit form, so both spellings meet here).
CREATE UNIQUE INDEX person_document_number_hash_key ON person (document_number_hash)
    WHERE document_number_hash IS NOT NULL;
CREATE INDEX person_phone_hash ON person (phone_hash) WHERE phone_hash IS NOT NULL;
CREATE INDEX person_path ON person USING gist (path);
CREATE INDEX person_residence ON person (residence_id) WHERE residence_id IS NOT NULL;
CREATE INDEX person_household ON person (household_id) WHERE household_id IS NOT NULL;
CREATE INDEX person_tags ON person USING gin (tags);
CREATE INDEX person_special ON person (special_category) WHERE special_category IS NOT NULL;
CREATE INDEX person_name_trgm ON person USING gin (name gin_trgm_ops);
SELECT gridgov_meta.enable_scope_rls('person');

-- Deferrable: bulk loads write households and their heads in one batch.
ALTER TABLE household ADD CONSTRAINT household_head_person_id_fkey
    FOREIGN KEY (head_person_id) REFERENCES person(id) ON DELETE SET NULL
    DEFERRABLE INITIALLY IMMEDIATE;
CREATE INDEX household_head ON household (head_person_id) WHERE head_person_id IS NOT NULL;

-- 组织机构 ---------------------------------------------------------------------------------
CREATE TABLE organization (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL CONSTRAINT organization_name_check CHECK (length(name) BETWEEN 1 AND 200),
    category    text NOT NULL CONSTRAINT organization_category_check CHECK (category ~ '^[a-z][a-z_]{0,39}$'),
    uscc        text CONSTRAINT organization_uscc_check CHECK (uscc ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),
    address     text CONSTRAINT organization_address_check CHECK (length(address) <= 300),
    geom        geometry(Point, 4490),
    geom_3857   geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    h3_r9       bigint,
    path        ltree NOT NULL,
    region_id   bigint REFERENCES region(id),
    attributes  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     integer NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX organization_uscc_key ON organization (uscc) WHERE uscc IS NOT NULL;
CREATE INDEX organization_geom ON organization USING gist (geom);
CREATE INDEX organization_geom_3857 ON organization USING gist (geom_3857);
CREATE INDEX organization_path ON organization USING gist (path);
CREATE INDEX organization_name_trgm ON organization USING gin (name gin_trgm_ops);
CREATE INDEX organization_h3_r9 ON organization (h3_r9);
CREATE TRIGGER organization_location BEFORE INSERT OR UPDATE OF geom ON organization
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.set_location();
SELECT gridgov_meta.enable_scope_rls('organization');

-- 重点场所: a point, or the outline of the premises ---------------------------------------
CREATE TABLE key_place (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL CONSTRAINT key_place_name_check CHECK (length(name) BETWEEN 1 AND 200),
    category            text NOT NULL CONSTRAINT key_place_category_check CHECK (category ~ '^[a-z][a-z_]{0,39}$'),
    address             text CONSTRAINT key_place_address_check CHECK (length(address) <= 300),
    contact_name        text CONSTRAINT key_place_contact_name_check CHECK (length(contact_name) BETWEEN 1 AND 100),
    contact_phone_enc   bytea,
    contact_phone_masked text,
    risk_level          risk_level NOT NULL DEFAULT 'low',
    geom                geometry(Geometry, 4490) NOT NULL
                        CONSTRAINT key_place_geom_check CHECK (
                            GeometryType(geom) IN ('POINT', 'POLYGON', 'MULTIPOLYGON')
                            AND ST_IsValid(geom) AND NOT ST_IsEmpty(geom)),
    geom_3857           geometry(Geometry, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    h3_r9               bigint,  -- of the point on surface
    path                ltree NOT NULL,
    region_id           bigint REFERENCES region(id),
    attributes          jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    version             integer NOT NULL DEFAULT 1
);
CREATE INDEX key_place_geom ON key_place USING gist (geom);
CREATE INDEX key_place_geom_3857 ON key_place USING gist (geom_3857);
CREATE INDEX key_place_path ON key_place USING gist (path);
CREATE INDEX key_place_category ON key_place (category);
CREATE INDEX key_place_name_trgm ON key_place USING gin (name gin_trgm_ops);
CREATE INDEX key_place_h3_r9 ON key_place (h3_r9);
CREATE TRIGGER key_place_location BEFORE INSERT OR UPDATE OF geom ON key_place
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.set_location();
SELECT gridgov_meta.enable_scope_rls('key_place');

-- 城市部件 ---------------------------------------------------------------------------------
CREATE TABLE city_component (
    id                bigserial PRIMARY KEY,
    code              text NOT NULL CONSTRAINT city_component_code_check CHECK (gridgov_meta.valid_object_code(code)),
    category          text NOT NULL CONSTRAINT city_component_category_check CHECK (category ~ '^[a-z][a-z_]{0,39}$'),
    status            component_status NOT NULL DEFAULT 'intact',
    owner_department  text CONSTRAINT city_component_owner_department_check CHECK (length(owner_department) BETWEEN 1 AND 100),
    geom              geometry(Point, 4490) NOT NULL,
    geom_3857         geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    h3_r9             bigint,
    path              ltree NOT NULL,
    region_id         bigint REFERENCES region(id),
    attributes        jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    version           integer NOT NULL DEFAULT 1,
    CONSTRAINT city_component_code_key UNIQUE (code)
);
CREATE INDEX city_component_geom ON city_component USING gist (geom);
CREATE INDEX city_component_geom_3857 ON city_component USING gist (geom_3857);
CREATE INDEX city_component_path ON city_component USING gist (path);
CREATE INDEX city_component_category ON city_component (category);
CREATE INDEX city_component_h3_r9 ON city_component (h3_r9);
CREATE TRIGGER city_component_location BEFORE INSERT OR UPDATE OF geom ON city_component
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.set_location();
SELECT gridgov_meta.enable_scope_rls('city_component');

-- 企业 -------------------------------------------------------------------------------------
CREATE TABLE enterprise (
    id                    bigserial PRIMARY KEY,
    name                  text NOT NULL CONSTRAINT enterprise_name_check CHECK (length(name) BETWEEN 1 AND 200),
    uscc                  text NOT NULL CONSTRAINT enterprise_uscc_check CHECK (uscc ~ '^[0-9A-HJ-NPQRTUWXY]{18}$'),
    credit_grade          credit_grade,
    legal_representative  text CONSTRAINT enterprise_legal_representative_check
                          CHECK (length(legal_representative) BETWEEN 1 AND 100),
    industry              text CONSTRAINT enterprise_industry_check CHECK (length(industry) BETWEEN 1 AND 100),
    address               text CONSTRAINT enterprise_address_check CHECK (length(address) <= 300),
    staff_count           integer CONSTRAINT enterprise_staff_count_check CHECK (staff_count >= 0),
    geom                  geometry(Point, 4490),
    geom_3857             geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
    h3_r9                 bigint,
    path                  ltree NOT NULL,
    region_id             bigint REFERENCES region(id),
    attributes            jsonb NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    version               integer NOT NULL DEFAULT 1,
    CONSTRAINT enterprise_uscc_key UNIQUE (uscc)
);
CREATE INDEX enterprise_geom ON enterprise USING gist (geom);
CREATE INDEX enterprise_geom_3857 ON enterprise USING gist (geom_3857);
CREATE INDEX enterprise_path ON enterprise USING gist (path);
CREATE INDEX enterprise_name_trgm ON enterprise USING gin (name gin_trgm_ops);
CREATE INDEX enterprise_h3_r9 ON enterprise (h3_r9);
CREATE TRIGGER enterprise_location BEFORE INSERT OR UPDATE OF geom ON enterprise
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.set_location();
SELECT gridgov_meta.enable_scope_rls('enterprise');

-- Location of rows that live inside a parent row ---------------------------------------------
-- Copy path and region_id from the parent on insert and when the parent changes. The parent is
-- read with the caller's rights: a parent outside the caller's scope is "no such parent".
CREATE FUNCTION gridgov_meta.copy_parent_location() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    parent_table text := TG_ARGV[0];
    parent_column text := TG_ARGV[1];
    parent_id bigint := (to_jsonb(NEW) ->> parent_column)::bigint;
    parent_path ltree;
    parent_region bigint;
BEGIN
    IF parent_id IS NULL THEN
        IF NEW.path IS NULL THEN
            RAISE EXCEPTION 'a % needs a % or a region', TG_TABLE_NAME, parent_column
                USING ERRCODE = 'GG422', DETAIL = parent_column;
        END IF;
        RETURN NEW;
    END IF;
    EXECUTE format('SELECT path, region_id FROM %I WHERE id = $1', parent_table)
        INTO parent_path, parent_region USING parent_id;
    IF parent_path IS NULL THEN
        RAISE EXCEPTION '% % does not exist', parent_table, parent_id
            USING ERRCODE = 'GG422', DETAIL = parent_column;
    END IF;
    NEW.path := parent_path;
    NEW.region_id := parent_region;
    RETURN NEW;
END
$$;

CREATE TRIGGER residence_location BEFORE INSERT OR UPDATE OF building_id ON residence
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.copy_parent_location('building', 'building_id');
CREATE TRIGGER household_location BEFORE INSERT OR UPDATE OF residence_id ON household
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.copy_parent_location('residence', 'residence_id');
CREATE TRIGGER person_location BEFORE INSERT OR UPDATE OF residence_id ON person
    FOR EACH ROW WHEN (NEW.path IS NULL OR session_user <> 'gridgov_owner'
                       OR current_setting('gridgov.trusted_location', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION gridgov_meta.copy_parent_location('residence', 'residence_id');

-- When a building moves (its geometry changed, so set_location gave it a new path), everything
-- inside follows. Runs as the owner: the move itself was checked against the caller's scope,
-- and derived rows must never be left behind in the old region.
CREATE FUNCTION gridgov_meta.cascade_building_location() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE residence SET path = NEW.path, region_id = NEW.region_id
    WHERE building_id = NEW.id AND path IS DISTINCT FROM NEW.path;
    RETURN NULL;
END
$$;
-- The WHEN clauses compare text: pg_dump restores with an empty search_path, where ltree's
-- "=" (behind IS DISTINCT FROM, which cannot be schema-qualified) would not be found.
CREATE TRIGGER building_cascade_location AFTER UPDATE ON building
    FOR EACH ROW WHEN (OLD.path::text IS DISTINCT FROM NEW.path::text)
    EXECUTE FUNCTION gridgov_meta.cascade_building_location();

CREATE FUNCTION gridgov_meta.cascade_residence_location() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    UPDATE household SET path = NEW.path, region_id = NEW.region_id
    WHERE residence_id = NEW.id AND path IS DISTINCT FROM NEW.path;
    UPDATE person SET path = NEW.path, region_id = NEW.region_id
    WHERE residence_id = NEW.id AND path IS DISTINCT FROM NEW.path;
    RETURN NULL;
END
$$;
CREATE TRIGGER residence_cascade_location AFTER UPDATE ON residence
    FOR EACH ROW WHEN (OLD.path::text IS DISTINCT FROM NEW.path::text)
    EXECUTE FUNCTION gridgov_meta.cascade_residence_location();
