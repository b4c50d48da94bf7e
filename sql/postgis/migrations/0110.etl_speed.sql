-- Faster bulk writes of named rows (issue #12, `etl import --target buildings`).
--
-- Profiling the set-based merge of 50,000 buildings: the generated column search_pinyin (0095)
-- was about half of it. search_pinyin() ran one query per call (the name's characters joined to
-- pinyin_char): ~50 us for a 3-character name alone, and about twice that inside the big
-- INSERT. The version below finds the characters of GB2312 (the 6,763 of everyday text) in a
-- constant map compiled into the function from pinyin_char, so no query runs for them, and
-- builds the variants with string replace() instead of array loops: ~6 us for the same name.
-- Rarer characters (垟, Extension A) are still read from pinyin_char, one query each. Same
-- signature, same result for every input (checked character by character over all of
-- pinyin_char and on random names), so the stored columns and their trigram indexes stay valid
-- and nothing is rewritten.
--
-- The map (~120 kB) is a jsonb constant in the function's text: each server process parses it
-- on its first call (~4 ms) and keeps it in its plan cache (1-2 MB; all of pinyin_char
-- would take ~4 MB in every connection). A migration that changes pinyin_char must call
-- gridgov_meta.compile_search_pinyin() again (and rewrite the columns, as 0095 says).

CREATE FUNCTION gridgov_meta.compile_search_pinyin() RETURNS void
LANGUAGE plpgsql AS $compile$
DECLARE
    common text[] := '{}';
    c text;
    readings text;
    body text := $body$
DECLARE
    -- The variants so far, each followed by one space (' ' is the one empty variant), so that
    -- replace(v, ' ', x || ' ') appends x to every variant at once.
    initials text := ' ';
    spelled text := ' ';
    c text;
    reading text;
    alts text;
    a text;
    b text;
    pool text;
    result text;
BEGIN
    FOREACH c IN ARRAY string_to_array(lower(normalize(t, NFKC)), NULL) LOOP
        -- '<initials>:<syllable>[ <syllable>]': 乐 → 'ly:le yue', 住 → 'z:zhu'.
        reading := @READINGS@::jsonb ->> c;
        IF reading IS NULL AND ascii(c) BETWEEN 13312 AND 40959 THEN  -- U+3400..U+9FFF
            SELECT array_to_string(p.initials, '') || ':' || array_to_string(p.syllables, ' ')
            INTO reading FROM gridgov_meta.pinyin_char p WHERE p.ch = c;
        END IF;
        IF reading IS NULL THEN
            CONTINUE WHEN ascii(c) NOT BETWEEN 97 AND 122;  -- only a-z besides Chinese
            initials := replace(initials, ' ', c || ' ');
            spelled := replace(spelled, ' ', c || ' ');
            CONTINUE;
        END IF;
        -- Readings outermost: every variant continued with this character's common reading
        -- comes before any continued with its other one, so the caps (the first 8 initials,
        -- 4 spellings) drop rare combinations.
        alts := split_part(reading, ':', 1);
        IF length(alts) = 1 THEN
            initials := replace(initials, ' ', alts || ' ');
        ELSE
            initials := replace(initials, ' ', left(alts, 1) || ' ')
                        || replace(initials, ' ', right(alts, 1) || ' ');
            IF length(initials) - length(replace(initials, ' ', '')) > 8 THEN
                initials := substring(initials FROM '^(?:[^ ]* ){8}');
            END IF;
        END IF;
        alts := split_part(reading, ':', 2);
        a := split_part(alts, ' ', 1);
        IF a = alts THEN
            spelled := replace(spelled, ' ', a || ' ');
        ELSE
            b := split_part(alts, ' ', 2);
            spelled := replace(spelled, ' ', a || ' ') || replace(spelled, ' ', b || ' ');
            IF length(spelled) - length(replace(spelled, ' ', '')) > 4 THEN
                spelled := substring(spelled FROM '^(?:[^ ]* ){4}');
            END IF;
        END IF;
    END LOOP;
    IF initials = ' ' THEN
        RETURN NULL;
    END IF;
    -- A spelling equal to an initials variant (a Latin-only name) is said once.
    pool := ' ' || initials;
    result := pool;
    FOREACH a IN ARRAY string_to_array(rtrim(spelled, ' '), ' ') LOOP
        IF position(' ' || a || ' ' IN pool) = 0 THEN
            result := result || a || ' ';
        END IF;
    END LOOP;
    RETURN rtrim(result, ' ');
END
$body$;
BEGIN
    -- GB2312 is what EUC_CN encodes: a character it cannot encode is a rarer one.
    FOR c IN SELECT ch FROM gridgov_meta.pinyin_char LOOP
        BEGIN
            PERFORM convert_to(c, 'EUC_CN');
            common := common || c;
        EXCEPTION WHEN untranslatable_character THEN
            NULL;
        END;
    END LOOP;
    SELECT jsonb_object_agg(ch, array_to_string(initials, '') || ':'
                                || array_to_string(syllables, ' '))::text
    INTO readings FROM gridgov_meta.pinyin_char WHERE ch = ANY (common);
    EXECUTE 'CREATE OR REPLACE FUNCTION public.search_pinyin(t text) RETURNS text '
            'LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS '
            || quote_literal(replace(body, '@READINGS@', quote_literal(readings)));
END
$compile$;
REVOKE ALL ON FUNCTION gridgov_meta.compile_search_pinyin() FROM PUBLIC;

SELECT gridgov_meta.compile_search_pinyin();

-- locate() for a range of staged rows at once ----------------------------------------------------
-- The operator's bulk merge located each row with a lateral call of gridgov_meta.locate(): one
-- PL/pgSQL call and one planned query per row, ~60 us inside the big INSERT. This is the same
-- rule in one join (the point on the row's surface, current non-dedicated regions containing
-- it, the smallest of the deepest level), ~25 us a row. It reads only rows of the caller's own
-- load (gridgov.etl_load, like the stage's policy), so SECURITY DEFINER, which it needs to see
-- every region for an app-role caller, shows nobody another load's rows.
CREATE FUNCTION gridgov_meta.locate_staged(lo bigint, hi bigint)
RETURNS TABLE (row_no bigint, region_id bigint, path ltree)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT DISTINCT ON (s.row_no) s.row_no, r.id, r.path
    FROM etl_stage s
    CROSS JOIN LATERAL ST_PointOnSurface(s.geom) AS p
    JOIN region r ON r.geom && p AND ST_Intersects(r.geom, p)
    WHERE s.load_id = nullif(current_setting('gridgov.etl_load', true), '')::uuid
      AND s.row_no BETWEEN lo AND hi
      AND r.valid_to IS NULL
      AND r.grid_type IS DISTINCT FROM 'dedicated'
    ORDER BY s.row_no, region_level_rank(r.level) DESC, r.area_km2 ASC
$$;
REVOKE ALL ON FUNCTION gridgov_meta.locate_staged(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gridgov_meta.locate_staged(bigint, bigint) TO gridgov_app;
