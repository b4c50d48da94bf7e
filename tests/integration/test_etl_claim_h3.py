"""etl claim (through the claim service) and etl h3 (through geoserver.services.h3agg)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from geoserver.database.engine import SYSTEM_SCOPE, set_scope
from geoserver.domain.principal import SYSTEM
from geoserver.services import claims
from tests.support.etl import EtlRun

TOWNSHIP = "330302006"
TOWNSHIP_PATH = "330300.330302.330302006"


def _pool_address_record(etl: EtlRun) -> str:
    """Store an address-only pooled record naming a standard address of the township."""
    text_ = etl.scalar("SELECT full_text FROM standard_address WHERE level = 'door' "
                       "AND township_code = :t ORDER BY code LIMIT 1", t=TOWNSHIP)
    with Session(etl.owner) as s, s.begin():
        set_scope(s, SYSTEM_SCOPE)
        claims.ingest_pooled(s, actor=SYSTEM, geocoder=claims.no_geocoding, records=[{
            "source_department": "民政局", "source_record_id": "ETL-1", "target_kind": "person",
            "address": text_, "region_code": TOWNSHIP}])
    return text_


def test_claim_assigns_and_queues_once(etl) -> None:
    _pool_address_record(etl)
    r = etl("claim", "--region", TOWNSHIP, "--distance-m", "20")
    assert r.exit_code == 0, r.output
    assert "auto-claim: claimed" in r.output
    pooled = etl.rows("SELECT status::text, location_source FROM pooled_record "
                      "WHERE source_record_id = 'ETL-1'")[0]
    assert tuple(pooled) == ("claimed", "geocoded")
    queued = etl.scalar("SELECT count(*) FROM claim_item i WHERE i.subject_kind IS NOT NULL")
    assert queued > 0
    claimed = etl.scalar("SELECT count(*) FROM claim_item WHERE status = 'claimed'")
    # Only boundary rows of the township were queued: none held beyond it.
    assert etl.scalar(f"SELECT count(*) FROM claim_item WHERE NOT path <@ '{TOWNSHIP_PATH}' "
                      "AND subject_kind IS NOT NULL") == 0
    r = etl("claim", "--region", TOWNSHIP, "--distance-m", "20")
    assert r.exit_code == 0, r.output
    assert etl.scalar("SELECT count(*) FROM claim_item i WHERE i.subject_kind IS NOT NULL") \
        == queued
    assert etl.scalar("SELECT count(*) FROM claim_item WHERE status = 'claimed'") == claimed
    assert etl.scalar("SELECT count(*) FROM audit_log WHERE action = 'etl.claim'") == 2


def test_claim_checks_its_arguments(etl) -> None:
    r = etl("claim", "--distance-m", "5000")
    assert r.exit_code == 1 and "distance_m" in r.output


def test_h3_recomputes_cells_outlines_and_statistics(etl) -> None:
    before = etl.rows(f"SELECT id, h3_r7, h3_r8, h3_r9 FROM building WHERE path <@ "
                      f"'{TOWNSHIP_PATH}' ORDER BY id")
    etl.execute(f"UPDATE building SET h3_r7 = NULL, h3_r8 = NULL, h3_r9 = NULL "
                f"WHERE path <@ '{TOWNSHIP_PATH}'")
    etl.execute("DELETE FROM tiles.h3_cell")
    r = etl("h3", "--kind", "buildings", "--resolutions", "7,8,9")
    assert r.exit_code == 0, r.output
    after = etl.rows(f"SELECT id, h3_r7, h3_r8, h3_r9 FROM building WHERE path <@ "
                     f"'{TOWNSHIP_PATH}' ORDER BY id")
    assert [tuple(a) for a in after] == [tuple(b) for b in before]
    missing = etl.scalar("SELECT count(DISTINCT b.h3_r9) FROM building b WHERE NOT EXISTS "
                         "(SELECT 1 FROM tiles.h3_cell c WHERE c.cell = b.h3_r9)")
    assert missing == 0
    assert etl.scalar("SELECT refreshed_at IS NOT NULL FROM stat_refresh WHERE name = 'objects'")
    assert "buildings: cells changed" in r.output


def test_h3_for_a_region_only_and_resolutions_it_stores(etl) -> None:
    etl.execute("UPDATE building SET h3_r9 = 1 WHERE code IN (SELECT code FROM building "
                "WHERE path <@ '330300.330302.330302024' ORDER BY code LIMIT 1)")
    etl.execute("UPDATE building SET h3_r9 = 1 WHERE code IN (SELECT code FROM building "
                f"WHERE path <@ '{TOWNSHIP_PATH}' ORDER BY code LIMIT 1)")
    r = etl("h3", "--kind", "buildings", "--kind", "addresses", "--resolutions", "8",
            "--region", "330302024", "--no-statistics")
    assert r.exit_code == 0, r.output
    assert "addresses: stores resolutions (9,) only" in r.output
    r = etl("h3", "--kind", "buildings", "--resolutions", "9", "--region", "330302024",
            "--no-statistics")
    assert r.exit_code == 0, r.output
    # The township outside the region kept its wrong cell; the region's was fixed.
    assert etl.scalar("SELECT count(*) FROM building WHERE h3_r9 = 1") == 1
    assert etl.scalar(f"SELECT count(*) FROM building WHERE h3_r9 = 1 AND path <@ "
                      f"'{TOWNSHIP_PATH}'") == 1


def test_h3_needs_the_write_permission(etl) -> None:
    r = etl("h3", "--kind", "buildings", "--as-user", "city", "--no-statistics")
    assert r.exit_code == 1 and "building.write" in r.output
    r = etl("h3", "--kind", "nonsense")
    assert r.exit_code == 1 and "kind must be one of" in r.output
